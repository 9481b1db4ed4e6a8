//! Pod identity as reports carry it: one [`PodRef`] for a known pod and the [`Workload`] that
//! owns it. Shared by the sources (probes, DNS top talkers, listeners), the enrichment step
//! and the exporters; it imports nothing of theirs.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

/// A pod as reports name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    /// None for a pod without a name (never from an API server).
    pub fn of(pod: &Pod) -> Option<PodRef> {
        let m = &pod.metadata;
        Some(PodRef {
            namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
            name: m.name.clone()?,
            uid: m.uid.clone().unwrap_or_default(),
        })
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The workload a pod belongs to: its controller (ownerReferences with `controller: true`),
/// with a ReplicaSet made by a Deployment named for the Deployment, or the pod itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, … (the controller's kind), or Pod.
    pub kind: String,
    pub name: String,
}

/// Label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet is named
/// `DEPLOYMENT-HASH`.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Pure: the pod's workload. A ReplicaSet owner whose name is `NAME-HASH`, HASH being the pod's
/// `pod-template-hash` label, stands for the Deployment NAME (the hop to the Deployment is
/// not on the pod, and asking the API server for every ReplicaSet would cost a watch); any
/// other controller stands for itself; a pod without one is its own workload. None for a pod
/// without a name.
pub fn workload_of(pod: &Pod) -> Option<Workload> {
    let m = &pod.metadata;
    let name = m.name.clone()?;
    let controller = m
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let Some(o) = controller else {
        return Some(Workload {
            kind: "Pod".into(),
            name,
        });
    };
    let hash = m.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
    if o.kind == "ReplicaSet" {
        if let Some(deployment) = hash
            .filter(|h| !h.is_empty())
            .and_then(|h| o.name.strip_suffix(h.as_str()))
            .and_then(|n| n.strip_suffix('-'))
            .filter(|n| !n.is_empty())
        {
            return Some(Workload {
                kind: "Deployment".into(),
                name: deployment.to_string(),
            });
        }
    }
    Some(Workload {
        kind: o.kind.clone(),
        name: o.name.clone(),
    })
}
