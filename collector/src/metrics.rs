//! `/metrics`: the fleet's key figures (interfaces, ENA allowances, workloads, probes) and the
//! collector's own counters, in the Prometheus text format 0.0.4 (`promtool check metrics`
//! accepts it). Built from a snapshot per scrape.

use crate::fleet::{FleetSnapshot, WorkloadSnapshot};
use headroom_signals::openmetrics_to_text;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    cluster: String,
    node: String,
    namespace: String,
    pod: String,
    container: String,
    probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeResultLabels {
    cluster: String,
    node: String,
    namespace: String,
    pod: String,
    container: String,
    probe: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// The exposition for one snapshot.
pub fn encode(s: &FleetSnapshot) -> String {
    let mut r = Registry::default();
    let nodes: Gauge = Gauge::default();
    nodes.set(s.nodes as i64);
    r.register(
        "headroom_fleet_nodes",
        "Nodes that sent telemetry within node_expiry",
        nodes,
    );
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
    r.register(
        "headroom_fleet_linklocal_pps_peak",
        "Highest link-local packets in any one second of the interface's latest report window",
        peak,
    );
    r.register(
        "headroom_fleet_linklocal_utilization_ratio",
        "Latest window's peak packets per second over the link-local limit (1024/s)",
        util,
    );
    r.register(
        "headroom_fleet_linklocal_pps_peak_last_hour",
        "Highest one-second link-local packet count of the interface over the last hour",
        peak_hour,
    );
    r.register(
        "headroom_fleet_ena_allowance_exceeded",
        "Packets the ENA driver counted as dropped for an allowance in the interface's latest window (any rise: EC2 is dropping now)",
        allowance,
    );
    r.register(
        "headroom_fleet_dns_unanswered",
        "DNS queries without a reply in the interface's latest window",
        unanswered,
    );
    workload_families(&mut r, s);
    probe_families(&mut r, s);
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        r.register(name, help, c);
    };
    counter(
        &mut r,
        "headroom_collector_points_accepted",
        "OTLP data points taken into the fleet model",
        s.ingest.points_accepted,
    );
    counter(
        &mut r,
        "headroom_collector_points_rejected",
        "OTLP data points refused by a cardinality limit or without a value",
        s.ingest.points_rejected,
    );
    counter(
        &mut r,
        "headroom_collector_spans_received",
        "Spans received over OTLP",
        s.ingest.spans_received,
    );
    counter(
        &mut r,
        "headroom_collector_spans_forwarded",
        "Spans sent on to the traces endpoint",
        s.ingest.spans_forwarded,
    );
    counter(
        &mut r,
        "headroom_collector_spans_forward_dropped",
        "Spans not forwarded: queue full, or the traces endpoint refused or stayed unreachable",
        s.ingest.spans_forward_dropped,
    );
    counter(
        &mut r,
        "headroom_collector_nodes_expired",
        "Nodes removed after sending nothing for node_expiry",
        s.ingest.nodes_expired,
    );
    counter(
        &mut r,
        "headroom_collector_listeners_probes_expired",
        "Listeners and probes removed after no data for node_expiry while their node reported",
        s.ingest.listeners_probes_expired,
    );
    let rejected = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in &s.ingest.requests_rejected {
        rejected
            .get_or_create(&ReasonLabels {
                reason: reason.clone(),
            })
            .inc_by(*n);
    }
    r.register(
        "headroom_collector_requests_rejected",
        "OTLP requests refused, by reason",
        rejected,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)
        .expect("writing to a String cannot fail");
    openmetrics_to_text(&out)
}

/// Per workload: the summed busy workers (latest, mean, p95, max over `workload_history`),
/// capacity, deepest queue and saturated seconds.
fn workload_families(r: &mut Registry, s: &FleetSnapshot) {
    type Get = fn(&WorkloadSnapshot) -> f64;
    let families: [(&str, &str, Get); 9] = [
        ("headroom_fleet_workload_busy", "Busy workers summed over the workload's pods, latest", |w| w.busy_latest),
        ("headroom_fleet_workload_busy_mean", "Mean of the workload's summed busy workers over workload_history", |w| w.busy_mean),
        ("headroom_fleet_workload_busy_p95", "95th percentile (nearest rank) of the workload's summed busy workers over workload_history", |w| w.busy_p95),
        ("headroom_fleet_workload_busy_max", "Highest summed busy workers of the workload over workload_history", |w| w.busy_max),
        ("headroom_fleet_workload_workers", "Worker processes of the workload: workers per pod times pods", |w| f64::from(w.workers_per_pod) * w.pods.len() as f64),
        ("headroom_fleet_workload_pods", "Pods of the workload with a listener reporting", |w| w.pods.len() as f64),
        ("headroom_fleet_workload_queue_max", "Deepest accept queue of any of the workload's pods over workload_history", |w| f64::from(w.queue_max)),
        ("headroom_fleet_workload_saturated_seconds", "Seconds the workload's listeners had every worker busy, summed, over workload_history", |w| w.saturated_seconds),
        ("headroom_fleet_workload_history_seconds", "Span the workload figures cover", |w| w.history_seconds),
    ];
    for (name, help, get) in families {
        let f = Family::<WorkloadLabels, F64Gauge>::default();
        for c in &s.clusters {
            for w in &c.workloads {
                f.get_or_create(&WorkloadLabels {
                    cluster: c.name.clone(),
                    namespace: w.namespace.clone(),
                    kind: w.kind.clone(),
                    workload: w.name.clone(),
                })
                .set(get(w));
            }
        }
        r.register(name, help, f);
    }
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
    let attempts = Family::<ProbeResultLabels, Gauge>::default();
    let mut probes: Vec<_> = s
        .clusters
        .iter()
        .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
        .flat_map(|(c, n)| n.probes.iter().map(move |p| (c, n, p)))
        .collect();
    probes.sort_by(|a, b| crate::fleet::ProbeSnapshot::order(a.2, b.2));
    probes.truncate(MAX_PROBE_SERIES);
    for (c, n, p) in probes {
        let l = ProbeLabels {
            cluster: c.name.clone(),
            node: n.name.clone(),
            namespace: p.namespace.clone(),
            pod: p.pod.clone(),
            container: p.container.clone(),
            probe: p.probe.clone(),
        };
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
                .get_or_create(&ProbeResultLabels {
                    cluster: l.cluster.clone(),
                    node: l.node.clone(),
                    namespace: l.namespace.clone(),
                    pod: l.pod.clone(),
                    container: l.container.clone(),
                    probe: l.probe.clone(),
                    result: result.clone(),
                })
                .set(*v as i64);
        }
    }
    r.register(
        "headroom_fleet_probe_headroom",
        "Probe timeout over the latest window's p99 latency (below 2: p99 is past half the timeout)",
        headroom,
    );
    r.register(
        "headroom_fleet_probe_latency_p99_seconds",
        "The latest window's 99th percentile probe latency, timeouts counted at their timeout",
        p99,
    );
    r.register(
        "headroom_fleet_probe_timeout_seconds",
        "The probe's timeoutSeconds",
        timeout,
    );
    r.register(
        "headroom_fleet_probe_attempts",
        "Shadow probe attempts by result (ok, slow, timeout, error) over workload_history",
        attempts,
    );
    r.register(
        "headroom_fleet_probe_predicted_removals",
        "Times the kubelet would have taken the pod out (failureThreshold consecutive failures) over workload_history",
        removals,
    );
}
