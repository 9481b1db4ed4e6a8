//! Which interfaces to measure: named or globbed ones, or by default the node's physical
//! interfaces (those backed by a device), never pod-side veths, which would count packets twice.

use std::path::Path;

/// Interface choice from `--interface` (repeatable).
#[derive(Debug, Clone)]
pub enum Selection {
    /// Interfaces with `/sys/class/net/X/device`: the ENIs on EC2.
    Physical,
    /// Every interface but loopback: a sidecar's view of its pod, whose eth0 (the pod's ENI
    /// on Fargate, a veth elsewhere) has no device behind it.
    NotLoopback,
    /// Names and globs given by the user.
    Patterns(Vec<Pattern>),
}

#[derive(Debug, Clone)]
pub enum Pattern {
    Name(String),
    Glob(glob::Pattern),
}

impl Pattern {
    /// A literal name, or a glob when the text has `*`, `?` or `[`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("invalid --interface '': empty name; give a name such as eth0 or a glob such as 'eth*'".into());
        }
        if text.contains(['*', '?', '[']) {
            glob::Pattern::new(text).map(Pattern::Glob).map_err(|e| {
                format!("invalid --interface glob '{text}': {e}; use shell-style globs such as 'eth*' or 'ens[5-6]'")
            })
        } else if text.len() > 15 || text.contains(['/', ' ']) {
            Err(format!("invalid --interface '{text}': not an interface name (at most 15 characters, no '/' or spaces)"))
        } else {
            Ok(Pattern::Name(text.to_string()))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Name(n) => n == name,
            Pattern::Glob(g) => g.matches(name),
        }
    }
}

const SYS_NET: &str = "/sys/class/net";

/// Interface names on this host (network namespace), sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(SYS_NET)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether an interface is backed by a device (ENA, virtio…), as opposed to veth, bridges, lo.
pub fn is_physical(name: &str) -> bool {
    Path::new(SYS_NET).join(name).join("device").exists()
}

/// The interface's MAC address, when it has one.
pub fn mac(name: &str) -> Option<String> {
    let s = std::fs::read_to_string(Path::new(SYS_NET).join(name).join("address")).ok()?;
    let s = s.trim();
    (!s.is_empty() && s != "00:00:00:00:00:00").then(|| s.to_string())
}

/// The interfaces of `all` that `selection` picks.
pub fn select(selection: &Selection, all: &[String]) -> Vec<String> {
    match selection {
        Selection::Physical => all.iter().filter(|n| is_physical(n)).cloned().collect(),
        Selection::NotLoopback => all.iter().filter(|n| *n != "lo").cloned().collect(),
        Selection::Patterns(ps) => all
            .iter()
            .filter(|n| ps.iter().any(|p| p.matches(n)))
            .cloned()
            .collect(),
    }
}

/// Literal names in the selection that do not exist, for a startup error.
pub fn missing(selection: &Selection, all: &[String]) -> Vec<String> {
    match selection {
        Selection::Physical | Selection::NotLoopback => Vec::new(),
        Selection::Patterns(ps) => ps
            .iter()
            .filter_map(|p| match p {
                Pattern::Name(n) if !all.contains(n) => Some(n.clone()),
                _ => None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs() {
        let all: Vec<String> = ["eni0", "eni1", "eth0", "lo", "veth1a2b"]
            .map(String::from)
            .to_vec();
        let sel = Selection::Patterns(vec![
            Pattern::parse("eni*").unwrap(),
            Pattern::parse("lo").unwrap(),
        ]);
        assert_eq!(select(&sel, &all), ["eni0", "eni1", "lo"]);
        assert_eq!(
            select(&Selection::NotLoopback, &all),
            ["eni0", "eni1", "eth0", "veth1a2b"],
            "a sidecar takes its pod's veth-backed eth0"
        );
        let sel = Selection::Patterns(vec![Pattern::parse("eth9").unwrap()]);
        assert_eq!(missing(&sel, &all), ["eth9"]);
    }

    #[test]
    fn bad_patterns_explain_themselves() {
        let e = Pattern::parse("eth[").unwrap_err();
        assert!(e.contains("invalid --interface glob 'eth['"), "{e}");
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a/b").is_err());
        assert!(Pattern::parse("averyveryverylongname").is_err());
    }
}
