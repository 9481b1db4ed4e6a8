//! Kubernetes access as kube-rs infers it (KUBECONFIG or ~/.kube/config, else in-cluster), and
//! the watch loop both binaries run over a reflector.

use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::{Api, Resource};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// A client, or None with one info line naming what runs without it (`without`, e.g.
/// "running without pods and probes").
pub async fn client(without: &str) -> Option<::kube::Client> {
    match ::kube::Config::infer().await {
        Ok(cfg) => match ::kube::Client::try_from(cfg) {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::info!(message = "No Kubernetes client.", without, %error);
                None
            }
        },
        Err(error) => {
            tracing::info!(
                message = "No Kubernetes access (neither in-cluster nor KUBECONFIG).",
                without,
                %error
            );
            None
        }
    }
}

/// Runs a reflector over `api` (with `config`, e.g. a field selector) until `stop`, calling
/// `publish` with the store after each change and once the first list is complete. `modify`
/// trims each object before it is stored (drop managed fields and the like). Errors back off
/// (kube-rs' default backoff) and retry, with one warning per outage; the last list stays.
pub async fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    modify: fn(&mut K),
    publish: impl Fn(&Store<K>) + Send + 'static,
    stop: CancellationToken,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store::<K>();
    let stream =
        reflector::reflector(writer, watcher(api, config).modify(modify)).default_backoff();
    futures::pin_mut!(stream);
    let mut failing = false;
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = stop.cancelled() => return,
        };
        match ev {
            None => return,
            Some(Err(error)) => {
                if !failing {
                    tracing::warn!(message = %format_args!("{kind} watch failed; keeping the last known objects and retrying with backoff."), %error, objects = reader.len());
                }
                failing = true;
            }
            Some(Ok(event)) => {
                if failing {
                    tracing::info!(message = %format_args!("{kind} watch resumed."));
                    failing = false;
                }
                use watcher::Event::*;
                if matches!(event, Apply(_) | Delete(_) | InitDone) {
                    publish(&reader);
                }
            }
        }
    }
}
