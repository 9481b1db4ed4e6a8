//! `/metrics`: the fleet's key figures and the collector's own counters, in the Prometheus
//! text format 0.0.4 (`promtool check metrics` accepts it). Built from a snapshot per scrape.

use crate::fleet::FleetSnapshot;
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
    for (c, n, i) in s.ranked_interfaces() {
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
