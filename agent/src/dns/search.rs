//! Recognises queries made while walking a resolver search list: with `ndots:5` (Kubernetes'
//! default) a lookup of `db.example.com` first tries `db.example.com.<ns>.svc.cluster.local`,
//! `….svc.cluster.local`, `….cluster.local`, `….ec2.internal`…, each A and AAAA, each NXDOMAIN.

/// Search-list suffixes as patterns; `*.` matches exactly one label (a namespace, a region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDomains {
    patterns: Vec<(bool, String)>,
}

/// Kubernetes' and EC2's search suffixes for the default cluster domain.
pub const DEFAULT: [&str; 5] = [
    "*.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
    "ec2.internal",
    "*.compute.internal",
];

impl Default for SearchDomains {
    fn default() -> Self {
        SearchDomains::new(DEFAULT.iter().map(|s| s.to_string()))
    }
}

impl SearchDomains {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        SearchDomains {
            patterns: patterns
                .into_iter()
                .map(|p| {
                    let p = p.trim_end_matches('.').to_ascii_lowercase();
                    match p.strip_prefix("*.") {
                        Some(rest) => (true, rest.to_string()),
                        None => (false, p),
                    }
                })
                .collect(),
        }
    }

    /// The names the user may have asked for, when `qname` is one plus a search suffix, in
    /// pattern order. `a.b.svc.cluster.local` is `a` in namespace `b`, or `a.b` plus
    /// `svc.cluster.local`: the walk it belongs to decides (see the tracker).
    pub fn bases<'a>(&self, qname: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        for (wild, suffix) in &self.patterns {
            let Some(head) = qname
                .strip_suffix(suffix.as_str())
                .and_then(|h| h.strip_suffix('.'))
            else {
                continue;
            };
            let base = if *wild {
                match head.rsplit_once('.') {
                    Some((b, _label)) => b,
                    None => continue,
                }
            } else {
                head
            };
            if !base.is_empty() && !out.contains(&base) {
                out.push(base);
            }
        }
        out
    }
}

/// Whether `ndots:2` would have sent `base` as an absolute name first (it has ≥ 2 dots), so the
/// walk, and its wasted queries, would not have happened.
pub fn ndots2_saves(base: &str) -> bool {
    base.matches('.').count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_search_suffix() {
        let s = SearchDomains::default();
        let cases: [(&str, &[&str]); 8] = [
            (
                "db.example.com.prod.svc.cluster.local",
                &[
                    "db.example.com",
                    "db.example.com.prod",
                    "db.example.com.prod.svc",
                ],
            ),
            (
                "db.example.com.svc.cluster.local",
                &["db.example", "db.example.com", "db.example.com.svc"],
            ),
            ("db.example.com.cluster.local", &["db.example.com"]),
            ("db.example.com.ec2.internal", &["db.example.com"]),
            (
                "db.example.com.us-west-2.compute.internal",
                &["db.example.com"],
            ),
            (
                "redis.prod.svc.cluster.local",
                &["redis", "redis.prod", "redis.prod.svc"],
            ),
            ("svc.cluster.local", &["svc"]),
            ("db.example.com", &[]),
        ];
        for (q, want) in cases {
            assert_eq!(s.bases(q), want, "{q}");
        }
        assert!(ndots2_saves("db.example.com"));
        assert!(!ndots2_saves("db.example"));
        assert!(!ndots2_saves("redis"));
    }
}
