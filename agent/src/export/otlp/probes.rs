//! Shadow probes: duration histograms (timeouts included), attempts by result, the probe's own
//! timeout, the window's p99 and slowest attempt, and predicted removals.

use super::points::*;
use crate::sources::probes::stats::{Outcome, BUCKETS};
use crate::sources::probes::ProbeReport;

/// Probe attributes (signals crate docs): namespace, pod, container, probe, target, workload.
pub fn attributes(p: &ProbeReport) -> Vec<KeyValue> {
    let (kind, name) = identity::workload(p.workload.as_ref());
    vec![
        kv(attr::NAMESPACE, &p.pod.namespace),
        kv(attr::POD, &p.pod.name),
        kv(attr::CONTAINER, &p.container),
        kv(attr::PROBE, p.kind.as_str()),
        kv(attr::TARGET, &p.target),
        kv(attr::WORKLOAD_KIND, kind),
        kv(attr::WORKLOAD, name),
    ]
}

pub fn metrics(report: &Report, w: Span) -> Vec<Metric> {
    let (mut duration, mut attempts, mut timeout, mut p99, mut max, mut removals) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in report.probes.iter().filter(|p| p.reason.is_none()) {
        let a = attributes(p);
        let t = &p.totals;
        let since = t.since_ns.max(w.process_start).min(w.end);
        duration.push(HistogramDataPoint {
            attributes: a.clone(),
            start_time_unix_nano: since,
            time_unix_nano: w.end,
            count: t.count(),
            sum: Some(t.sum),
            bucket_counts: t.buckets.to_vec(),
            explicit_bounds: BUCKETS.to_vec(),
            ..Default::default()
        });
        for (i, o) in Outcome::ALL.iter().enumerate() {
            let ra = with(&a, attr::RESULT, o.as_str());
            attempts.push(point(&ra, since, w.end, AsInt(t.by_outcome[i] as i64)));
        }
        removals.push(point(&a, since, w.end, AsInt(t.removals as i64)));
        let secs = AsDouble(p.timeout_seconds as f64);
        timeout.push(point(&a, w.start, w.end, secs));
        if let Some(l) = p.latency_ms {
            p99.push(point(&a, w.start, w.end, AsDouble(l.p99 / 1000.0)));
            max.push(point(&a, w.start, w.end, AsDouble(l.max / 1000.0)));
        }
    }
    let out = vec![
        histogram(&metric::PROBE_DURATION, duration),
        number(&metric::PROBE_ATTEMPTS, attempts),
        number(&metric::PROBE_TIMEOUT, timeout),
        number(&metric::PROBE_LATENCY_P99, p99),
        number(&metric::PROBE_LATENCY_MAX, max),
        number(&metric::PROBE_PREDICTED_REMOVALS, removals),
    ];
    out.into_iter()
        .filter(|m| super::points::data_points(m) > 0)
        .collect()
}
