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
    /// The suffixes the node's processes really use (from their resolv.conf files) first, then
    /// the default patterns.
    pub fn learned(domains: &[String]) -> Self {
        SearchDomains::new(
            domains
                .iter()
                .cloned()
                .chain(DEFAULT.iter().map(|s| s.to_string())),
        )
    }

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
        let mut lens = Vec::new();
        self.base_lens(qname, &mut lens);
        lens.into_iter().map(|n| &qname[..n]).collect()
    }

    /// [`Self::bases`] as lengths (each base is a prefix of `qname`), into a reused `out`.
    pub fn base_lens(&self, qname: &str, out: &mut Vec<usize>) {
        out.clear();
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
            if !base.is_empty() && !out.contains(&base.len()) {
                out.push(base.len());
            }
        }
    }
}

/// The search domains of a resolv.conf: glibc uses the last `search` (or `domain`) line.
pub fn parse_resolv_conf(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            out = words
                .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
                .filter(|w| !w.is_empty())
                .collect();
        }
    }
    out
}

/// Search domains from every distinct resolv.conf the node's processes see (each pod has its
/// own), read through the proc root once per mount namespace with [`crate::sys::podfs`].
/// Unreadable, irregular and oversized ones are skipped.
pub fn from_proc(proc: &crate::sys::procfs::ProcRoot) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut out = std::collections::BTreeSet::new();
    for pid in proc.pids().unwrap_or_default() {
        let dir = proc.0.join(pid.to_string());
        let Ok(mnt) = std::fs::metadata(dir.join("ns/mnt")) else {
            continue;
        };
        if !seen.insert((mnt.dev(), mnt.ino())) {
            continue;
        }
        // A pod's resolv.conf is the pod's to choose: a symlink out of its root, a FIFO,
        // /dev/zero, 10 MB. Resolved inside the root, regular files only, capped; anything
        // else is that pod's search list left out (the default patterns still apply).
        match crate::sys::podfs::read_in_root(
            &dir.join("root"),
            "etc/resolv.conf",
            crate::sys::podfs::MAX_POD_FILE,
        ) {
            Ok(bytes) => out.extend(parse_resolv_conf(&String::from_utf8_lossy(&bytes))),
            Err(error) => tracing::debug!(message = "resolv.conf not read.", pid, %error),
        }
    }
    out.into_iter().collect()
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
        let learned = SearchDomains::learned(&["prod.svc.corp.internal".into()]);
        assert_eq!(
            learned.bases("db.example.com.prod.svc.corp.internal"),
            ["db.example.com"]
        );
        assert!(ndots2_saves("db.example.com"));
        assert!(!ndots2_saves("db.example"));
        assert!(!ndots2_saves("redis"));
    }
}

#[cfg(test)]
mod resolv_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes a pod puts in its resolv.conf: no panic, and every domain is a
        /// lower-case word of the text without trailing dots.
        #[test]
        fn parses_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let text = String::from_utf8_lossy(&bytes);
            for d in parse_resolv_conf(&text) {
                prop_assert!(!d.is_empty() && !d.ends_with('.'));
                prop_assert!(!d.chars().any(char::is_whitespace));
                prop_assert_eq!(d.clone(), d.to_ascii_lowercase());
            }
        }

        /// Search lines among arbitrary lines: the last one wins.
        #[test]
        fn last_search_line_wins_among_noise(
            noise in proptest::collection::vec("[ -~]{0,40}", 0..8),
            domains in proptest::collection::vec("[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}", 1..6),
        ) {
            let mut text: String = noise
                .iter()
                .filter(|l| !l.trim_start().starts_with("search") && !l.trim_start().starts_with("domain"))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!("search {}\n", domains.join(" ")));
            prop_assert_eq!(parse_resolv_conf(&text), domains);
        }
    }

    #[test]
    fn last_search_line_wins() {
        let text = "nameserver 10.100.0.10\nsearch a.b\nsearch prod.svc.cluster.local svc.cluster.local cluster.local ec2.internal.\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "ec2.internal"
            ]
        );
        assert!(parse_resolv_conf("nameserver 1.1.1.1\n").is_empty());
    }

    #[test]
    fn reads_each_mount_namespace_once_through_the_proc_root() {
        // This host's own processes: whatever they use, the call must not fail and must be
        // what this process's resolv.conf says at least.
        let own = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let found = from_proc(&crate::sys::procfs::ProcRoot::new("/proc"));
        for d in parse_resolv_conf(&own) {
            assert!(found.contains(&d), "{d} missing from {found:?}");
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(from_proc(&crate::sys::procfs::ProcRoot::new(empty.path())).is_empty());
    }
}
