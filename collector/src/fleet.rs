//! The fleet model: cluster → node → interface windows, built from OTLP metrics, plus the
//! latest value of every other OTLP metric a node sends. Memory is bounded: nodes expire,
//! windows older than an hour go, and every map has a limit (see [`Limits`]).
//!
//! [`Fleet::snapshot`] is the one read-only view the API, the status page, `/metrics` and the
//! rules read.

use crate::config::Limits;
use headroom_signals::{attr, otlp, resource};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much window history each interface keeps (the sparkline's span).
pub const HISTORY: Duration = Duration::from_secs(3600);
/// At most this many windows per interface (one-second windows for an hour).
pub const MAX_WINDOWS: usize = 3600;
const MAX_ATTRS: usize = 32;
const MAX_VALUE_CHARS: usize = 256;
/// Cluster name for senders that do not set `k8s.cluster.name`.
pub const DEFAULT_CLUSTER: &str = "default";

/// One report window of one interface, as it arrived (any field may be missing).
#[derive(Debug, Clone, Default, PartialEq)]
struct WindowPoint {
    start_ns: u64,
    peak: Option<f64>,
    mean: Option<f64>,
    utilization: Option<f64>,
    limit: Option<f64>,
    /// Cumulative capture drops at the window's end.
    drops_total: Option<f64>,
}

#[derive(Debug, Default)]
struct Interface {
    /// Keyed by the window's end (ns since the epoch), so late windows fall into place.
    windows: BTreeMap<u64, WindowPoint>,
}

#[derive(Debug, Clone, PartialEq)]
struct Point {
    value: f64,
    time_ns: u64,
}

#[derive(Debug, Default)]
struct MetricState {
    kind: &'static str,
    unit: String,
    series: BTreeMap<Vec<(String, String)>, Point>,
}

#[derive(Debug)]
struct Node {
    service_name: Option<String>,
    instance_id: Option<String>,
    instance_type: Option<String>,
    availability_zone: Option<String>,
    last_seen: SystemTime,
    interfaces: BTreeMap<(String, String), Interface>,
    metrics: BTreeMap<String, MetricState>,
    spans: u64,
}

/// What the ingest side counts about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestStats {
    /// Data points taken into the fleet.
    pub points_accepted: u64,
    /// Data points refused by a limit (series per metric, metrics or interfaces per node,
    /// nodes) or without a value.
    pub points_rejected: u64,
    pub spans_received: u64,
    /// Spans sent on to `--traces-endpoint`.
    pub spans_forwarded: u64,
    /// Spans not forwarded: queue full, or the downstream refused or stayed unreachable.
    pub spans_forward_dropped: u64,
    /// Requests refused, by reason (`malformed`, `too_large`, `unsupported_media_type`, …).
    pub requests_rejected: BTreeMap<String, u64>,
    /// Nodes removed because they sent nothing for `node_expiry`.
    pub nodes_expired: u64,
}

/// The result of one export request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub accepted: u64,
    pub rejected: u64,
}

pub struct Fleet {
    limits: Limits,
    clusters: BTreeMap<String, BTreeMap<String, Node>>,
    nodes: usize,
    stats: IngestStats,
}

fn any_to_string(v: &AnyValue) -> String {
    let s = match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .iter()
                .map(any_to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(any_value::Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|k| format!(
                    "{}={}",
                    k.key,
                    k.value.as_ref().map(any_to_string).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(any_value::Value::StringValueStrindex(i)) => format!("#{i}"),
        None => String::new(),
    };
    truncate(s)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_VALUE_CHARS {
        let mut end = MAX_VALUE_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kvs
        .iter()
        .take(MAX_ATTRS)
        .map(|kv| {
            (
                truncate(kv.key.clone()),
                kv.value.as_ref().map(any_to_string).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn get<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn number(p: &NumberDataPoint) -> Option<f64> {
    match p.value? {
        number_data_point::Value::AsDouble(d) if d.is_finite() => Some(d),
        number_data_point::Value::AsDouble(_) => None,
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The (cluster, node) a resource belongs to: `k8s.cluster.name` (else "default") and the
/// first of `k8s.node.name`, `host.name`, `service.instance.id`, `service.name`.
fn identity(res: &[(String, String)]) -> (String, String) {
    let cluster = get(res, resource::K8S_CLUSTER_NAME).unwrap_or(DEFAULT_CLUSTER);
    let node = [
        resource::K8S_NODE_NAME,
        resource::HOST_NAME,
        resource::SERVICE_INSTANCE_ID,
        resource::SERVICE_NAME,
    ]
    .iter()
    .find_map(|k| get(res, k))
    .unwrap_or("unknown");
    (cluster.to_string(), node.to_string())
}

impl Fleet {
    pub fn new(limits: Limits) -> Self {
        Fleet {
            limits,
            clusters: BTreeMap::new(),
            nodes: 0,
            stats: IngestStats::default(),
        }
    }

    /// Counts a refused request.
    pub fn reject_request(&mut self, reason: &str) {
        *self
            .stats
            .requests_rejected
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Counts spans forwarded to, or dropped on the way to, the traces endpoint.
    pub fn count_forwarded(&mut self, forwarded: u64, dropped: u64) {
        self.stats.spans_forwarded += forwarded;
        self.stats.spans_forward_dropped += dropped;
    }

    /// The node for a resource, created (and refreshed) if the node limit allows.
    fn node(&mut self, res: &[(String, String)], now: SystemTime) -> Option<&mut Node> {
        let (cluster, name) = identity(res);
        let exists = self
            .clusters
            .get(&cluster)
            .is_some_and(|c| c.contains_key(&name));
        if !exists && self.nodes >= self.limits.max_nodes {
            return None;
        }
        let node = self
            .clusters
            .entry(cluster)
            .or_default()
            .entry(name)
            .or_insert_with(|| Node {
                service_name: None,
                instance_id: None,
                instance_type: None,
                availability_zone: None,
                last_seen: now,
                interfaces: BTreeMap::new(),
                metrics: BTreeMap::new(),
                spans: 0,
            });
        if !exists {
            self.nodes += 1;
        }
        node.last_seen = now;
        let set = |field: &mut Option<String>, key: &str| {
            if let Some(v) = get(res, key) {
                *field = Some(v.to_string());
            }
        };
        set(&mut node.service_name, resource::SERVICE_NAME);
        set(&mut node.instance_id, resource::HOST_ID);
        set(&mut node.instance_type, resource::HOST_TYPE);
        set(
            &mut node.availability_zone,
            resource::CLOUD_AVAILABILITY_ZONE,
        );
        Some(node)
    }

    /// Takes one OTLP metrics export into the model.
    pub fn apply_metrics(&mut self, req: &ExportMetricsServiceRequest, now: SystemTime) -> Applied {
        let limits = self.limits;
        let now_ns = ns(now);
        let oldest = now_ns.saturating_sub(HISTORY.as_nanos() as u64);
        let mut applied = Applied::default();
        for rm in &req.resource_metrics {
            let res = rm
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let total: u64 = rm
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(|m| points_in(m) as u64)
                .sum();
            let Some(node) = self.node(&res, now) else {
                applied.rejected += total;
                continue;
            };
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let windowed = m.name.starts_with(otlp::LINKLOCAL_PREFIX)
                    && m.name != otlp::LINKLOCAL_PACKETS
                    || m.name == otlp::CAPTURE_DROPS;
                if windowed {
                    let points = match &m.data {
                        Some(metric::Data::Gauge(g)) => &g.data_points,
                        Some(metric::Data::Sum(s)) => &s.data_points,
                        _ => {
                            applied.rejected += points_in(m) as u64;
                            continue;
                        }
                    };
                    for p in points {
                        let a = attributes(&p.attributes);
                        let (Some(v), Some(iface)) = (number(p), get(&a, attr::INTERFACE)) else {
                            applied.rejected += 1;
                            continue;
                        };
                        let end = if p.time_unix_nano == 0 {
                            now_ns
                        } else {
                            p.time_unix_nano
                        };
                        if end < oldest {
                            applied.rejected += 1;
                            continue;
                        }
                        let key = (
                            iface.to_string(),
                            get(&a, attr::ENI).unwrap_or("").to_string(),
                        );
                        if !node.interfaces.contains_key(&key)
                            && node.interfaces.len() >= limits.max_interfaces_per_node
                        {
                            applied.rejected += 1;
                            continue;
                        }
                        let i = node.interfaces.entry(key).or_default();
                        let w = i.windows.entry(end).or_default();
                        match m.name.as_str() {
                            otlp::LINKLOCAL_PPS_PEAK => w.peak = Some(v),
                            otlp::LINKLOCAL_PPS_MEAN => w.mean = Some(v),
                            otlp::LINKLOCAL_PPS_LIMIT => w.limit = Some(v),
                            otlp::LINKLOCAL_UTILIZATION => w.utilization = Some(v),
                            otlp::CAPTURE_DROPS => w.drops_total = Some(v),
                            _ => {}
                        }
                        if m.name != otlp::CAPTURE_DROPS && p.start_time_unix_nano != 0 {
                            w.start_ns = p.start_time_unix_nano;
                        }
                        while i.windows.len() > MAX_WINDOWS {
                            i.windows.pop_first();
                        }
                        applied.accepted += 1;
                    }
                    continue;
                }
                let (kind, points) = generic_points(m);
                applied.rejected += (points_in(m) - points.len()) as u64;
                if points.is_empty() {
                    continue;
                }
                let name = truncate(m.name.clone());
                if !node.metrics.contains_key(&name)
                    && node.metrics.len() >= limits.max_metrics_per_node
                {
                    applied.rejected += points.len() as u64;
                    continue;
                }
                let state = node.metrics.entry(name).or_default();
                state.kind = kind;
                state.unit = truncate(m.unit.clone());
                for (a, value, t) in points {
                    let time_ns = if t == 0 { now_ns } else { t };
                    let fits = state.series.len() < limits.max_series_per_metric;
                    match state.series.get_mut(&a) {
                        Some(p) if p.time_ns <= time_ns => *p = Point { value, time_ns },
                        Some(_) => {}
                        None if fits => {
                            state.series.insert(a, Point { value, time_ns });
                        }
                        None => {
                            applied.rejected += 1;
                            continue;
                        }
                    }
                    applied.accepted += 1;
                }
            }
        }
        self.stats.points_accepted += applied.accepted;
        self.stats.points_rejected += applied.rejected;
        applied
    }

    /// Counts the spans of one OTLP traces export per node.
    pub fn apply_traces(&mut self, req: &ExportTraceServiceRequest, now: SystemTime) -> Applied {
        let mut applied = Applied::default();
        for rs in &req.resource_spans {
            let res = rs
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let n: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
            match self.node(&res, now) {
                Some(node) => {
                    node.spans += n;
                    applied.accepted += n;
                }
                None => applied.rejected += n,
            }
        }
        self.stats.spans_received += applied.accepted;
        applied
    }

    /// Removes nodes silent for longer than `node_expiry` and windows older than an hour.
    pub fn expire(&mut self, now: SystemTime) {
        let expiry = self.limits.node_expiry;
        let oldest = ns(now).saturating_sub(HISTORY.as_nanos() as u64);
        let mut removed = 0;
        for nodes in self.clusters.values_mut() {
            nodes.retain(|_, n| {
                let keep = now.duration_since(n.last_seen).unwrap_or_default() <= expiry;
                removed += usize::from(!keep);
                keep
            });
            for n in nodes.values_mut() {
                for i in n.interfaces.values_mut() {
                    i.windows.retain(|end, _| *end >= oldest);
                }
                n.interfaces.retain(|_, i| !i.windows.is_empty());
            }
        }
        self.clusters.retain(|_, nodes| !nodes.is_empty());
        self.nodes -= removed;
        self.stats.nodes_expired += removed as u64;
    }

    /// The read-only view of the whole fleet at `now`, with every window of the last hour.
    pub fn snapshot(&self, now: SystemTime) -> FleetSnapshot {
        self.snapshot_with(now, true)
    }

    /// As [`Fleet::snapshot`]; without `history` each interface carries only its latest window
    /// and last-hour figures (what `/metrics` needs: far smaller for a large fleet).
    pub fn snapshot_with(&self, now: SystemTime, history: bool) -> FleetSnapshot {
        let clusters = self
            .clusters
            .iter()
            .map(|(cname, nodes)| ClusterSnapshot {
                name: cname.clone(),
                nodes: nodes
                    .iter()
                    .map(|(name, n)| node_snapshot(name, n, history))
                    .collect(),
                workloads: Vec::new(), // built from listener series (issue 8)
            })
            .collect();
        FleetSnapshot {
            schema: "headroom.fleet/v1",
            generated_at: rfc3339(ns(now)),
            nodes: self.nodes,
            clusters,
            ingest: self.stats.clone(),
        }
    }
}

/// A data point of any other metric: attributes, value (the count for histograms and
/// summaries), time.
type GenericPoint = (Vec<(String, String)>, f64, u64);

fn generic_points(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
) -> (&'static str, Vec<GenericPoint>) {
    let numbers = |points: &[NumberDataPoint]| -> Vec<GenericPoint> {
        points
            .iter()
            .filter_map(|p| Some((attributes(&p.attributes), number(p)?, p.time_unix_nano)))
            .collect()
    };
    macro_rules! counts {
        ($points:expr) => {
            $points
                .iter()
                .map(|p| (attributes(&p.attributes), p.count as f64, p.time_unix_nano))
                .collect()
        };
    }
    match &m.data {
        Some(metric::Data::Gauge(g)) => ("gauge", numbers(&g.data_points)),
        Some(metric::Data::Sum(s)) => ("sum", numbers(&s.data_points)),
        Some(metric::Data::Histogram(h)) => ("histogram", counts!(h.data_points)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            ("exponential_histogram", counts!(h.data_points))
        }
        Some(metric::Data::Summary(s)) => ("summary", counts!(s.data_points)),
        None => ("none", Vec::new()),
    }
}

fn points_in(m: &opentelemetry_proto::tonic::metrics::v1::Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn node_snapshot(name: &str, n: &Node, history: bool) -> NodeSnapshot {
    let interfaces = n
        .interfaces
        .iter()
        .map(|((iface, eni), i)| {
            let mut prev_drops: Option<f64> = None;
            let windows: Vec<WindowFigures> = i
                .windows
                .iter()
                .filter(|(_, w)| w.peak.is_some())
                .map(|(end, w)| {
                    let peak = w.peak.unwrap_or(0.0);
                    let limit = w.limit.unwrap_or(1024.0);
                    let drops = match (w.drops_total, prev_drops) {
                        (Some(now), Some(before)) if now >= before => now - before,
                        _ => 0.0,
                    };
                    if w.drops_total.is_some() {
                        prev_drops = w.drops_total;
                    }
                    let start = if w.start_ns == 0 { *end } else { w.start_ns };
                    WindowFigures {
                        start: rfc3339(start),
                        end: rfc3339(*end),
                        seconds: ((end.saturating_sub(start)) as f64 / 1e6).round() / 1e3,
                        peak_pps: peak.round() as u64,
                        mean_pps: w.mean.unwrap_or(0.0),
                        utilization: w.utilization.unwrap_or(if limit > 0.0 {
                            ((peak / limit) * 1000.0).round() / 1000.0
                        } else {
                            0.0
                        }),
                        limit_pps: limit.round() as u64,
                        kernel_drops: drops.round() as u64,
                        dns_peak_pps: None, // filled once the agent sends it (issue 8)
                        end_ns: *end,
                    }
                })
                .collect();
            let latest = windows.last().cloned();
            let peak_pps_last_hour = windows.iter().map(|w| w.peak_pps).max().unwrap_or(0);
            let utilization_last_hour = windows.iter().map(|w| w.utilization).fold(0.0, f64::max);
            EniSnapshot {
                interface: iface.clone(),
                eni_id: (!eni.is_empty()).then(|| eni.clone()),
                peak_pps_last_hour,
                utilization_last_hour,
                latest,
                windows: if history { windows } else { Vec::new() },
                ..Default::default()
            }
        })
        .filter(|i| i.latest.is_some())
        .collect();
    NodeSnapshot {
        name: name.to_string(),
        service_name: n.service_name.clone(),
        instance_id: n.instance_id.clone(),
        instance_type: n.instance_type.clone(),
        availability_zone: n.availability_zone.clone(),
        last_seen: rfc3339(ns(n.last_seen)),
        interfaces,
        metrics: n
            .metrics
            .iter()
            .map(|(name, m)| MetricSnapshot {
                name: name.clone(),
                kind: m.kind,
                unit: m.unit.clone(),
                series: m
                    .series
                    .iter()
                    .map(|(a, p)| SeriesSnapshot {
                        attributes: a.iter().cloned().collect(),
                        value: p.value,
                        time: rfc3339(p.time_ns),
                    })
                    .collect(),
            })
            .collect(),
        spans_received: n.spans,
        ..Default::default()
    }
}

/// The fleet at one instant: what `/api/v1/fleet` returns and what the rules read.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSnapshot {
    pub schema: &'static str,
    pub generated_at: String,
    /// Number of nodes in all clusters.
    pub nodes: usize,
    pub clusters: Vec<ClusterSnapshot>,
    pub ingest: IngestStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterSnapshot {
    pub name: String,
    pub nodes: Vec<NodeSnapshot>,
    /// Workloads (Deployment, StatefulSet, …) with listeners on any node of the cluster,
    /// built from the nodes' listener series: what the HPA rule reads.
    pub workloads: Vec<WorkloadSnapshot>,
}

/// One workload across the cluster: its pods' listeners added up per report window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WorkloadSnapshot {
    pub namespace: String,
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or Pod (agent's `workload_kind`).
    pub kind: String,
    pub name: String,
    /// Pods with a listener in the latest windows, as `node/pod`.
    pub pods: Vec<String>,
    /// Worker processes per pod (the most common figure among its pods' listeners).
    pub workers_per_pod: u32,
    /// Busy workers summed over the workload's pods: the latest window, then mean, p95 and
    /// max of that sum over the windows of `history_seconds`.
    pub busy_latest: f64,
    pub busy_mean: f64,
    pub busy_p95: f64,
    pub busy_max: f64,
    /// Deepest accept queue of any pod in `history_seconds`.
    pub queue_max: u32,
    /// Seconds any listener of the workload had every worker busy, summed, in
    /// `history_seconds`.
    pub saturated_seconds: f64,
    /// Span the busy figures cover (oldest window start to newest window end).
    pub history_seconds: f64,
    /// Windows the figures come from.
    pub windows: u32,
}

/// One listener (a prefork server's listening socket) in its latest window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ListenerSnapshot {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub port: u16,
    pub process: String,
    pub workload_kind: String,
    pub workload: String,
    pub workers: u32,
    /// Mean busy workers over the latest window.
    pub busy: f64,
    pub busy_max: u32,
    pub queue_max: u32,
    pub backlog: u32,
    /// busy_max / workers.
    pub utilization: f64,
    /// Cumulative seconds with every worker busy (the agent's counter).
    pub saturated_seconds_total: f64,
    /// End of the latest window (RFC 3339).
    pub time: String,
}

/// One shadowed probe in its latest window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeSnapshot {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// readiness | liveness | startup
    pub probe: String,
    pub target: String,
    pub workload_kind: String,
    pub workload: String,
    pub timeout_seconds: f64,
    /// The latest window's p99 and slowest attempt; None without attempts.
    pub latency_p99_seconds: Option<f64>,
    pub latency_max_seconds: Option<f64>,
    /// timeout / p99 (below 2 means p99 is past half the timeout).
    pub headroom: Option<f64>,
    /// Attempts by result over `history_seconds` (counter increases).
    pub attempts: BTreeMap<String, u64>,
    pub predicted_removals: u64,
    pub history_seconds: f64,
    pub time: String,
}

/// DNS of one interface: the latest window's shares and top talkers, and counter rises.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DnsSnapshot {
    /// Queries for a name plus a search suffix that failed, over all queries.
    pub search_expansion_share: f64,
    pub top_qnames: Vec<QnameCount>,
    pub top_sources: Vec<SourceCount>,
    /// Rise of the agent's unanswered-queries counter in the latest window and the one before.
    pub unanswered_latest: u64,
    pub unanswered_previous: u64,
    pub queries_latest: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QnameCount {
    pub qname: String,
    pub queries: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SourceCount {
    pub source: String,
    pub namespace: String,
    pub pod: String,
    pub workload_kind: String,
    pub workload: String,
    pub queries: u64,
    pub search_expansion_packets: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSnapshot {
    pub name: String,
    /// `service.name` of the sender (`headroom-agent` for agents).
    pub service_name: Option<String>,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub last_seen: String,
    pub interfaces: Vec<EniSnapshot>,
    /// Latest value of every other metric, per attribute set.
    pub metrics: Vec<MetricSnapshot>,
    pub spans_received: u64,
    pub listeners: Vec<ListenerSnapshot>,
    pub probes: Vec<ProbeSnapshot>,
}

/// One interface (ENI) of a node: its latest window, the last hour's highest peak, and every
/// window of the last hour (oldest first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EniSnapshot {
    pub interface: String,
    pub eni_id: Option<String>,
    pub latest: Option<WindowFigures>,
    pub peak_pps_last_hour: u64,
    pub utilization_last_hour: f64,
    pub windows: Vec<WindowFigures>,
    /// Rise of each ENA allowance counter (`linklocal_allowance_exceeded`, …) in the latest
    /// window; empty when the driver has none (any rise means EC2 is dropping now).
    pub allowance_exceeded_latest: BTreeMap<String, u64>,
    pub dns: Option<DnsSnapshot>,
}

/// One report window with the report's field names.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WindowFigures {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub peak_pps: u64,
    pub mean_pps: f64,
    pub utilization: f64,
    pub limit_pps: u64,
    /// Capture drops in this window (from the cumulative counter; 0 for the first window).
    pub kernel_drops: u64,
    /// The window's one-second peak of DNS packets alone (`by_service.dns.peak_pps`).
    pub dns_peak_pps: Option<u64>,
    #[serde(skip)]
    pub end_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSnapshot {
    pub name: String,
    pub kind: &'static str,
    pub unit: String,
    pub series: Vec<SeriesSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesSnapshot {
    pub attributes: BTreeMap<String, String>,
    pub value: f64,
    pub time: String,
}

impl FleetSnapshot {
    /// Every interface with its cluster and node, highest peak utilization of the last hour
    /// first (then the latest window's).
    pub fn ranked_interfaces(&self) -> Vec<(&ClusterSnapshot, &NodeSnapshot, &EniSnapshot)> {
        let mut v: Vec<_> = self
            .clusters
            .iter()
            .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
            .flat_map(|(c, n)| n.interfaces.iter().map(move |i| (c, n, i)))
            .collect();
        let util = |i: &EniSnapshot| i.latest.as_ref().map(|w| w.utilization).unwrap_or(0.0);
        v.sort_by(|a, b| {
            b.2.utilization_last_hour
                .total_cmp(&a.2.utilization_last_hour)
                .then(util(b.2).total_cmp(&util(a.2)))
        });
        v
    }

    /// Every node with its cluster, highest interface peak utilization of the last hour first.
    pub fn ranked_nodes(&self) -> Vec<(&ClusterSnapshot, &NodeSnapshot, f64)> {
        let mut v: Vec<_> = self
            .clusters
            .iter()
            .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
            .map(|(c, n)| {
                let u = n
                    .interfaces
                    .iter()
                    .map(|i| i.utilization_last_hour)
                    .fold(0.0, f64::max);
                (c, n, u)
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            key_strindex: 0,
        }
    }

    fn point(attrs: Vec<KeyValue>, start: u64, end: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: end,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        }
    }

    fn request(node: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "headroom-agent"),
                        kv("k8s.node.name", node),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn window(node: &str, start_s: u64, peak: f64, drops: f64) -> ExportMetricsServiceRequest {
        let a = || vec![kv("interface", "eth0"), kv("eni", "eni-1")];
        let (s, e) = (start_s * 1_000_000_000, (start_s + 10) * 1_000_000_000);
        request(
            node,
            vec![
                gauge(otlp::LINKLOCAL_PPS_PEAK, vec![point(a(), s, e, peak)]),
                gauge(otlp::LINKLOCAL_PPS_MEAN, vec![point(a(), s, e, peak / 2.0)]),
                gauge(otlp::LINKLOCAL_PPS_LIMIT, vec![point(a(), s, e, 1024.0)]),
                gauge(
                    otlp::LINKLOCAL_UTILIZATION,
                    vec![point(a(), s, e, peak / 1024.0)],
                ),
                Metric {
                    name: otlp::CAPTURE_DROPS.into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point(vec![kv("interface", "eth0")], 0, e, drops)],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
            ],
        )
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn windows_land_in_order_even_when_late() {
        let mut f = Fleet::new(Limits::default());
        let t0 = 1_700_000_000;
        f.apply_metrics(&window("n1", t0 + 20, 300.0, 5.0), at(t0 + 31));
        // A window from during an outage arrives later.
        let a = f.apply_metrics(&window("n1", t0 + 10, 900.0, 2.0), at(t0 + 32));
        assert_eq!(
            a,
            Applied {
                accepted: 5,
                rejected: 0
            }
        );
        let s = f.snapshot(at(t0 + 33));
        assert_eq!(s.nodes, 1);
        let n = &s.clusters[0].nodes[0];
        assert_eq!(s.clusters[0].name, "default");
        assert_eq!(n.name, "n1");
        assert_eq!(n.service_name.as_deref(), Some("headroom-agent"));
        // Drops are a cumulative counter without the eni attribute: it forms its own series.
        let i = n.interfaces.iter().find(|i| i.eni_id.is_some()).unwrap();
        assert_eq!(i.interface, "eth0");
        assert_eq!(i.windows.len(), 2);
        assert_eq!(i.windows[0].peak_pps, 900);
        assert_eq!(i.windows[0].seconds, 10.0);
        assert_eq!(i.latest.as_ref().unwrap().peak_pps, 300);
        assert_eq!(i.peak_pps_last_hour, 900);
        assert!((i.windows[0].utilization - 900.0 / 1024.0).abs() < 1e-9);
        let v = serde_json::to_value(&s).unwrap();
        let w = &v["clusters"][0]["nodes"][0]["interfaces"][0]["latest"];
        for k in [
            "peak_pps",
            "mean_pps",
            "utilization",
            "limit_pps",
            "kernel_drops",
        ] {
            assert!(!w[k].is_null(), "{k} in {w}");
        }
    }

    #[test]
    fn drops_per_window_come_from_the_counter() {
        let mut f = Fleet::new(Limits::default());
        let t0 = 1_700_000_000;
        let mut req = window("n1", t0, 10.0, 2.0);
        let mut req2 = window("n1", t0 + 10, 10.0, 7.0);
        for r in [&mut req, &mut req2] {
            // Give the drops the same attributes as the gauges.
            if let Some(metric::Data::Sum(s)) =
                &mut r.resource_metrics[0].scope_metrics[0].metrics[4].data
            {
                s.data_points[0].attributes.push(kv("eni", "eni-1"));
            }
        }
        f.apply_metrics(&req, at(t0 + 11));
        f.apply_metrics(&req2, at(t0 + 21));
        let s = f.snapshot(at(t0 + 22));
        let i = &s.clusters[0].nodes[0].interfaces[0];
        assert_eq!(i.windows[0].kernel_drops, 0);
        assert_eq!(i.windows[1].kernel_drops, 5);
    }

    #[test]
    fn limits_bound_memory_and_nodes_expire() {
        let limits = Limits {
            max_series_per_metric: 10,
            max_nodes: 2,
            ..Limits::default()
        };
        let mut f = Fleet::new(limits);
        let t0 = 1_700_000_000;
        let points = (0..100)
            .map(|i| point(vec![kv("user", &i.to_string())], 0, 0, 1.0))
            .collect();
        let a = f.apply_metrics(&request("n1", vec![gauge("app.requests", points)]), at(t0));
        assert_eq!(
            a,
            Applied {
                accepted: 10,
                rejected: 90
            }
        );
        f.apply_metrics(&window("n2", t0, 1.0, 0.0), at(t0));
        let a = f.apply_metrics(&window("n3", t0, 1.0, 0.0), at(t0));
        assert_eq!(a.accepted, 0, "third node over max_nodes");
        f.apply_metrics(&window("n2", t0 + 900, 1.0, 0.0), at(t0 + 900));
        f.expire(at(t0 + 901));
        let s = f.snapshot(at(t0 + 901));
        assert_eq!(s.nodes, 1);
        assert_eq!(s.clusters[0].nodes[0].name, "n2");
        assert_eq!(s.ingest.nodes_expired, 1);
        assert_eq!(s.ingest.points_rejected, 95);
    }
}
