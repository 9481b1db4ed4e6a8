//! Pods as ScaleDownBlocked reads them. The watch decodes each pod into [`PodLite`] (only the
//! fields below; serde skips the rest of the JSON without allocating it: env, probes, status
//! conditions, managed fields), and the cluster view keeps a [`PodInfo`] of it: requests
//! summed as the scheduler sums them, the few annotations the autoscalers read, local volumes,
//! and shared (interned) labels and scheduling constraints.

use super::intern::Table;
use super::quantity;
use super::select::{NodeTerm, Tolerates, MAX_ITEMS};
use k8s_openapi::api::core::v1::{NodeSelector, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
pub const SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
pub const DAEMONSET_POD: &str = "cluster-autoscaler.kubernetes.io/daemonset-pod";
pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";

/// Most labels, volumes and containers kept per pod.
pub const MAX_LABELS: usize = 64;

/// A pod as the list/watch sends it, decoded into only what the rules read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodLite {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<SpecLite>,
    #[serde(default)]
    pub status: Option<StatusLite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecLite {
    pub node_name: Option<String>,
    pub volumes: Option<Vec<VolumeLite>>,
    pub containers: Option<Vec<ContainerLite>>,
    pub init_containers: Option<Vec<ContainerLite>>,
    pub overhead: Option<BTreeMap<String, String>>,
    pub priority: Option<i32>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub affinity: Option<AffinityLite>,
    pub tolerations: Option<Vec<Toleration>>,
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeLite {
    #[serde(default)]
    pub name: String,
    pub host_path: Option<serde::de::IgnoredAny>,
    pub empty_dir: Option<EmptyDirLite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EmptyDirLite {
    pub medium: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLite {
    #[serde(default)]
    pub name: String,
    pub image: Option<String>,
    pub resources: Option<ResourcesLite>,
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResourcesLite {
    pub requests: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityLite {
    pub node_affinity: Option<NodeAffinityLite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinityLite {
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusLite {
    pub phase: Option<String>,
}

impl ::kube::Resource for PodLite {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Where a pod may run: node selector, required node affinity terms (ORed; None: any node),
/// tolerations. Shared by the pods of one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scheduling {
    pub node_selector: Vec<(String, String)>,
    pub required: Option<Vec<NodeTerm>>,
    pub tolerations: Vec<Tolerates>,
}

/// A pod's controlling owner (`ownerReferences[].controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: Arc<str>,
    pub name: Box<str>,
}

/// A local volume as the autoscaler counts it: hostPath, or emptyDir not on `Memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVolume {
    pub name: Box<str>,
    pub host_path: bool,
}

/// One container of a pod without a controller (name, image): enough to write the Deployment
/// that should own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub name: Box<str>,
    pub image: Box<str>,
}

/// A pod, compact.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    /// `spec.nodeName`; empty while unscheduled.
    pub node: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
    pub controller: Option<Owner>,
    pub mirror: bool,
    /// Owned by a DaemonSet, or annotated `cluster-autoscaler.kubernetes.io/daemonset-pod: "true"`.
    pub daemonset: bool,
    /// `cluster-autoscaler.kubernetes.io/safe-to-evict`: Some(true) for "true", Some(false)
    /// for "false".
    pub safe_to_evict: Option<bool>,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    pub local_volumes: Vec<LocalVolume>,
    /// `cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes`, split at commas.
    pub safe_local_volumes: Vec<Box<str>>,
    /// `metadata.deletionTimestamp` (seconds since the epoch) and the grace period.
    pub deleting: Option<(i64, i64)>,
    pub cpu_m: u64,
    pub memory: u64,
    /// Whether any container states a CPU or memory request.
    pub has_requests: bool,
    pub priority: i32,
    pub scheduling: Arc<Scheduling>,
    /// Containers of a pod without a controller only.
    pub containers: Vec<ContainerRef>,
}

/// The shared tables pods are interned into.
#[derive(Debug, Default)]
pub struct Interner {
    pub text: Table<str>,
    pub labels: Table<BTreeMap<String, String>>,
    pub scheduling: Table<Scheduling>,
}

impl Interner {
    pub fn sweep(&mut self) {
        self.text.sweep();
        self.labels.sweep();
        self.scheduling.sweep();
    }
}

/// The scheduler's pod requests (`resourcehelper.PodRequests`): containers summed; sidecars
/// (init containers with `restartPolicy: Always`) added; the largest regular init container
/// (with the sidecars started before it) if that is more; plus `overhead`.
pub fn requests(spec: &SpecLite) -> (u64, u64, bool) {
    let mut any = false;
    let mut req = |c: &ContainerLite| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |k: &str, f: fn(&str) -> Option<u64>| r.and_then(|r| r.get(k)).and_then(|q| f(q));
        let cpu = get("cpu", quantity::millicores);
        let mem = get("memory", quantity::units);
        any |= cpu.is_some() || mem.is_some();
        (cpu.unwrap_or(0), mem.unwrap_or(0))
    };
    let add = |a: (u64, u64), b: (u64, u64)| (a.0.saturating_add(b.0), a.1.saturating_add(b.1));
    let max = |a: (u64, u64), b: (u64, u64)| (a.0.max(b.0), a.1.max(b.1));
    let mut sum = (0, 0);
    for c in spec.containers.iter().flatten() {
        sum = add(sum, req(c));
    }
    let (mut sidecars, mut init) = ((0, 0), (0, 0));
    for c in spec.init_containers.iter().flatten() {
        let r = req(c);
        let this = if c.restart_policy.as_deref() == Some("Always") {
            sum = add(sum, r);
            sidecars = add(sidecars, r);
            sidecars
        } else {
            add(r, sidecars)
        };
        init = max(init, this);
    }
    let mut total = max(sum, init);
    if let Some(o) = &spec.overhead {
        let cpu = o
            .get("cpu")
            .and_then(|q| quantity::millicores(q))
            .unwrap_or(0);
        let mem = o
            .get("memory")
            .and_then(|q| quantity::units(q))
            .unwrap_or(0);
        total = add(total, (cpu, mem));
    }
    (total.0, total.1, any)
}

/// The autoscaler's `IsPodTerminal`: a pod that will never run again.
pub fn terminal(phase: &str, restart_policy: &str) -> bool {
    match (restart_policy, phase) {
        ("Never", "Succeeded" | "Failed") => true,
        ("OnFailure", "Succeeded") => true,
        _ => phase == "Failed",
    }
}

impl PodInfo {
    /// The compact pod; None for a terminal pod (it blocks nothing and requests nothing) or one
    /// without a name.
    pub fn from_lite(p: &PodLite, i: &mut Interner) -> Option<PodInfo> {
        let m = &p.metadata;
        let name = m.name.as_deref()?;
        let empty = SpecLite::default();
        let spec = p.spec.as_ref().unwrap_or(&empty);
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if terminal(phase, spec.restart_policy.as_deref().unwrap_or("Always")) {
            return None;
        }
        let ann = |k: &str| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .map(String::as_str)
        };
        let controller = m
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| Owner {
                kind: i.text.text(&o.kind),
                name: o.name.as_str().into(),
            });
        let daemonset = controller.as_ref().is_some_and(|o| &*o.kind == "DaemonSet")
            || ann(DAEMONSET_POD) == Some("true");
        let labels: BTreeMap<String, String> = m
            .labels
            .iter()
            .flatten()
            .take(MAX_LABELS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let local_volumes = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| {
                v.host_path.is_some()
                    || v.empty_dir
                        .as_ref()
                        .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
            })
            .take(MAX_ITEMS)
            .map(|v| LocalVolume {
                name: v.name.as_str().into(),
                host_path: v.host_path.is_some(),
            })
            .collect();
        let safe_local_volumes = ann(SAFE_TO_EVICT_LOCAL_VOLUMES)
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').take(MAX_ITEMS).map(Into::into).collect())
            .unwrap_or_default();
        let scheduling = Scheduling {
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            required: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| {
                    s.node_selector_terms
                        .iter()
                        .take(MAX_ITEMS)
                        .map(NodeTerm::from_k8s)
                        .collect()
                }),
            tolerations: spec
                .tolerations
                .iter()
                .flatten()
                .take(MAX_ITEMS)
                .map(Tolerates::from_k8s)
                .collect(),
        };
        let (cpu_m, memory, has_requests) = requests(spec);
        let containers = if controller.is_none() {
            spec.containers
                .iter()
                .flatten()
                .take(16)
                .map(|c| ContainerRef {
                    name: c.name.as_str().into(),
                    image: c.image.as_deref().unwrap_or_default().into(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(PodInfo {
            namespace: i.text.text(m.namespace.as_deref().unwrap_or("default")),
            name: name.into(),
            node: i.text.text(spec.node_name.as_deref().unwrap_or_default()),
            labels: i.labels.value(labels),
            controller,
            mirror: ann(MIRROR).is_some(),
            daemonset,
            safe_to_evict: match ann(SAFE_TO_EVICT) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
            do_not_disrupt: ann(DO_NOT_DISRUPT) == Some("true"),
            local_volumes,
            safe_local_volumes,
            deleting: m.deletion_timestamp.as_ref().map(|t| {
                (
                    t.0.as_second(),
                    spec.termination_grace_period_seconds.unwrap_or(30),
                )
            }),
            cpu_m,
            memory,
            has_requests,
            priority: spec.priority.unwrap_or(0),
            scheduling: i.scheduling.value(scheduling),
            containers,
        })
    }

    /// The autoscaler's `IsPodLongTerminating`: deleted longer ago than its grace period and
    /// 30 s more; such a pod counts for nothing.
    pub fn long_terminating(&self, now_s: i64) -> bool {
        self.deleting
            .is_some_and(|(at, grace)| at.saturating_add(grace).saturating_add(30) < now_s)
    }

    /// Local volumes not named in `safe-to-evict-local-volumes` (`HasBlockingLocalStorage`).
    pub fn blocking_local_volumes(&self) -> impl Iterator<Item = &LocalVolume> {
        self.local_volumes
            .iter()
            .filter(|v| !self.safe_local_volumes.contains(&v.name))
    }

    /// The workload behind the controller: a ReplicaSet named `<deployment>-<pod-template-hash>`
    /// is its Deployment's; anything else is itself.
    pub fn workload(&self) -> Option<(&str, &str)> {
        let o = self.controller.as_ref()?;
        if &*o.kind == "ReplicaSet" {
            if let Some(hash) = self.labels.get("pod-template-hash") {
                if let Some(d) = o
                    .name
                    .strip_suffix(hash.as_str())
                    .and_then(|n| n.strip_suffix('-'))
                {
                    return Some(("Deployment", d));
                }
            }
        }
        Some((&o.kind, &o.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lite(v: serde_json::Value) -> PodLite {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_sum_as_the_scheduler_sums_them() {
        let p = lite(serde_json::json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}}],
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "128Mi"}}}],
            "overhead": {"cpu": "10m"}}}));
        // Containers 500m + sidecar 100m = 600m; the init step needs 2000m + 100m (sidecar
        // started before it) = 2100m, the larger; memory 256 + 64 = 320Mi vs 128 + 64.
        let (cpu, mem, any) = requests(p.spec.as_ref().unwrap());
        assert_eq!((cpu, mem, any), (2110, 320 << 20, true));
        let none = lite(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}),
        );
        assert_eq!(requests(none.spec.as_ref().unwrap()), (0, 0, false));
    }

    #[test]
    fn compact_pod_keeps_what_the_autoscalers_read() {
        let mut i = Interner::default();
        let p = lite(
            serde_json::json!({"metadata": {"name": "coredns-5d78c9869d-abcde", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"},
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "tmp",
                "kubectl.kubernetes.io/last-applied-configuration": "{…}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "coredns-5d78c9869d", "uid": "u", "controller": true}]},
            "spec": {"nodeName": "node-a", "volumes": [
                {"name": "tmp", "emptyDir": {}}, {"name": "cache", "emptyDir": {"medium": "Memory"}},
                {"name": "logs", "hostPath": {"path": "/var/log"}}, {"name": "cfg", "configMap": {"name": "x"}}],
                "containers": [{"name": "coredns", "image": "coredns:1.11"}]},
            "status": {"phase": "Running"}}),
        );
        let c = PodInfo::from_lite(&p, &mut i).unwrap();
        assert_eq!(c.workload(), Some(("Deployment", "coredns")));
        let local: Vec<&str> = c.local_volumes.iter().map(|v| &*v.name).collect();
        assert_eq!(
            local,
            ["tmp", "logs"],
            "Memory emptyDir and configMap are not local storage"
        );
        let blocking: Vec<&str> = c.blocking_local_volumes().map(|v| &*v.name).collect();
        assert_eq!(blocking, ["logs"]);
        assert!(c.containers.is_empty(), "only bare pods keep containers");
        assert!(!c.daemonset && !c.mirror && !c.has_requests);
        // A second pod of the same ReplicaSet shares labels and scheduling.
        let d = PodInfo::from_lite(&p, &mut i).unwrap();
        assert!(Arc::ptr_eq(&c.labels, &d.labels) && Arc::ptr_eq(&c.scheduling, &d.scheduling));
        let done = lite(
            serde_json::json!({"metadata": {"name": "job-1"}, "spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
        );
        assert!(PodInfo::from_lite(&done, &mut i).is_none());
    }
}
