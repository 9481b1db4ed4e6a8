//! Nodes and PodDisruptionBudgets as ScaleDownBlocked reads them, compact.

use super::quantity;
use super::select::{NodeTaint, Selector, MAX_ITEMS};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Labels that say Karpenter manages a node (v1, and the v1alpha5 provisioner).
pub const KARPENTER_LABELS: [&str; 2] = ["karpenter.sh/nodepool", "karpenter.sh/provisioner-name"];

/// A node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<NodeTaint>,
    pub unschedulable: bool,
    /// The Ready condition is True.
    pub ready: bool,
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created_s: Option<i64>,
    /// Allocatable CPU (millicores) and memory (bytes); None when absent or unparsable.
    pub cpu_m: Option<u64>,
    pub memory: Option<u64>,
    /// `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`.
    pub scale_down_disabled: bool,
    /// `karpenter.sh/do-not-disrupt: "true"` on the node.
    pub do_not_disrupt: bool,
}

impl NodeInfo {
    pub fn from_k8s(n: &Node) -> Option<NodeInfo> {
        let m = &n.metadata;
        let ann = |k: &str| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .map(String::as_str)
        };
        let status = n.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref());
        Some(NodeInfo {
            name: m.name.clone()?,
            labels: m
                .labels
                .iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            taints: n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(NodeTaint::from_k8s)
                .collect(),
            unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            created_s: m.creation_timestamp.as_ref().map(|t| t.0.as_second()),
            cpu_m: alloc
                .and_then(|a| a.get("cpu"))
                .and_then(|q| quantity::millicores(&q.0)),
            memory: alloc
                .and_then(|a| a.get("memory"))
                .and_then(|q| quantity::units(&q.0)),
            scale_down_disabled: ann(SCALE_DOWN_DISABLED) == Some("true"),
            do_not_disrupt: ann(super::pod::DO_NOT_DISRUPT) == Some("true"),
        })
    }

    /// Managed by Karpenter (a NodePool's node) rather than a Cluster Autoscaler node group.
    pub fn karpenter(&self) -> bool {
        KARPENTER_LABELS
            .iter()
            .any(|l| self.labels.contains_key(*l))
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A policy/v1 PodDisruptionBudget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PdbInfo {
    pub namespace: String,
    pub name: String,
    /// None: the PDB selects no pod.
    pub selector: Option<Selector>,
    /// `status.disruptionsAllowed` (0 until the disruption controller has written a status).
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    /// `spec.minAvailable` / `spec.maxUnavailable` as written (`1`, `50%`).
    pub min_available: Option<String>,
    pub max_unavailable: Option<String>,
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

impl PdbInfo {
    pub fn from_k8s(p: &PodDisruptionBudget) -> Option<PdbInfo> {
        let spec = p.spec.as_ref();
        let st = p.status.as_ref();
        Some(PdbInfo {
            namespace: p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: p.metadata.name.clone()?,
            selector: spec
                .and_then(|s| s.selector.as_ref())
                .map(Selector::from_k8s),
            disruptions_allowed: st.map(|s| s.disruptions_allowed).unwrap_or(0),
            current_healthy: st.map(|s| s.current_healthy).unwrap_or(0),
            desired_healthy: st.map(|s| s.desired_healthy).unwrap_or(0),
            expected_pods: st.map(|s| s.expected_pods).unwrap_or(0),
            min_available: spec
                .and_then(|s| s.min_available.as_ref())
                .map(int_or_string),
            max_unavailable: spec
                .and_then(|s| s.max_unavailable.as_ref())
                .map(int_or_string),
        })
    }

    /// Whether it covers a pod of `namespace` with `labels` (the autoscaler's `MatchingPdbs`).
    pub fn covers(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespace == namespace && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_pdbs_become_plain_data() {
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "node-a",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"node.kubernetes.io/instance-type": "m5.4xlarge", "karpenter.sh/nodepool": "default"},
            "annotations": {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "15890m", "memory": "57691Mi", "pods": "234"},
                "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        let i = NodeInfo::from_k8s(&n).unwrap();
        assert_eq!((i.cpu_m, i.memory), (Some(15890), Some(57691 << 20)));
        assert!(i.ready && i.karpenter() && i.scale_down_disabled && !i.unschedulable);
        assert_eq!(i.created_s, Some(1_767_225_600));
        assert_eq!(i.taints.len(), 1);
        let p: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 3, "desiredHealthy": 3, "expectedPods": 3}}))
        .unwrap();
        let b = PdbInfo::from_k8s(&p).unwrap();
        assert_eq!(b.max_unavailable.as_deref(), Some("0"));
        let l: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        assert!(b.covers("shop", &l) && !b.covers("other", &l));
        let none = PdbInfo {
            selector: None,
            ..b
        };
        assert!(
            !none.covers("shop", &l),
            "a PDB without a selector selects nothing"
        );
    }
}
