//! Label selectors, node selector terms and taint tolerations as compact, hashable data, with
//! the matching rules of apimachinery (`LabelSelectorAsSelector`) and the scheduler
//! (node affinity, `TaintToleration`): what PDB matching and the "can another node take this
//! pod" check of ScaleDownBlocked need.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;

/// Most requirements, values or tolerations kept from one object: the API server takes far
/// more, but no real selector needs them and every pod is hostile.
pub const MAX_ITEMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// An operator this version does not know: matches nothing, as the API server would refuse it.
    Unknown,
}

impl Op {
    fn parse(s: &str) -> Op {
        match s {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => Op::Unknown,
        }
    }
}

/// One requirement: `key op values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Req {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Req {
    fn new(key: &str, op: &str, values: Option<&Vec<String>>) -> Req {
        Req {
            key: key.to_string(),
            op: Op::parse(op),
            values: values
                .map(|v| v.iter().take(MAX_ITEMS).cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Whether `labels` satisfy it (apimachinery's `Requirement.Matches`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        let int = |s: &str| s.parse::<i64>().ok();
        match self.op {
            Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotIn => !v.is_some_and(|v| self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(have), Some(bound)) = (
                    v.and_then(|v| int(v)),
                    self.values.first().and_then(|b| int(b)),
                ) else {
                    return false;
                };
                if self.op == Op::Gt {
                    have > bound
                } else {
                    have < bound
                }
            }
            Op::Unknown => false,
        }
    }
}

/// A metav1.LabelSelector. A PDB without one (`None` where it is held) selects nothing; an
/// empty one selects every pod of its namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub match_labels: Vec<(String, String)>,
    pub exprs: Vec<Req>,
}

impl Selector {
    pub fn from_k8s(s: &LabelSelector) -> Selector {
        Selector {
            match_labels: s
                .match_labels
                .iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            exprs: s
                .match_expressions
                .iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(|r: &LabelSelectorRequirement| {
                    Req::new(&r.key, &r.operator, r.values.as_ref())
                })
                .collect(),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|r| r.matches(labels))
    }
}

/// A node selector term of required node affinity: label requirements and field
/// requirements (only `metadata.name` exists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeTerm {
    pub exprs: Vec<Req>,
    pub fields: Vec<Req>,
}

impl NodeTerm {
    pub fn from_k8s(t: &NodeSelectorTerm) -> NodeTerm {
        let reqs = |v: &Option<Vec<NodeSelectorRequirement>>| {
            v.iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(|r| Req::new(&r.key, &r.operator, r.values.as_ref()))
                .collect()
        };
        NodeTerm {
            exprs: reqs(&t.match_expressions),
            fields: reqs(&t.match_fields),
        }
    }

    /// An empty term matches no node (the scheduler's rule).
    pub fn matches(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.exprs.is_empty() && self.fields.is_empty() {
            return false;
        }
        let fields: BTreeMap<String, String> =
            [("metadata.name".to_string(), node.to_string())].into();
        self.exprs.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches(&fields))
    }
}

/// A pod's toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tolerates {
    /// Empty with `exists`: every key.
    pub key: String,
    pub exists: bool,
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
}

impl Tolerates {
    pub fn from_k8s(t: &Toleration) -> Tolerates {
        Tolerates {
            key: t.key.clone().unwrap_or_default(),
            exists: t.operator.as_deref() == Some("Exists"),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone().unwrap_or_default(),
        }
    }

    /// The scheduler's `ToleratesTaint`.
    pub fn taint(&self, t: &NodeTaint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        self.exists || self.value == t.value
    }
}

/// A node's taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeTaint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl NodeTaint {
    pub fn from_k8s(t: &Taint) -> NodeTaint {
        NodeTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone(),
        }
    }

    /// NoSchedule and NoExecute keep new pods off; PreferNoSchedule does not.
    pub fn repels(&self) -> bool {
        self.effect == "NoSchedule" || self.effect == "NoExecute"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_apimachinery_does() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("gen", "7")]);
        let s = |ml: &[(&str, &str)], ex: &[(&str, &str, &[&str])]| Selector {
            match_labels: ml
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            exprs: ex
                .iter()
                .map(|(k, op, v)| Req {
                    key: k.to_string(),
                    op: Op::parse(op),
                    values: v.iter().map(|x| x.to_string()).collect(),
                })
                .collect(),
        };
        assert!(s(&[], &[]).matches(&l), "empty selects all");
        assert!(s(&[("app", "web")], &[]).matches(&l));
        assert!(!s(&[("app", "db")], &[]).matches(&l));
        assert!(s(&[], &[("tier", "In", &["front", "back"])]).matches(&l));
        assert!(!s(&[], &[("tier", "NotIn", &["front"])]).matches(&l));
        assert!(
            s(&[], &[("zone", "NotIn", &["a"])]).matches(&l),
            "NotIn holds for a missing key"
        );
        assert!(s(&[], &[("zone", "DoesNotExist", &[])]).matches(&l));
        assert!(!s(&[], &[("app", "Bogus", &[])]).matches(&l));
        let gt = Req {
            key: "gen".into(),
            op: Op::Gt,
            values: vec!["6".into()],
        };
        assert!(gt.matches(&l));
        let lt = Req {
            key: "gen".into(),
            op: Op::Lt,
            values: vec!["x".into()],
        };
        assert!(!lt.matches(&l));
    }

    #[test]
    fn tolerations_follow_the_scheduler() {
        let t = NodeTaint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: "NoSchedule".into(),
        };
        let tol = |key: &str, exists: bool, value: &str, effect: &str| Tolerates {
            key: key.into(),
            exists,
            value: value.into(),
            effect: effect.into(),
        };
        assert!(tol("dedicated", false, "gpu", "NoSchedule").taint(&t));
        assert!(tol("dedicated", false, "gpu", "").taint(&t));
        assert!(
            tol("", true, "", "").taint(&t),
            "operator Exists without key tolerates all"
        );
        assert!(!tol("dedicated", false, "cpu", "NoSchedule").taint(&t));
        assert!(!tol("dedicated", true, "", "NoExecute").taint(&t));
        let term = NodeTerm {
            exprs: vec![],
            fields: vec![Req {
                key: "metadata.name".into(),
                op: Op::In,
                values: vec!["n1".into()],
            }],
        };
        assert!(term.matches("n1", &BTreeMap::new()));
        assert!(!term.matches("n2", &BTreeMap::new()));
        assert!(!NodeTerm::default().matches("n1", &BTreeMap::new()));
    }
}
