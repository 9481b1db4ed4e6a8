//! Shadowed probes (the agent runs each pod's readiness, liveness and startup probe as the
//! kubelet does), the collector side: the newest window's timeout, p99 and slowest attempt,
//! and the attempts-by-result and predicted-removals counters over `workload_history`.

use super::aggregate::{Counter, CounterPoint};
use super::limits::Limits;
use super::otlp::{attr_or_empty, get, set_from, Attrs};
use super::store::{slot, At, Cuts, Part};
use crate::time::rfc3339;
use headroom_signals::attr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Most distinct `result` values kept per probe (the agent has four).
const MAX_RESULTS: usize = 8;
/// Points kept per probe counter over `workload_history`, thinned evenly beyond (see
/// [`Counter`]): the attempt counts are exact up to this many windows.
const PROBE_COUNTER_POINTS: usize = 32;

otlp_names! {
    pub fn takes;
    PROBE_ATTEMPTS, PROBE_TIMEOUT, PROBE_LATENCY_P99, PROBE_LATENCY_MAX, PROBE_PREDICTED_REMOVALS
}

/// (namespace, pod, container, probe kind)
///
/// A probe's strings are shared with its snapshots (each evaluation's snapshot names every
/// probe of the fleet: at 5 000 nodes 20 000 probes, 220 000 strings it need not copy).
pub type ProbeKey = (Arc<str>, Arc<str>, Arc<str>, Arc<str>);

#[derive(Debug, Clone, Default)]
pub struct Probe {
    target: Arc<str>,
    workload_kind: Arc<str>,
    workload: Arc<str>,
    /// The newest window: its end and start, and its gauges.
    end: u64,
    start: u64,
    timeout: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    /// Earliest window start seen (for history_seconds).
    first_start: u64,
    /// By result, sorted: four at most from our agent (a map's leaf would hold room for 11).
    attempts: Vec<(Arc<str>, Counter)>,
    removals: Counter,
}

impl Part for Probe {
    type Key = ProbeKey;

    fn key(a: &Attrs) -> Option<ProbeKey> {
        let kind = get(a, attr::PROBE)?;
        Some((
            attr_or_empty(a, attr::NAMESPACE),
            attr_or_empty(a, attr::POD),
            attr_or_empty(a, attr::CONTAINER),
            kind.into(),
        ))
    }

    fn max_age(limits: &Limits) -> Duration {
        limits.workload_history
    }

    fn max_per_node(limits: &Limits) -> usize {
        limits.max_probes_per_node
    }

    /// False when refused: no `result` on attempts, or over [`MAX_RESULTS`].
    fn take(&mut self, name: &str, a: &Attrs, v: f64, at: At) -> bool {
        let pr = self;
        if at.end > pr.end {
            // A newer window (its counters may come before its gauges): its gauges replace the
            // last window's, which stay unset until they arrive.
            pr.end = at.end;
            pr.start = at.end;
            pr.timeout = None;
            pr.p99 = None;
            pr.max = None;
        }
        let point = CounterPoint {
            end: at.end,
            start: at.start,
            value: v,
        };
        match name {
            PROBE_ATTEMPTS => {
                let Some(result) = get(a, attr::RESULT) else {
                    return false;
                };
                let Some((i, _)) = slot(&mut pr.attempts, result, MAX_RESULTS, || {
                    (result.into(), Counter::default())
                }) else {
                    return false;
                };
                pr.attempts[i].1.record(point, PROBE_COUNTER_POINTS);
            }
            PROBE_PREDICTED_REMOVALS => pr.removals.record(point, PROBE_COUNTER_POINTS),
            _ => {
                if at.end == pr.end {
                    if at.start != 0 {
                        pr.start = at.start;
                    }
                    match name {
                        PROBE_TIMEOUT => pr.timeout = Some(v),
                        PROBE_LATENCY_P99 => pr.p99 = Some(v),
                        _ => pr.max = Some(v),
                    }
                }
                if at.start != 0 && (pr.first_start == 0 || at.start < pr.first_start) {
                    pr.first_start = at.start;
                }
            }
        }
        if at.end == pr.end {
            set_from(
                a,
                [
                    (&mut pr.target, attr::TARGET),
                    (&mut pr.workload_kind, attr::WORKLOAD_KIND),
                    (&mut pr.workload, attr::WORKLOAD),
                ],
            );
        }
        true
    }

    fn expire(&mut self, cuts: &Cuts) -> bool {
        for (_, c) in &mut self.attempts {
            c.prune(cuts.history_start);
        }
        self.removals.prune(cuts.history_start);
        self.end >= cuts.silent_since
    }
}

impl Probe {
    /// The probe in its newest window, its counts over the history from `history_start`.
    pub fn snapshot(&self, key: &ProbeKey, history_start: u64) -> ProbeSnapshot {
        let p = self;
        let headroom = match (p.timeout, p.p99) {
            (Some(t), Some(q)) if q > 0.0 => Some(t / q),
            _ => None,
        };
        // The span covered: from the earliest window start the gauges gave (or, without one, the
        // earliest counter point) inside the history, to the newest window's end.
        let from = if p.first_start != 0 {
            p.first_start.max(history_start)
        } else {
            p.attempts
                .iter()
                .map(|(_, c)| c)
                .chain([&p.removals])
                .filter_map(|c| c.first_since(history_start))
                .min()
                .unwrap_or(p.end)
        }
        .min(p.start);
        ProbeSnapshot {
            namespace: key.0.clone(),
            pod: key.1.clone(),
            container: key.2.clone(),
            probe: key.3.clone(),
            target: p.target.clone(),
            workload_kind: p.workload_kind.clone(),
            workload: p.workload.clone(),
            timeout_seconds: p.timeout.unwrap_or(0.0),
            latency_p99_seconds: p.p99,
            latency_max_seconds: p.max,
            headroom,
            attempts: attempts(&p.attempts, history_start),
            predicted_removals: p.removals.rise_since(history_start).round() as u64,
            history_seconds: p.end.saturating_sub(from) as f64 / 1e9,
            time: rfc3339(p.end),
        }
    }
}

/// Attempts by result over the history. Inserted one by one: a probe has a handful of
/// results, and collecting into a map (a vector, sorted, then built) was a tenth of a
/// snapshot's cost at 2 000 nodes.
fn attempts(counters: &[(Arc<str>, Counter)], history_start: u64) -> BTreeMap<Arc<str>, u64> {
    let mut m = BTreeMap::new();
    for (r, c) in counters {
        m.insert(r.clone(), c.rise_since(history_start).round() as u64);
    }
    m
}

/// One shadowed probe in its latest window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeSnapshot {
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub container: Arc<str>,
    /// readiness | liveness | startup
    pub probe: Arc<str>,
    pub target: Arc<str>,
    pub workload_kind: Arc<str>,
    pub workload: Arc<str>,
    pub timeout_seconds: f64,
    /// The latest window's p99 and slowest attempt; None without attempts.
    pub latency_p99_seconds: Option<f64>,
    pub latency_max_seconds: Option<f64>,
    /// timeout / p99 (below 2 means p99 is past half the timeout).
    pub headroom: Option<f64>,
    /// Attempts by result over `history_seconds` (counter increases).
    pub attempts: BTreeMap<Arc<str>, u64>,
    pub predicted_removals: u64,
    pub history_seconds: f64,
    pub time: String,
}

impl ProbeSnapshot {
    /// Lowest headroom first; probes without attempts (no p99) last; then most predicted
    /// removals.
    pub fn order(a: &ProbeSnapshot, b: &ProbeSnapshot) -> std::cmp::Ordering {
        let key = |p: &ProbeSnapshot| p.headroom.unwrap_or(f64::INFINITY);
        key(a)
            .total_cmp(&key(b))
            .then(b.predicted_removals.cmp(&a.predicted_removals))
    }
}
