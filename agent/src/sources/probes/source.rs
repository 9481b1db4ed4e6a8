//! The probe source in the pipeline: shadow probes of the pods the enrichment step lists,
//! and the kubelet's own counts beside them.

use super::kubelet::{self, KubeletView};
use super::{shadow, ProbeConfig, ProbeLog};
use crate::report::Report;
use crate::sources::listeners::LatestSamples;
use crate::sources::{Context, Source, Window};
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use tokio::sync::watch;

pub struct Probes {
    log: ProbeLog,
    kubelet: KubeletView,
}

impl Probes {
    /// Shadows the probes of each pod list `pods` publishes (none without Kubernetes access),
    /// on `ctx`'s runtime until its shutdown is cancelled; `saturation` is the listener
    /// sampler's latest sample, for each attempt's span.
    pub fn start(
        cfg: ProbeConfig,
        node: String,
        pods: watch::Receiver<Vec<Arc<Pod>>>,
        saturation: LatestSamples,
        ctx: &Context,
    ) -> Probes {
        let (log, view) = (ProbeLog::default(), KubeletView::default());
        let stop = ctx.shutdown.clone();
        if cfg.enabled && !cfg.kubelet_url.is_empty() {
            let (url, token) = (cfg.kubelet_url.clone(), cfg.kubelet_token_file.clone());
            let (interval, view, stop, mut pods) = (
                cfg.kubelet_interval(),
                view.clone(),
                stop.clone(),
                pods.clone(),
            );
            ctx.runtime.spawn(async move {
                // Once the pods are known: without Kubernetes access there is nothing to
                // cross-check.
                tokio::select! {
                    r = pods.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
                kubelet::run(url, token, node, interval, view, stop).await
            });
        }
        if cfg.enabled {
            let log = log.clone();
            ctx.runtime
                .spawn(async move { shadow::supervise(cfg, pods, log, saturation, stop).await });
        }
        Probes { log, kubelet: view }
    }
}

impl Source for Probes {
    fn name(&self) -> &'static str {
        "probes"
    }

    /// The window's probes, with the kubelet's own counts when its metrics were read.
    fn fill(&mut self, _window: Window, report: &mut Report) {
        report.probes = self.log.cut();
        if let Some(k) = self.kubelet.window() {
            for p in &mut report.probes {
                let key = (
                    p.pod.namespace.clone(),
                    p.pod.name.clone(),
                    p.container.clone(),
                    p.kind,
                );
                p.kubelet = Some(k.get(&key).copied().unwrap_or_default());
            }
        }
    }
}
