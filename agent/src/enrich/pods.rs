//! The pods on this node: a kube-rs watcher with field selector `spec.nodeName=NODE` feeding a
//! reflector store, and a small index from pod IP to pod that other sources use. When the API
//! server goes away the store keeps the last known list while the watcher backs off.

use crate::sources::listeners::model::{PodThreads, THREADS_ANNOTATION};
use crate::sources::pod_use::PodSpecs;
use ::kube::runtime::reflector::Store;
use ::kube::runtime::watcher;
use ::kube::{Api, Client};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::pod::{workload_of, PodRef, Workload};

#[derive(Debug, Default)]
struct Maps {
    by_ip: HashMap<IpAddr, PodRef>,
    by_uid: HashMap<String, PodRef>,
    /// Container id (without the `containerd://` scheme) → container name.
    containers: HashMap<String, String>,
    /// Pod uid → workload.
    workloads: HashMap<String, Workload>,
    /// Pod uid → its containers' images and volume mounts (for the storage source).
    volumes: HashMap<String, PodVolumes>,
}

/// What the storage report needs of a pod's spec: its containers' images and where each
/// volume is mounted, with the PersistentVolumeClaim behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub images: Vec<String>,
    /// (mountPath, volume name, claimName)
    pub mounts: Vec<(String, String, Option<String>)>,
}

/// Most containers and mounts kept per pod.
const MAX_POD_ITEMS: usize = 64;

impl PodVolumes {
    pub fn of(pod: &Pod) -> Option<PodVolumes> {
        let spec = pod.spec.as_ref()?;
        let claim = |volume: &str| {
            spec.volumes
                .iter()
                .flatten()
                .find(|v| v.name == volume)
                .and_then(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone())
        };
        Some(PodVolumes {
            images: spec
                .containers
                .iter()
                .take(MAX_POD_ITEMS)
                .filter_map(|c| c.image.clone())
                .collect(),
            mounts: spec
                .containers
                .iter()
                .flat_map(|c| c.volume_mounts.iter().flatten())
                .take(MAX_POD_ITEMS)
                .map(|m| (m.mount_path.clone(), m.name.clone(), claim(&m.name)))
                .collect(),
        })
    }
}

/// Pod IP → pod, for pods with their own network namespace (hostNetwork pods share the node's
/// addresses, so an address says nothing about which of them sent a packet); also pod uid →
/// pod and container id → container name, for sources that know a pod by its cgroup.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodIndex(Arc<RwLock<Maps>>);

impl PodIndex {
    pub fn lookup(&self, ip: IpAddr) -> Option<PodRef> {
        self.0.read().ok()?.by_ip.get(&ip).cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<PodRef> {
        self.0.read().ok()?.by_uid.get(uid).cloned()
    }

    /// The workload of the pod with this uid; None when the pod is not known.
    pub fn workload(&self, uid: &str) -> Option<Workload> {
        self.0.read().ok()?.workloads.get(uid).cloned()
    }

    /// A container's name from its runtime id (with or without `containerd://`).
    pub fn container_name(&self, id: &str) -> Option<String> {
        let id = id.rsplit("://").next().unwrap_or(id);
        self.0.read().ok()?.containers.get(id).cloned()
    }

    /// Replaces the index with these pods.
    pub fn rebuild<'a>(&self, pods: impl IntoIterator<Item = &'a Pod> + Clone) {
        let maps = Maps {
            by_ip: index_of(pods.clone()),
            by_uid: pods
                .clone()
                .into_iter()
                .filter_map(PodRef::of)
                .map(|r| (r.uid.clone(), r))
                .collect(),
            workloads: pods
                .clone()
                .into_iter()
                .filter_map(|p| {
                    let uid = p.metadata.uid.clone()?;
                    Some((uid, workload_of(p)?))
                })
                .collect(),
            volumes: pods
                .clone()
                .into_iter()
                .filter_map(|p| Some((p.metadata.uid.clone()?, PodVolumes::of(p)?)))
                .collect(),
            containers: pods
                .into_iter()
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
                .flatten()
                .filter_map(|c| {
                    let id = c.container_id.as_deref()?;
                    Some((id.rsplit("://").next()?.to_string(), c.name.clone()))
                })
                .collect(),
        };
        if let Ok(mut m) = self.0.write() {
            *m = maps;
        }
    }

    /// Pods known by IP.
    pub fn len(&self) -> usize {
        self.0.read().map(|m| m.by_ip.len()).unwrap_or(0)
    }

    /// Names the pods (and containers) of the worker source's listeners, which know a pod by
    /// the uid in its cgroup path.
    pub fn label_listeners(&self, report: &mut crate::report::Report) {
        for l in &mut report.listeners {
            let Some(p) = l.pod.as_mut() else { continue };
            if let Some(r) = self.by_uid(&p.uid) {
                p.namespace = Some(r.namespace);
                p.name = Some(r.name);
            }
            l.workload = self.workload(&p.uid);
        }
    }

    /// Names the pod (and its workload) behind each NFS mount of the report.
    pub fn label_storage(&self, report: &mut crate::report::Report) {
        for m in &mut report.storage {
            let Some(p) = m.pod.as_mut() else { continue };
            if let Some(r) = self.by_uid(&p.uid) {
                p.namespace = Some(r.namespace);
                p.name = Some(r.name);
            }
            m.workload = self.workload(&p.uid);
            let Some(v) = self
                .0
                .read()
                .ok()
                .and_then(|x| x.volumes.get(&p.uid).cloned())
            else {
                continue;
            };
            crate::sources::storage::report::label_from_spec(m, &v.images, &v.mounts);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names the pod behind each DNS top source of the report (`top_sources[].pod`).
    pub fn label_sources(&self, report: &mut crate::report::Report) {
        for i in &mut report.interfaces {
            let Some(d) = i.dns.as_mut() else { continue };
            for s in &mut d.top_sources {
                if let Some(p) = s.source.parse().ok().and_then(|ip| self.lookup(ip)) {
                    s.pod = Some(p.to_string());
                    s.workload = self.workload(&p.uid);
                }
            }
        }
    }
}

/// Pure: the address map of a set of pods. Pods that finished (Succeeded/Failed) give up their
/// address, which the node may hand to a new pod.
pub fn index_of<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> HashMap<IpAddr, PodRef> {
    let mut map = HashMap::new();
    for pod in pods {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let Some(status) = &pod.status else { continue };
        let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        if host_network || finished {
            continue;
        }
        let Some(r) = PodRef::of(pod) else { continue };
        let ips = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref());
        for ip in ips {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                map.insert(ip, r.clone());
            }
        }
    }
    map
}

/// The enrichment step: this node's pods, watched on the pipeline's runtime, name the pods
/// and workloads behind listeners, probes and DNS sources in each report.
pub struct Pods {
    index: PodIndex,
}

impl Pods {
    /// Watches this node's pods (with Kubernetes access: in-cluster, else KUBECONFIG; without
    /// it one info line, and the receiver's sender is dropped). The receiver gets each pod list.
    /// Each list also updates `threads`, the pods' `headroom.io/threads-per-worker`, and
    /// `specs`, their requests and limits (pod use).
    pub fn start(
        node: String,
        threads: PodThreads,
        specs: PodSpecs,
        ctx: &crate::sources::Context,
    ) -> (Pods, watch::Receiver<Vec<Arc<Pod>>>) {
        let index = PodIndex::default();
        let (tx, rx) = watch::channel(Vec::new());
        let (i, stop) = (index.clone(), ctx.shutdown.clone());
        ctx.runtime.spawn(async move {
            let Some(client) =
                headroom_service::kube::client("running without pods and probes").await
            else {
                return;
            };
            tracing::info!(message = "Watching this node's pods.", node = %node);
            watch_pods(client, node, i, (threads, specs), tx, stop).await
        });
        (Pods { index }, rx)
    }

    pub(super) fn from_index(index: PodIndex) -> Pods {
        Pods { index }
    }

    /// Names the pods and workloads of the report's probes, DNS sources and listeners.
    pub fn fill(&self, report: &mut crate::report::Report) {
        for p in &mut report.probes {
            p.workload = self.index.workload(&p.pod.uid);
        }
        self.index.label_sources(report);
        self.index.label_listeners(report);
        self.index.label_storage(report);
    }
}

/// Watches the pods on `node` until cancelled: keeps `index` current and publishes the pod
/// list on `tx` after each change. Errors back off and retry; the last list stays.
pub async fn watch_pods(
    client: Client,
    node: String,
    index: PodIndex,
    (threads, specs): (PodThreads, PodSpecs),
    tx: watch::Sender<Vec<Arc<Pod>>>,
    stop: CancellationToken,
) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    headroom_service::kube::reflect(
        api,
        cfg,
        "Pod",
        |_| {},
        move |reader| publish(reader, &index, (&threads, &specs), &tx),
        stop,
    )
    .await
}

fn publish(
    reader: &Store<Pod>,
    index: &PodIndex,
    (threads, specs): (&PodThreads, &PodSpecs),
    tx: &watch::Sender<Vec<Arc<Pod>>>,
) {
    let pods = reader.state();
    index.rebuild(pods.iter().map(|p| p.as_ref()));
    specs.set(pods.iter().map(|p| p.as_ref()));
    threads.set(pods.iter().filter_map(|p| {
        let m = &p.metadata;
        let v = m.annotations.as_ref()?.get(THREADS_ANNOTATION)?;
        Some((m.uid.as_deref()?, v.as_str()))
    }));
    tracing::debug!(message = "Pods on this node.", pods = pods.len());
    let _ = tx.send(pods);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_pods_by_uid_and_containers_by_id() {
        let pods: Vec<Pod> = serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "a", "name": "web", "uid": "1111"}, "spec": {"containers": []},
             "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true,
                 "restartCount": 0, "containerID": "containerd://abc123"}]}}
        ]))
        .unwrap();
        let idx = PodIndex::default();
        idx.rebuild(&pods);
        assert_eq!(idx.by_uid("1111").unwrap().to_string(), "a/web");
        assert_eq!(idx.container_name("abc123").as_deref(), Some("app"));
        assert_eq!(
            idx.container_name("containerd://abc123").as_deref(),
            Some("app")
        );
        assert!(idx.by_uid("2222").is_none());
        let mut r = crate::report::Report::new(crate::report::Node::default(), 0, 1, &[]);
        let listener = |uid: &str| crate::sources::listeners::ListenerReport {
            pod: Some(crate::sources::listeners::PodRef {
                namespace: None,
                name: None,
                uid: uid.into(),
            }),
            address: "10.0.0.5".into(),
            workers: 2,
            backlog: 128,
            ..crate::sources::listeners::ListenerReport::test(8080)
        };
        r.listeners = vec![listener("1111"), listener("2222")];
        idx.label_listeners(&mut r);
        let named = r.listeners[0].pod.as_ref().unwrap();
        assert_eq!(
            (named.namespace.as_deref(), named.name.as_deref()),
            (Some("a"), Some("web"))
        );
        assert!(r.listeners[1].pod.as_ref().unwrap().name.is_none());
        assert_eq!(
            r.listeners[0].workload,
            Some(Workload {
                kind: "Pod".into(),
                name: "web".into()
            }),
            "no owner: the pod is its own workload"
        );
        assert_eq!(r.listeners[1].workload, None, "unknown pod: no workload");
    }

    /// Pods as the API server returns them for each controller kind (trimmed to the fields
    /// that matter; ownerReferences as the controllers write them).
    #[test]
    fn workloads_from_owner_references() {
        let pod = |name: &str, labels: serde_json::Value, owners: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": "shop", "name": name, "uid": format!("uid-{name}"),
                             "labels": labels, "ownerReferences": owners},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.9"}
            }))
            .unwrap()
        };
        let owner = |kind: &str, name: &str, controller: bool| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "name": name,
                "uid": format!("owner-{name}"), "controller": controller, "blockOwnerDeletion": true})
        };
        let w = |kind: &str, name: &str| {
            Some(Workload {
                kind: kind.into(),
                name: name.into(),
            })
        };
        let cases = [
            (
                pod(
                    "api-7d9f8b6c5-x2k4p",
                    serde_json::json!({"app": "api", "pod-template-hash": "7d9f8b6c5"}),
                    serde_json::json!([owner("ReplicaSet", "api-7d9f8b6c5", true)]),
                ),
                w("Deployment", "api"),
            ),
            (
                // A ReplicaSet of its own (no pod-template-hash): stays a ReplicaSet.
                pod(
                    "legacy-abcde",
                    serde_json::json!({"app": "legacy"}),
                    serde_json::json!([owner("ReplicaSet", "legacy", true)]),
                ),
                w("ReplicaSet", "legacy"),
            ),
            (
                // The hash label does not match the ReplicaSet's name: not a Deployment's.
                pod(
                    "odd-1",
                    serde_json::json!({"pod-template-hash": "aaaa"}),
                    serde_json::json!([owner("ReplicaSet", "odd-bbbb", true)]),
                ),
                w("ReplicaSet", "odd-bbbb"),
            ),
            (
                pod(
                    "db-0",
                    serde_json::json!({"controller-revision-hash": "db-6b8f7c9d4"}),
                    serde_json::json!([owner("StatefulSet", "db", true)]),
                ),
                w("StatefulSet", "db"),
            ),
            (
                pod(
                    "node-local-dns-q8zt7",
                    serde_json::json!({}),
                    serde_json::json!([owner("DaemonSet", "node-local-dns", true)]),
                ),
                w("DaemonSet", "node-local-dns"),
            ),
            (
                pod(
                    "backup-28112345-7xk2w",
                    serde_json::json!({"batch.kubernetes.io/job-name": "backup-28112345"}),
                    serde_json::json!([{"apiVersion": "batch/v1", "kind": "Job",
                        "name": "backup-28112345", "uid": "j", "controller": true}]),
                ),
                w("Job", "backup-28112345"),
            ),
            (
                // An owner that is not the controller does not make a workload.
                pod(
                    "lonely",
                    serde_json::json!({}),
                    serde_json::json!([owner("ConfigMap", "cfg", false)]),
                ),
                w("Pod", "lonely"),
            ),
            (
                pod("bare", serde_json::json!({}), serde_json::json!([])),
                w("Pod", "bare"),
            ),
        ];
        for (p, want) in &cases {
            assert_eq!(workload_of(p), *want, "{:?}", p.metadata.name);
        }
        let idx = PodIndex::default();
        idx.rebuild(cases.iter().map(|c| &c.0));
        assert_eq!(
            idx.workload("uid-api-7d9f8b6c5-x2k4p"),
            w("Deployment", "api")
        );
        assert_eq!(idx.workload("uid-nope"), None);
    }

    #[test]
    fn index_skips_host_network_and_finished_pods() {
        let pods: Vec<Pod> = serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "a", "name": "web", "uid": "1"}, "spec": {"containers": []},
             "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}},
            {"metadata": {"namespace": "kube-system", "name": "node-local-dns", "uid": "2"},
             "spec": {"containers": [], "hostNetwork": true}, "status": {"podIP": "10.0.0.10"}},
            {"metadata": {"namespace": "a", "name": "job", "uid": "3"}, "spec": {"containers": []},
             "status": {"phase": "Succeeded", "podIP": "10.0.0.6"}},
            {"metadata": {"namespace": "a", "name": "pending", "uid": "4"}, "spec": {"containers": []},
             "status": {"phase": "Pending"}}
        ]))
        .unwrap();
        let idx = PodIndex::default();
        idx.rebuild(&pods);
        assert_eq!(idx.len(), 2);
        let web = idx.lookup("fd00::5".parse().unwrap()).unwrap();
        assert_eq!(web.to_string(), "a/web");
        assert_eq!(idx.lookup("10.0.0.5".parse().unwrap()), Some(web));
        assert!(idx.lookup("10.0.0.10".parse().unwrap()).is_none());
        assert!(idx.lookup("10.0.0.6".parse().unwrap()).is_none());
    }
}
