//! `/metrics`: the fleet's key figures (interfaces, ENA allowances, workloads, probes) and the
//! collector's own counters, in the Prometheus text format 0.0.4 (`promtool check metrics`
//! accepts it). The fleet's figures come from the kept lean snapshot, encoded once per snapshot
//! ([`crate::fleet::LeanCache`]); the collector's counters and findings are read at each scrape.

mod descriptors;
mod findings;
mod scale_down;

pub use findings::encode as encode_findings;

use crate::fleet::{Bound, FleetSnapshot, IngestStats, ProbeSnapshot, WorkloadSnapshot};
use descriptors::{self as d, register};
use headroom_signals::openmetrics_to_text;
use headroom_signals::Metric;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfaceLabels {
    cluster: String,
    node: String,
    interface: String,
    eni: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AllowanceLabels {
    cluster: String,
    node: String,
    interface: String,
    eni: String,
    allowance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
}

/// A probe's labels (cluster, node, namespace, pod, container, probe); the attempts family
/// adds `result`.
type ProbeLabels = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// The fleet's figures (nodes, interfaces, workloads, probes): what a kept snapshot's text
/// holds (see [`crate::fleet::LeanCache`]).
pub fn encode_fleet(s: &FleetSnapshot) -> String {
    let mut r = Registry::default();
    let nodes: Gauge = Gauge::default();
    nodes.set(s.nodes as i64);
    register(&mut r, &d::FLEET_NODES, nodes);
    let peak = Family::<IfaceLabels, Gauge>::default();
    let util = Family::<IfaceLabels, F64Gauge>::default();
    let peak_hour = Family::<IfaceLabels, Gauge>::default();
    let allowance = Family::<AllowanceLabels, Gauge>::default();
    let unanswered = Family::<IfaceLabels, Gauge>::default();
    for (c, n, i) in s.ranked_interfaces() {
        for (name, v) in &i.allowance_exceeded_latest {
            allowance
                .get_or_create(&AllowanceLabels {
                    cluster: c.name.clone(),
                    node: n.name.clone(),
                    interface: i.interface.clone(),
                    eni: i.eni_id.clone().unwrap_or_default(),
                    // The agent's label value: the counter name without the suffix.
                    allowance: name.trim_end_matches("_allowance_exceeded").to_string(),
                })
                .set(*v as i64);
        }
        let l = IfaceLabels {
            cluster: c.name.clone(),
            node: n.name.clone(),
            interface: i.interface.clone(),
            eni: i.eni_id.clone().unwrap_or_default(),
        };
        if let Some(w) = &i.latest {
            peak.get_or_create(&l).set(w.peak_pps as i64);
            util.get_or_create(&l).set(w.utilization);
        }
        if let Some(d) = &i.dns {
            unanswered.get_or_create(&l).set(d.unanswered_latest as i64);
        }
        peak_hour.get_or_create(&l).set(i.peak_pps_last_hour as i64);
    }
    register(&mut r, &d::LINKLOCAL_PPS_PEAK, peak);
    register(&mut r, &d::LINKLOCAL_UTILIZATION, util);
    register(&mut r, &d::LINKLOCAL_PPS_PEAK_LAST_HOUR, peak_hour);
    register(&mut r, &d::ENA_ALLOWANCE_EXCEEDED, allowance);
    register(&mut r, &d::DNS_UNANSWERED, unanswered);
    workload_families(&mut r, s);
    probe_families(&mut r, s);
    text(&r)
}

/// The collector's own counters, read fresh at every scrape (they cost nothing to copy).
pub fn encode_ingest(i: &IngestStats) -> String {
    let mut r = Registry::default();
    let counter = |r: &mut Registry, d: &Metric, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        register(r, d, c);
    };
    counter(&mut r, &d::POINTS_ACCEPTED, i.points_accepted);
    counter(&mut r, &d::POINTS_REJECTED, i.points_rejected);
    counter(&mut r, &d::SPANS_RECEIVED, i.spans_received);
    counter(&mut r, &d::SPANS_FORWARDED, i.spans_forwarded);
    counter(&mut r, &d::SPANS_FORWARD_DROPPED, i.spans_forward_dropped);
    counter(&mut r, &d::NODES_EXPIRED, i.nodes_expired);
    counter(
        &mut r,
        &d::LISTENERS_PROBES_EXPIRED,
        i.listeners_probes_expired,
    );
    let rejected = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in &i.requests_rejected {
        rejected
            .get_or_create(&ReasonLabels {
                reason: reason.clone(),
            })
            .inc_by(*n);
    }
    register(&mut r, &d::REQUESTS_REJECTED, rejected);
    for b in Bound::ALL {
        let family = match b {
            Bound::PointsFuture => &d::POINTS_FUTURE,
            Bound::PointsTooOld => &d::POINTS_TOO_OLD,
            Bound::NodesMax => &d::NODES_REFUSED_MAX,
            Bound::NodesPerRequest => &d::NODES_REFUSED_PER_REQUEST,
            Bound::SeriesMax => &d::SERIES_REFUSED_MAX,
            Bound::TracesQueueBytes => &d::TRACES_QUEUE_DROPPED_BYTES,
        };
        counter(&mut r, family, i.bounds.get(b.name()).copied().unwrap_or(0));
    }
    text(&r)
}

fn text(r: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, r)
        .expect("writing to a String cannot fail");
    openmetrics_to_text(&out)
}

/// Per workload: the summed busy workers (latest, mean, p95, max over `workload_history`),
/// capacity, deepest queue and saturated seconds.
fn workload_families(r: &mut Registry, s: &FleetSnapshot) {
    type Get = fn(&WorkloadSnapshot) -> f64;
    let families: [(&Metric, Get); 10] = [
        (&d::WORKLOAD_BUSY, |w| w.busy_latest),
        (&d::WORKLOAD_BUSY_MEAN, |w| w.busy_mean),
        (&d::WORKLOAD_BUSY_P95, |w| w.busy_p95),
        (&d::WORKLOAD_BUSY_MAX, |w| w.busy_max),
        (&d::WORKLOAD_WORKERS, |w| {
            f64::from(w.workers_per_pod) * w.pods.len() as f64
        }),
        (&d::WORKLOAD_CAPACITY, |w| {
            f64::from(w.capacity_per_pod) * w.pods.len() as f64
        }),
        (&d::WORKLOAD_PODS, |w| w.pods.len() as f64),
        (&d::WORKLOAD_QUEUE_MAX, |w| f64::from(w.queue_max)),
        (&d::WORKLOAD_SATURATED_SECONDS, |w| w.saturated_seconds),
        (&d::WORKLOAD_HISTORY_SECONDS, |w| w.history_seconds),
    ];
    for (d, get) in families {
        workload_family(r, s, d, |w| Some(get(w)));
    }
    type GetSome = fn(&WorkloadSnapshot) -> Option<f64>;
    let measured: [(&Metric, GetSome); 4] = [
        (&d::WORKLOAD_REQUESTS, |w| w.requests_per_second_latest),
        (&d::WORKLOAD_REQUESTS_MEAN, |w| w.requests_per_second_mean),
        (&d::WORKLOAD_REQUESTS_P95, |w| w.requests_per_second_p95),
        (&d::WORKLOAD_REQUESTS_MAX, |w| w.requests_per_second_max),
    ];
    for (d, get) in measured {
        workload_family(r, s, d, get);
    }
}

/// One family of per-workload gauges; a workload without the figure has no series.
fn workload_family(
    r: &mut Registry,
    s: &FleetSnapshot,
    d: &Metric,
    get: impl Fn(&WorkloadSnapshot) -> Option<f64>,
) {
    let f = Family::<WorkloadLabels, F64Gauge>::default();
    for c in &s.clusters {
        for w in &c.workloads {
            if let Some(v) = get(w) {
                f.get_or_create(&WorkloadLabels {
                    cluster: c.name.clone(),
                    namespace: w.namespace.clone(),
                    kind: w.kind.clone(),
                    workload: w.name.clone(),
                })
                .set(v);
            }
        }
    }
    register(r, d, f);
}

/// Probes with their own series on `/metrics`: the ones closest to their timeout (lowest
/// headroom, as the status page ranks them). Every probe of a 5 000-node fleet would be
/// ~160 000 series per scrape; the API has them all.
pub const MAX_PROBE_SERIES: usize = 500;

/// Per shadowed probe (the [`MAX_PROBE_SERIES`] closest to their timeout): headroom (timeout /
/// p99), latency, timeout, attempts by result and predicted removals over `workload_history`.
fn probe_families(r: &mut Registry, s: &FleetSnapshot) {
    let headroom = Family::<ProbeLabels, F64Gauge>::default();
    let p99 = Family::<ProbeLabels, F64Gauge>::default();
    let timeout = Family::<ProbeLabels, F64Gauge>::default();
    let removals = Family::<ProbeLabels, Gauge>::default();
    let attempts = Family::<ProbeLabels, Gauge>::default();
    let mut probes: Vec<_> = s.probes().collect();
    probes.sort_by(|a, b| ProbeSnapshot::order(a.2, b.2));
    probes.truncate(MAX_PROBE_SERIES);
    for (c, n, p) in probes {
        let l: ProbeLabels = vec![
            ("cluster", c.name.clone()),
            ("node", n.name.clone()),
            ("namespace", p.namespace.to_string()),
            ("pod", p.pod.to_string()),
            ("container", p.container.to_string()),
            ("probe", p.probe.to_string()),
        ];
        if let Some(h) = p.headroom {
            headroom.get_or_create(&l).set(h);
        }
        if let Some(v) = p.latency_p99_seconds {
            p99.get_or_create(&l).set(v);
        }
        timeout.get_or_create(&l).set(p.timeout_seconds);
        removals.get_or_create(&l).set(p.predicted_removals as i64);
        for (result, v) in &p.attempts {
            attempts
                .get_or_create(&[l.clone(), vec![("result", result.to_string())]].concat())
                .set(*v as i64);
        }
    }
    register(r, &d::PROBE_HEADROOM, headroom);
    register(r, &d::PROBE_LATENCY_P99, p99);
    register(r, &d::PROBE_TIMEOUT, timeout);
    register(r, &d::PROBE_ATTEMPTS, attempts);
    register(r, &d::PROBE_PREDICTED_REMOVALS, removals);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{Engine, Findings};
    use std::time::{Duration, SystemTime};

    #[test]
    fn every_declared_family_is_exposed_with_its_help() {
        let snapshot =
            crate::fleet::Fleet::new(Default::default()).snapshot_lean(SystemTime::now());
        let findings = Findings::new(
            Engine::new(Duration::from_secs(60), Duration::ZERO, SystemTime::now()),
            Default::default(),
            None,
        );
        let text = encode_fleet(&snapshot)
            + &encode_ingest(&snapshot.ingest)
            + &encode_findings(&findings);
        for m in d::ALL {
            assert!(
                text.contains(&format!("# HELP {}", m.prom)) && text.contains(m.help),
                "{} missing from {text}",
                m.prom
            );
        }
    }
}
