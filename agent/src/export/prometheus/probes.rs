//! `headroom_probe_*` metrics, fed from the report's `probes` (design.md §3).

use crate::sources::probes::stats::Outcome;
use crate::sources::probes::ProbeReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

pub use crate::sources::probes::stats::BUCKETS;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    namespace: String,
    pod: String,
    container: String,
    probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    pod: String,
    container: String,
    probe: String,
    result: String,
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS.into_iter())
}

type HistogramFamily = Family<ProbeLabels, Histogram, fn() -> Histogram>;

pub struct ProbeMetrics {
    duration: HistogramFamily,
    attempts: Family<ResultLabels, Counter>,
    timeout: Family<ProbeLabels, Gauge<f64, AtomicU64>>,
    p99: Family<ProbeLabels, Gauge<f64, AtomicU64>>,
    max: Family<ProbeLabels, Gauge<f64, AtomicU64>>,
    removals: Family<ProbeLabels, Counter>,
    /// Label sets exported last time, to drop those of probes that went away.
    seen: Mutex<HashSet<ProbeLabels>>,
}

impl ProbeMetrics {
    pub fn register(registry: &mut Registry) -> ProbeMetrics {
        let m = ProbeMetrics {
            duration: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            attempts: Family::default(),
            timeout: Family::default(),
            p99: Family::default(),
            max: Family::default(),
            removals: Family::default(),
            seen: Mutex::default(),
        };
        registry.register(
            headroom_signals::prom::PROBE_DURATION,
            "Shadow probe attempts by duration, timeouts included (as their full timeout)",
            m.duration.clone(),
        );
        registry.register(
            headroom_signals::prom::PROBE_ATTEMPTS,
            "Shadow probe attempts by result (ok, slow: a success over the slow share of the timeout, timeout, error)",
            m.attempts.clone(),
        );
        registry.register(
            headroom_signals::prom::PROBE_TIMEOUT,
            "The probe's own timeoutSeconds",
            m.timeout.clone(),
        );
        registry.register(
            headroom_signals::prom::PROBE_LATENCY_P99,
            "99th percentile of the last window's shadow attempts, timeouts included (absent without attempts)",
            m.p99.clone(),
        );
        registry.register(
            headroom_signals::prom::PROBE_LATENCY_MAX,
            "Slowest shadow attempt of the last window (absent without attempts)",
            m.max.clone(),
        );
        registry.register(
            headroom_signals::prom::PROBE_PREDICTED_REMOVALS,
            "Runs of failureThreshold consecutive failures: times the kubelet would have taken the pod out",
            m.removals.clone(),
        );
        m
    }

    /// Applies one report window's probes.
    pub fn update(&self, probes: &[ProbeReport]) {
        let mut now = HashSet::new();
        for p in probes.iter().filter(|p| p.reason.is_none()) {
            let l = ProbeLabels {
                namespace: p.pod.namespace.clone(),
                pod: p.pod.name.clone(),
                container: p.container.clone(),
                probe: p.kind.as_str().into(),
            };
            self.timeout.get_or_create(&l).set(p.timeout_seconds as f64);
            match p.latency_ms {
                Some(lat) => {
                    self.p99.get_or_create(&l).set(lat.p99 / 1000.0);
                    self.max.get_or_create(&l).set(lat.max / 1000.0);
                }
                None => {
                    self.p99.remove(&l);
                    self.max.remove(&l);
                }
            }
            self.removals
                .get_or_create(&l)
                .inc_by(p.predicted_removals.into());
            let h = self.duration.get_or_create(&l);
            for (secs, _) in &p.samples {
                h.observe(*secs);
            }
            for o in Outcome::ALL {
                let n = p.samples.iter().filter(|s| s.1 == o).count() as u64;
                let c = self.attempts.get_or_create(&ResultLabels {
                    namespace: l.namespace.clone(),
                    pod: l.pod.clone(),
                    container: l.container.clone(),
                    probe: l.probe.clone(),
                    result: o.as_str().into(),
                });
                c.inc_by(n);
            }
            now.insert(l);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for gone in seen.difference(&now) {
            self.duration.remove(gone);
            self.timeout.remove(gone);
            self.p99.remove(gone);
            self.max.remove(gone);
            self.removals.remove(gone);
            for o in Outcome::ALL {
                self.attempts.remove(&ResultLabels {
                    namespace: gone.namespace.clone(),
                    pod: gone.pod.clone(),
                    container: gone.container.clone(),
                    probe: gone.probe.clone(),
                    result: o.as_str().into(),
                });
            }
        }
        *seen = now;
    }
}
