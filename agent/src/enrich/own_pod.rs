//! A sidecar's own pod: `get` on that one pod (RBAC: `get` on pods in its namespace, no
//! node-wide list or watch), repeated while the agent runs, feeding the same pod index and
//! pod list as the node agent's watcher (probes, listener names, threads per worker).

use super::pods::{PodIndex, Pods};
use crate::mode::OwnPod;
use crate::sources::listeners::model::{PodThreads, THREADS_ANNOTATION};
use ::kube::Api;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the pod is read again (its spec is fixed, but its IP and status are not).
pub const REFRESH: Duration = Duration::from_secs(30);
/// How soon a failed read is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

impl Pods {
    /// Reads `own`'s pod from the API (with Kubernetes access; without it, or without
    /// POD_NAME/POD_NAMESPACE, one line and the receiver's sender is dropped). The receiver
    /// gets the one-pod list after each read.
    pub fn start_own(
        own: OwnPod,
        threads: PodThreads,
        ctx: &crate::sources::Context,
    ) -> (Pods, watch::Receiver<Vec<Arc<Pod>>>) {
        let index = PodIndex::default();
        let (tx, rx) = watch::channel(Vec::new());
        let (i, stop) = (index.clone(), ctx.shutdown.clone());
        ctx.runtime.spawn(async move {
            let (Some(ns), Some(name)) = (own.namespace.clone(), own.name.clone()) else {
                tracing::warn!(
                    message = "Sidecar without POD_NAME and POD_NAMESPACE: no probes, listeners not named. Set them from the downward API (metadata.name, metadata.namespace)."
                );
                return;
            };
            let Some(client) =
                headroom_service::kube::client("running without this pod's probes").await
            else {
                return;
            };
            tracing::info!(message = "Reading this pod from the API.", namespace = %ns, pod = %name);
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let mut warned = false;
            loop {
                let wait = match api.get(&name).await {
                    Ok(mut pod) => {
                        pod.metadata.managed_fields = None;
                        let pods = vec![Arc::new(pod)];
                        i.rebuild(pods.iter().map(|p| p.as_ref()));
                        threads.set(pods.iter().filter_map(|p| {
                            let m = &p.metadata;
                            let v = m.annotations.as_ref()?.get(THREADS_ANNOTATION)?;
                            Some((m.uid.as_deref()?, v.as_str()))
                        }));
                        let _ = tx.send(pods);
                        warned = false;
                        REFRESH
                    }
                    Err(error) => {
                        if !warned {
                            tracing::warn!(message = "Cannot read this pod from the API; retrying. The sidecar needs `get` on pods in its namespace (deploy/components/sidecar's Role).", namespace = %ns, pod = %name, %error);
                            warned = true;
                        }
                        RETRY
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
        (Pods::from_index(index), rx)
    }
}
