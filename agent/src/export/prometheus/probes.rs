//! `headroom_probe_*` metrics, fed from the report's `probes` (names: docs/reference.md, "Metrics").

use super::families::*;
use crate::sources::probes::stats::Outcome;
use crate::sources::probes::ProbeReport;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashSet;
use std::sync::Mutex;

pub use crate::sources::probes::stats::BUCKETS;

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS.into_iter())
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

pub struct ProbeMetrics {
    duration: HistogramFamily,
    attempts: Family<Labels, Counter>,
    timeout: Family<Labels, F64Gauge>,
    p99: Family<Labels, F64Gauge>,
    max: Family<Labels, F64Gauge>,
    removals: Family<Labels, Counter>,
    /// Label sets exported last time, to drop those of probes that went away.
    seen: Mutex<HashSet<Labels>>,
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
        register(registry, &metric::PROBE_DURATION, m.duration.clone());
        register(registry, &metric::PROBE_ATTEMPTS, m.attempts.clone());
        register(registry, &metric::PROBE_TIMEOUT, m.timeout.clone());
        register(registry, &metric::PROBE_LATENCY_P99, m.p99.clone());
        register(registry, &metric::PROBE_LATENCY_MAX, m.max.clone());
        register(
            registry,
            &metric::PROBE_PREDICTED_REMOVALS,
            m.removals.clone(),
        );
        m
    }

    /// Applies one report window's probes.
    pub fn update(&self, probes: &[ProbeReport]) {
        let mut now = HashSet::new();
        for p in probes.iter().filter(|p| p.reason.is_none()) {
            let l = vec![
                (attr::NAMESPACE, p.pod.namespace.clone()),
                (attr::POD, p.pod.name.clone()),
                (attr::CONTAINER, p.container.clone()),
                (attr::PROBE, p.kind.as_str().into()),
            ];
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
                let c = self
                    .attempts
                    .get_or_create(&with(&l, attr::RESULT, o.as_str()));
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
                self.attempts.remove(&with(gone, attr::RESULT, o.as_str()));
            }
        }
        *seen = now;
    }
}
