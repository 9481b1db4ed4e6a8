//! `[listeners]`: the listener source's section of the config file, and the caps it sets on
//! what one report carries. A pod binding thousands of ports must not make the node's window
//! too large to export (and so cost the node its other figures): beyond the caps, listeners
//! are left out of the report and counted.

use super::ListenerReport;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `[listeners]` in the config file.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Most listeners reported per pod (processes outside pods: per network namespace).
    pub max_per_pod: u32,
    /// Most listeners reported for the whole node.
    pub max_per_node: u32,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_per_pod: 64,
            max_per_node: 1024,
        }
    }
}

/// Highest cap accepted: a window of this many listeners still exports (≈ 1 KiB each in OTLP).
pub const MAX_CAP: u32 = 4096;

impl ListenerConfig {
    /// Every problem, one line each, naming the fix.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, v) in [
            ("max_per_pod", self.max_per_pod),
            ("max_per_node", self.max_per_node),
        ] {
            if !(1..=MAX_CAP).contains(&v) {
                errors.push(format!(
                    "invalid listeners.{name} {v}: must be between 1 and {MAX_CAP}"
                ));
            }
        }
        errors
    }
}

/// Listeners left out of one report window, by the cap that left them out.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Omitted {
    pub pod_cap: u64,
    pub node_cap: u64,
}

impl Omitted {
    pub fn total(&self) -> u64 {
        self.pod_cap + self.node_cap
    }
}

/// Keeps at most `max_per_pod` listeners of each pod, then `max_per_node` in all; the busiest
/// are kept (mean busy workers, then workers, then the report's order), the report's order is
/// kept. Returns what was left out.
pub fn apply(list: &mut Vec<ListenerReport>, cfg: &ListenerConfig) -> Omitted {
    let mut omitted = Omitted::default();
    if list.len() <= cfg.max_per_pod.min(cfg.max_per_node) as usize {
        return omitted;
    }
    // Ranked indices, busiest first; ties keep the report's order.
    let mut rank: Vec<usize> = (0..list.len()).collect();
    rank.sort_by(|&a, &b| {
        let (x, y) = (&list[a], &list[b]);
        y.busy_mean
            .total_cmp(&x.busy_mean)
            .then(y.workers.cmp(&x.workers))
            .then(a.cmp(&b))
    });
    let mut keep = vec![false; list.len()];
    let mut per_pod: HashMap<(Option<&str>, u64), u32> = HashMap::new();
    let mut kept = 0u32;
    for i in rank {
        let l = &list[i];
        // Outside pods, a network namespace is the unit.
        let key = match &l.pod {
            Some(p) => (Some(p.uid.as_str()), 0),
            None => (None, l.netns),
        };
        let n = per_pod.entry(key).or_default();
        if *n >= cfg.max_per_pod {
            omitted.pod_cap += 1;
        } else if kept >= cfg.max_per_node {
            omitted.node_cap += 1;
        } else {
            *n += 1;
            kept += 1;
            keep[i] = true;
        }
    }
    let mut it = keep.into_iter();
    list.retain(|_| it.next().unwrap_or(false));
    omitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::listeners::PodRef;

    fn l(pod: Option<&str>, netns: u64, port: u16, busy: f64) -> ListenerReport {
        ListenerReport {
            pod: pod.map(|u| PodRef {
                namespace: None,
                name: None,
                uid: u.into(),
            }),
            process: "p".into(),
            busy_mean: busy,
            netns,
            ..ListenerReport::test(port)
        }
    }

    #[test]
    fn caps_keep_the_busiest_per_pod_then_per_node_in_order() {
        let cfg = ListenerConfig {
            max_per_pod: 2,
            max_per_node: 3,
        };
        let mut v = vec![
            l(Some("a"), 1, 1, 0.0),
            l(Some("a"), 1, 2, 0.5),
            l(Some("a"), 1, 3, 0.7),
            l(Some("b"), 2, 4, 0.0),
            l(None, 3, 5, 0.1),
            l(None, 4, 6, 0.0),
        ];
        let o = apply(&mut v, &cfg);
        let ports: Vec<u16> = v.iter().filter_map(|l| l.port).collect();
        // a keeps its busiest two (2, 3); the node keeps three: 3, 2, then host listener 5.
        assert_eq!(ports, [2, 3, 5]);
        assert_eq!(
            o,
            Omitted {
                pod_cap: 1,
                node_cap: 2
            }
        );
        let mut small = vec![l(None, 1, 1, 0.0)];
        assert_eq!(apply(&mut small, &cfg).total(), 0);
        assert_eq!(small.len(), 1);
    }

    #[test]
    fn caps_are_validated() {
        assert!(ListenerConfig::default().validate().is_empty());
        let bad = ListenerConfig {
            max_per_pod: 0,
            max_per_node: 100_000,
        };
        let e = bad.validate();
        assert_eq!(e.len(), 2);
        assert!(e[0].contains("listeners.max_per_pod 0"), "{e:?}");
    }

    #[test]
    fn the_config_section_parses_with_defaults_and_rejects_unknown_fields() {
        let c: crate::config::Config = toml::from_str("[listeners]\nmax_per_pod = 8\n").unwrap();
        assert_eq!(
            (c.listeners.max_per_pod, c.listeners.max_per_node),
            (8, 1024)
        );
        let s = c.validate().unwrap();
        assert_eq!(s.workers.caps, c.listeners);
        assert!(toml::from_str::<crate::config::Config>("[listeners]\nmax = 1\n").is_err());
        let bad: crate::config::Config = toml::from_str("[listeners]\nmax_per_node = 0\n").unwrap();
        let e = bad.validate().unwrap_err();
        assert!(
            e.iter().any(|e| e.contains("listeners.max_per_node 0")),
            "{e:?}"
        );
    }
}
