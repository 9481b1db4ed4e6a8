//! The fleet model: cluster → node → interface windows (with DNS top talkers and ENA allowance
//! counters), listeners and shadowed probes, built from OTLP metrics, plus the latest value of
//! every other OTLP metric a node sends; per cluster, workloads are built from their pods'
//! listeners (see [`crate::aggregate`] for the arithmetic). Memory is bounded: nodes expire,
//! listeners and probes without data for `node_expiry` go, windows older than an hour (listener
//! windows: older than `workload_history`) go, and every map has a limit (see [`Limits`]).
//!
//! [`Fleet::snapshot`] is the one read-only view the API, the status page, `/metrics` and the
//! rules read.

use crate::aggregate::{self, BusyWindow, Counter, CounterPoint};
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
/// Most top names and top sources kept per interface (the agent sends its top 10 of each).
pub const MAX_TOP: usize = 100;
/// What the ENA driver's allowance counters end with.
const ALLOWANCE_SUFFIX: &str = "_allowance_exceeded";
/// Most distinct counters (ENA allowances, DNS totals) kept per interface.
const MAX_IFACE_COUNTERS: usize = 16;
/// Points kept per interface counter: enough for the latest two windows' rises.
const IFACE_COUNTER_POINTS: usize = 3;
/// Most distinct `result` values kept per probe (the agent has four).
const MAX_RESULTS: usize = 8;
/// Points kept per probe counter over `workload_history`, thinned evenly beyond (see
/// [`Counter`]): the attempt counts are exact up to this many windows.
const PROBE_COUNTER_POINTS: usize = 32;
const MAX_VALUE_CHARS: usize = 256;
/// Cluster name for senders that do not set `k8s.cluster.name`.
pub const DEFAULT_CLUSTER: &str = "default";

/// A figure that may be missing, in 4 bytes (NaN = missing): an hour of windows for every
/// interface of 5 000 nodes is millions of records, so each byte counts. Packets/s, ratios
/// and worker counts need no more than an f32's 7 significant digits.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Small(f32);

impl Default for Small {
    fn default() -> Self {
        Small(f32::NAN)
    }
}

impl Small {
    fn of(v: f64) -> Small {
        Small(v as f32)
    }
    /// The shortest decimal (at most 9 significant digits, what an f32 holds) that is
    /// stored as the same f32: 93.4 reads back as 93.4, not 93.40000152.
    fn get(self) -> Option<f64> {
        if self.0.is_nan() {
            return None;
        }
        let x = f64::from(self.0);
        if x == 0.0 || !x.is_finite() {
            return Some(x);
        }
        let e = x.abs().log10().floor() as i32;
        for digits in 1..=9 {
            let scale = 10f64.powi(digits - 1 - e);
            let r = (x * scale).round() / scale;
            if r as f32 == self.0 {
                return Some(r);
            }
        }
        Some(x)
    }
    fn is_some(self) -> bool {
        !self.0.is_nan()
    }
}

impl Default for WindowPoint {
    fn default() -> Self {
        WindowPoint {
            start_ns: 0,
            drops_total: f64::NAN,
            peak: Small::default(),
            mean: Small::default(),
            utilization: Small::default(),
            limit: Small::default(),
            dns_peak: Small::default(),
        }
    }
}

/// A count that may be missing, in 4 bytes (u32::MAX = missing).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Count(u32);

impl Default for Count {
    fn default() -> Self {
        Count(u32::MAX)
    }
}

impl Count {
    fn of(v: f64) -> Count {
        Count(v.max(0.0).min(f64::from(u32::MAX - 1)).round() as u32)
    }
    fn get(self) -> Option<u32> {
        (self.0 != u32::MAX).then_some(self.0)
    }
}

/// One report window of one interface, as it arrived (any field may be missing).
#[derive(Debug, Clone, PartialEq)]
struct WindowPoint {
    start_ns: u64,
    /// Cumulative capture drops at the window's end (NaN = missing; a counter keeps f64).
    drops_total: f64,
    peak: Small,
    mean: Small,
    utilization: Small,
    limit: Small,
    /// One-second peak of DNS packets alone (`service = dns`).
    dns_peak: Small,
}

#[derive(Debug, Default)]
struct Interface {
    /// Keyed by the window's end (ns since the epoch), so late windows fall into place.
    windows: BTreeMap<u64, WindowPoint>,
    /// `allowance:NAME` (ENA allowance counters), `dns.queries`, `dns.unanswered`.
    counters: BTreeMap<String, Counter>,
    /// The newest window's DNS figures.
    dns: Option<DnsLatest>,
}

/// The DNS figures of one window (the newest one seen).
#[derive(Debug, Default)]
struct DnsLatest {
    end: u64,
    share: Option<f64>,
    qnames: BTreeMap<String, f64>,
    sources: BTreeMap<String, SourceEntry>,
}

#[derive(Debug, Default)]
struct SourceEntry {
    namespace: String,
    pod: String,
    workload_kind: String,
    workload: String,
    queries: f64,
    search_expansion_packets: f64,
}

/// (namespace, pod, container, port)
type ListenerKey = (String, String, String, u16);

/// One listener's report windows over `workload_history`.
#[derive(Debug, Default)]
struct Listener {
    process: String,
    workload_kind: String,
    workload: String,
    windows: BTreeMap<u64, ListenerWindow>,
}

/// One listener window in 48 bytes (see [`Small`]).
#[derive(Debug, Clone, Copy)]
struct ListenerWindow {
    start: u64,
    /// The saturated-seconds counter: its start and value at the window's end (NaN = none).
    saturated_start: u64,
    saturated: f64,
    busy: Small,
    workers: Count,
    busy_max: Count,
    queue_max: Count,
    backlog: Count,
}

impl Default for ListenerWindow {
    fn default() -> Self {
        ListenerWindow {
            start: 0,
            saturated_start: 0,
            saturated: f64::NAN,
            busy: Small::default(),
            workers: Count::default(),
            busy_max: Count::default(),
            queue_max: Count::default(),
            backlog: Count::default(),
        }
    }
}

impl ListenerWindow {
    fn saturated(&self) -> Option<(u64, f64)> {
        (!self.saturated.is_nan()).then_some((self.saturated_start, self.saturated))
    }
}

/// (namespace, pod, container, probe kind)
type ProbeKey = (String, String, String, String);

#[derive(Debug, Default)]
struct Probe {
    target: String,
    workload_kind: String,
    workload: String,
    /// The newest window: its end and start, and its gauges.
    end: u64,
    start: u64,
    timeout: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    /// Earliest window start seen (for history_seconds).
    first_start: u64,
    attempts: BTreeMap<String, Counter>,
    removals: Counter,
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
    listeners: BTreeMap<ListenerKey, Listener>,
    probes: BTreeMap<ProbeKey, Probe>,
    spans: u64,
}

/// What the ingest side counts about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestStats {
    /// Data points taken into the fleet.
    pub points_accepted: u64,
    /// Data points refused by a limit (series per metric, metrics, interfaces, listeners or
    /// probes per node, nodes, top names), without a value or a needed attribute, or older
    /// than the history kept.
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
    /// Listeners and probes removed (their node still reporting) after no data for
    /// `node_expiry`: the pod went away.
    pub listeners_probes_expired: u64,
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
                listeners: BTreeMap::new(),
                probes: BTreeMap::new(),
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
                let class = Class::of(&m.name);
                if class != Class::Generic {
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
                        let end = if p.time_unix_nano == 0 {
                            now_ns
                        } else {
                            p.time_unix_nano
                        };
                        let at = At {
                            end,
                            start: p.start_time_unix_nano,
                            now: now_ns,
                        };
                        let taken = number(p).is_some_and(|v| match class {
                            Class::Listener => listener_point(node, &limits, &m.name, &a, v, at),
                            Class::Probe => probe_point(node, &limits, &m.name, &a, v, at),
                            _ => interface_point(node, &limits, &m.name, &a, v, at),
                        });
                        if taken {
                            applied.accepted += 1;
                        } else {
                            applied.rejected += 1;
                        }
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
        let history_start = ns(now).saturating_sub(self.limits.workload_history.as_nanos() as u64);
        let silent_since = ns(now).saturating_sub(expiry.as_nanos() as u64);
        let mut parts_expired = 0;
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
                    i.counters
                        .retain(|_, c| c.latest().is_some_and(|p| p.end >= oldest));
                    if i.dns.as_ref().is_some_and(|d| d.end < oldest) {
                        i.dns = None;
                    }
                }
                n.interfaces.retain(|_, i| {
                    !i.windows.is_empty() || !i.counters.is_empty() || i.dns.is_some()
                });
                let before = n.listeners.len() + n.probes.len();
                for l in n.listeners.values_mut() {
                    prune_windows(&mut l.windows, history_start);
                }
                n.listeners.retain(|_, l| {
                    l.windows
                        .last_key_value()
                        .is_some_and(|(end, _)| *end >= silent_since)
                });
                for p in n.probes.values_mut() {
                    for c in p.attempts.values_mut() {
                        c.prune(history_start);
                    }
                    p.removals.prune(history_start);
                }
                n.probes.retain(|_, p| p.end >= silent_since);
                parts_expired += (before - n.listeners.len() - n.probes.len()) as u64;
            }
        }
        self.clusters.retain(|_, nodes| !nodes.is_empty());
        self.nodes -= removed;
        self.stats.nodes_expired += removed as u64;
        self.stats.listeners_probes_expired += parts_expired;
    }

    /// The read-only view of the whole fleet at `now`, with every window of the last hour.
    pub fn snapshot(&self, now: SystemTime) -> FleetSnapshot {
        self.snapshot_with(now, true)
    }

    /// As [`Fleet::snapshot`]; without `history` each interface carries only its latest window
    /// and last-hour figures (what `/metrics` needs: far smaller for a large fleet).
    pub fn snapshot_with(&self, now: SystemTime, history: bool) -> FleetSnapshot {
        self.build(now, history, true)
    }

    /// What the rules and `/metrics` read: as `snapshot_with(now, false)` but without each
    /// node's latest-value `metrics` (other senders' series, probe histograms …), which neither
    /// reads and which would be copied under the fleet's lock on every evaluation and scrape.
    pub fn snapshot_lean(&self, now: SystemTime) -> FleetSnapshot {
        self.build(now, false, false)
    }

    fn build(&self, now: SystemTime, history: bool, generic: bool) -> FleetSnapshot {
        let now_ns = ns(now);
        let history_start = now_ns.saturating_sub(self.limits.workload_history.as_nanos() as u64);
        let clusters = self
            .clusters
            .iter()
            .map(|(cname, nodes)| ClusterSnapshot {
                name: cname.clone(),
                nodes: nodes
                    .iter()
                    .map(|(name, n)| node_snapshot(name, n, history, generic, history_start))
                    .collect(),
                workloads: workloads(nodes, history_start),
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

/// Drops windows that ended before `oldest`, except the newest of them: the base the first
/// counter rise inside the span is measured from.
fn prune_windows<W>(windows: &mut BTreeMap<u64, W>, oldest: u64) {
    while windows.len() > 1 {
        let mut keys = windows.keys();
        let second = keys.nth(1).copied().unwrap_or(u64::MAX);
        if second >= oldest {
            break;
        }
        windows.pop_first();
    }
}

/// Which part of the model a metric feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Per-window interface gauges (and the capture drops counter).
    Window,
    /// Interface counters whose rises per window matter (ENA allowances, DNS totals).
    IfaceCounter,
    /// The window's DNS shares and top talkers.
    Dns,
    Listener,
    Probe,
    /// Anything else: the latest value per attribute set.
    Generic,
}

impl Class {
    fn of(name: &str) -> Class {
        match name {
            otlp::LINKLOCAL_PACKETS => Class::Generic,
            otlp::CAPTURE_DROPS => Class::Window,
            n if n.starts_with(otlp::LINKLOCAL_PREFIX) => Class::Window,
            otlp::ENA_ALLOWANCE_EXCEEDED | otlp::DNS_QUERIES | otlp::DNS_UNANSWERED => {
                Class::IfaceCounter
            }
            otlp::DNS_SEARCH_EXPANSION_SHARE
            | otlp::DNS_TOP_QNAME_QUERIES
            | otlp::DNS_TOP_SOURCE_QUERIES
            | otlp::DNS_TOP_SOURCE_SEARCH_EXPANSION => Class::Dns,
            otlp::WORKERS
            | otlp::WORKERS_BUSY
            | otlp::WORKERS_BUSY_MAX
            | otlp::ACCEPT_QUEUE_DEPTH_MAX
            | otlp::ACCEPT_QUEUE_BACKLOG
            | otlp::WORKERS_SATURATED_SECONDS => Class::Listener,
            otlp::PROBE_ATTEMPTS
            | otlp::PROBE_TIMEOUT
            | otlp::PROBE_LATENCY_P99
            | otlp::PROBE_LATENCY_MAX
            | otlp::PROBE_PREDICTED_REMOVALS => Class::Probe,
            _ => Class::Generic,
        }
    }
}

/// When a data point is: its window's end (or now), its `start_time_unix_nano` (the window's
/// start for gauges, the counter's start for sums), and now.
#[derive(Debug, Clone, Copy)]
struct At {
    end: u64,
    start: u64,
    now: u64,
}

fn attr_or_empty(a: &[(String, String)], key: &str) -> String {
    get(a, key).unwrap_or("").to_string()
}

/// A point of an interface metric; false when refused (no interface, too old, a limit).
fn interface_point(
    node: &mut Node,
    limits: &Limits,
    name: &str,
    a: &[(String, String)],
    v: f64,
    at: At,
) -> bool {
    let Some(iface) = get(a, attr::INTERFACE) else {
        return false;
    };
    if at.end < at.now.saturating_sub(HISTORY.as_nanos() as u64) {
        return false;
    }
    let key = (iface.to_string(), attr_or_empty(a, attr::ENI));
    if !node.interfaces.contains_key(&key)
        && node.interfaces.len() >= limits.max_interfaces_per_node
    {
        return false;
    }
    let i = node.interfaces.entry(key).or_default();
    match Class::of(name) {
        Class::IfaceCounter => {
            let key = match name {
                // The attribute holds the driver's counter name without the suffix
                // (`linklocal`); the snapshot names the counter (`linklocal_allowance_exceeded`).
                otlp::ENA_ALLOWANCE_EXCEEDED => match get(a, attr::ALLOWANCE) {
                    Some(al) if al.ends_with(ALLOWANCE_SUFFIX) => format!("allowance:{al}"),
                    Some(al) => format!("allowance:{al}{ALLOWANCE_SUFFIX}"),
                    None => return false,
                },
                n => n.trim_start_matches("headroom.").to_string(),
            };
            if !i.counters.contains_key(&key) && i.counters.len() >= MAX_IFACE_COUNTERS {
                return false;
            }
            i.counters.entry(key).or_default().record(
                CounterPoint {
                    end: at.end,
                    start: at.start,
                    value: v,
                },
                IFACE_COUNTER_POINTS,
            );
            true
        }
        Class::Dns => {
            let dns = i.dns.get_or_insert_with(DnsLatest::default);
            if at.end > dns.end {
                *dns = DnsLatest {
                    end: at.end,
                    ..DnsLatest::default()
                };
            } else if at.end < dns.end {
                // An older window's top talkers: the newer ones stand.
                return true;
            }
            match name {
                otlp::DNS_SEARCH_EXPANSION_SHARE => dns.share = Some(v),
                otlp::DNS_TOP_QNAME_QUERIES => {
                    let Some(q) = get(a, attr::QNAME) else {
                        return false;
                    };
                    if !dns.qnames.contains_key(q) && dns.qnames.len() >= MAX_TOP {
                        return false;
                    }
                    dns.qnames.insert(q.to_string(), v);
                }
                _ => {
                    let Some(src) = get(a, attr::SOURCE) else {
                        return false;
                    };
                    if !dns.sources.contains_key(src) && dns.sources.len() >= MAX_TOP {
                        return false;
                    }
                    let e = dns.sources.entry(src.to_string()).or_default();
                    e.namespace = attr_or_empty(a, attr::NAMESPACE);
                    e.pod = attr_or_empty(a, attr::POD);
                    e.workload_kind = attr_or_empty(a, attr::WORKLOAD_KIND);
                    e.workload = attr_or_empty(a, attr::WORKLOAD);
                    if name == otlp::DNS_TOP_SOURCE_QUERIES {
                        e.queries = v;
                    } else {
                        e.search_expansion_packets = v;
                    }
                }
            }
            true
        }
        _ => {
            let w = i.windows.entry(at.end).or_default();
            match name {
                otlp::LINKLOCAL_PPS_PEAK => w.peak = Small::of(v),
                otlp::LINKLOCAL_PPS_MEAN => w.mean = Small::of(v),
                otlp::LINKLOCAL_PPS_LIMIT => w.limit = Small::of(v),
                otlp::LINKLOCAL_UTILIZATION => w.utilization = Small::of(v),
                otlp::CAPTURE_DROPS => w.drops_total = v,
                otlp::LINKLOCAL_SERVICE_PPS_PEAK if get(a, attr::SERVICE) == Some("dns") => {
                    w.dns_peak = Small::of(v)
                }
                _ => {}
            }
            if name != otlp::CAPTURE_DROPS && at.start != 0 {
                w.start_ns = at.start;
            }
            while i.windows.len() > MAX_WINDOWS {
                i.windows.pop_first();
            }
            true
        }
    }
}

/// A point of a listener metric; false when refused (no port, older than the workload
/// history, over `max_listeners_per_node`).
fn listener_point(
    node: &mut Node,
    limits: &Limits,
    name: &str,
    a: &[(String, String)],
    v: f64,
    at: At,
) -> bool {
    let Some(port) = get(a, attr::PORT).and_then(|p| p.parse::<u16>().ok()) else {
        return false;
    };
    if at.end
        < at.now
            .saturating_sub(limits.workload_history.as_nanos() as u64)
    {
        return false;
    }
    let key = (
        attr_or_empty(a, attr::NAMESPACE),
        attr_or_empty(a, attr::POD),
        attr_or_empty(a, attr::CONTAINER),
        port,
    );
    if !node.listeners.contains_key(&key) && node.listeners.len() >= limits.max_listeners_per_node {
        return false;
    }
    let l = node.listeners.entry(key).or_default();
    let newest = l.windows.last_key_value().map(|(e, _)| *e).unwrap_or(0);
    if at.end >= newest {
        for (field, key) in [
            (&mut l.process, attr::PROCESS),
            (&mut l.workload_kind, attr::WORKLOAD_KIND),
            (&mut l.workload, attr::WORKLOAD),
        ] {
            if let Some(v) = get(a, key) {
                if field != v {
                    *field = v.to_string();
                }
            }
        }
    }
    let w = l.windows.entry(at.end).or_default();
    match name {
        otlp::WORKERS => w.workers = Count::of(v),
        otlp::WORKERS_BUSY => w.busy = Small::of(v.max(0.0)),
        otlp::WORKERS_BUSY_MAX => w.busy_max = Count::of(v),
        otlp::ACCEPT_QUEUE_DEPTH_MAX => w.queue_max = Count::of(v),
        otlp::ACCEPT_QUEUE_BACKLOG => w.backlog = Count::of(v),
        _ => {
            w.saturated_start = at.start;
            w.saturated = v;
        }
    }
    if name != otlp::WORKERS_SATURATED_SECONDS && at.start != 0 {
        w.start = at.start;
    }
    while l.windows.len() > MAX_WINDOWS {
        l.windows.pop_first();
    }
    true
}

/// A point of a probe metric; false when refused (no probe kind, no `result` on attempts,
/// older than the workload history, over `max_probes_per_node`).
fn probe_point(
    node: &mut Node,
    limits: &Limits,
    name: &str,
    a: &[(String, String)],
    v: f64,
    at: At,
) -> bool {
    let Some(kind) = get(a, attr::PROBE) else {
        return false;
    };
    if at.end
        < at.now
            .saturating_sub(limits.workload_history.as_nanos() as u64)
    {
        return false;
    }
    let key = (
        attr_or_empty(a, attr::NAMESPACE),
        attr_or_empty(a, attr::POD),
        attr_or_empty(a, attr::CONTAINER),
        kind.to_string(),
    );
    if !node.probes.contains_key(&key) && node.probes.len() >= limits.max_probes_per_node {
        return false;
    }
    let pr = node.probes.entry(key).or_default();
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
        otlp::PROBE_ATTEMPTS => {
            let Some(result) = get(a, attr::RESULT) else {
                return false;
            };
            if !pr.attempts.contains_key(result) && pr.attempts.len() >= MAX_RESULTS {
                return false;
            }
            pr.attempts
                .entry(result.to_string())
                .or_default()
                .record(point, PROBE_COUNTER_POINTS);
        }
        otlp::PROBE_PREDICTED_REMOVALS => pr.removals.record(point, PROBE_COUNTER_POINTS),
        _ => {
            if at.end == pr.end {
                if at.start != 0 {
                    pr.start = at.start;
                }
                match name {
                    otlp::PROBE_TIMEOUT => pr.timeout = Some(v),
                    otlp::PROBE_LATENCY_P99 => pr.p99 = Some(v),
                    _ => pr.max = Some(v),
                }
            }
            if at.start != 0 && (pr.first_start == 0 || at.start < pr.first_start) {
                pr.first_start = at.start;
            }
        }
    }
    if at.end == pr.end {
        for (field, key) in [
            (&mut pr.target, attr::TARGET),
            (&mut pr.workload_kind, attr::WORKLOAD_KIND),
            (&mut pr.workload, attr::WORKLOAD),
        ] {
            if let Some(v) = get(a, key) {
                if field != v {
                    *field = v.to_string();
                }
            }
        }
    }
    true
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

/// The start of the interface window that ended at `end` (or `end` when unknown).
fn window_start(i: &Interface, end: u64) -> u64 {
    i.windows
        .get(&end)
        .map(|w| w.start_ns)
        .filter(|s| *s != 0 && *s <= end)
        .unwrap_or(end)
}

/// The counter's rise into its point `back` places before the newest, as a whole number.
fn iface_rise(i: &Interface, c: &Counter, back: usize) -> Option<u64> {
    let p = c.nth_back(back)?;
    let r = c.rise_of(back, window_start(i, p.end))?;
    Some(r.round() as u64)
}

/// Allowance rises and DNS figures of an interface whose latest window ended at `latest_end`.
fn interface_extras(
    i: &Interface,
    latest_end: u64,
) -> (BTreeMap<String, u64>, Option<DnsSnapshot>) {
    let latest_start = window_start(i, latest_end);
    let allowance = i
        .counters
        .iter()
        .filter_map(|(k, c)| Some((k.strip_prefix("allowance:")?, c)))
        .filter(|(_, c)| c.latest().is_some_and(|p| p.end >= latest_start))
        .filter_map(|(k, c)| Some((k.to_string(), iface_rise(i, c, 0)?)))
        .collect();
    let queries = i.counters.get("dns.queries");
    let unanswered = i.counters.get("dns.unanswered");
    if i.dns.is_none() && queries.is_none() && unanswered.is_none() {
        return (allowance, None);
    }
    let rise = |c: Option<&Counter>, back| c.and_then(|c| iface_rise(i, c, back)).unwrap_or(0);
    let mut dns = DnsSnapshot {
        unanswered_latest: rise(unanswered, 0),
        unanswered_previous: rise(unanswered, 1),
        queries_latest: rise(queries, 0),
        ..Default::default()
    };
    if let Some(d) = &i.dns {
        dns.search_expansion_share = d.share.unwrap_or(0.0);
        dns.top_qnames = d
            .qnames
            .iter()
            .map(|(q, n)| QnameCount {
                qname: q.clone(),
                queries: n.round() as u64,
            })
            .collect();
        dns.top_qnames
            .sort_by(|a, b| b.queries.cmp(&a.queries).then(a.qname.cmp(&b.qname)));
        dns.top_sources = d
            .sources
            .iter()
            .map(|(src, e)| SourceCount {
                source: src.clone(),
                namespace: e.namespace.clone(),
                pod: e.pod.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                queries: e.queries.round() as u64,
                search_expansion_packets: e.search_expansion_packets.round() as u64,
            })
            .collect();
        dns.top_sources
            .sort_by(|a, b| b.queries.cmp(&a.queries).then(a.source.cmp(&b.source)));
    }
    (allowance, Some(dns))
}

fn listener_snapshot(key: &ListenerKey, l: &Listener) -> Option<ListenerSnapshot> {
    let (end, w) = l.windows.last_key_value()?;
    let workers = w.workers.get().unwrap_or(0);
    let busy_max = w.busy_max.get().unwrap_or(0);
    Some(ListenerSnapshot {
        namespace: key.0.clone(),
        pod: key.1.clone(),
        container: key.2.clone(),
        port: key.3,
        process: l.process.clone(),
        workload_kind: l.workload_kind.clone(),
        workload: l.workload.clone(),
        workers,
        busy: w.busy.get().unwrap_or(0.0),
        busy_max,
        queue_max: w.queue_max.get().unwrap_or(0),
        backlog: w.backlog.get().unwrap_or(0),
        utilization: if workers > 0 {
            f64::from(busy_max) / f64::from(workers)
        } else {
            0.0
        },
        saturated_seconds_total: w.saturated().map(|s| s.1).unwrap_or(0.0),
        time: rfc3339(*end),
    })
}

fn probe_snapshot(key: &ProbeKey, p: &Probe, history_start: u64) -> ProbeSnapshot {
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
            .values()
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
        attempts: p
            .attempts
            .iter()
            .map(|(r, c)| (r.clone(), c.rise_since(history_start).round() as u64))
            .collect(),
        predicted_removals: p.removals.rise_since(history_start).round() as u64,
        history_seconds: p.end.saturating_sub(from) as f64 / 1e9,
        time: rfc3339(p.end),
    }
}

/// The workload a listener belongs to: (namespace, kind, name). A pod without a workload is
/// its own (`Pod`, pod name); a listener outside any pod is named by its process.
fn workload_of(key: &ListenerKey, l: &Listener) -> (String, String, String) {
    let kind = if !l.workload_kind.is_empty() {
        l.workload_kind.clone()
    } else if !key.1.is_empty() {
        "Pod".to_string()
    } else {
        "Process".to_string()
    };
    let name = [&l.workload, &key.1, &l.process]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    (key.0.clone(), kind, name)
}

/// Every workload of a cluster from its nodes' listeners (see [`aggregate::busy_sums`] for how
/// pods on different nodes add up).
fn workloads(nodes: &BTreeMap<String, Node>, history_start: u64) -> Vec<WorkloadSnapshot> {
    type Member<'a> = (&'a str, &'a ListenerKey, &'a Listener);
    let mut groups: BTreeMap<(String, String, String), Vec<Member>> = BTreeMap::new();
    for (node, n) in nodes {
        for (key, l) in &n.listeners {
            groups
                .entry(workload_of(key, l))
                .or_default()
                .push((node.as_str(), key, l));
        }
    }
    groups
        .into_iter()
        .map(|((namespace, kind, name), members)| {
            let busy: Vec<Vec<BusyWindow>> = members
                .iter()
                .map(|(_, _, l)| {
                    l.windows
                        .iter()
                        .filter_map(|(end, w)| {
                            Some(BusyWindow {
                                start: if w.start == 0 { *end } else { w.start },
                                end: *end,
                                busy: w.busy.get()?,
                            })
                        })
                        .collect()
                })
                .collect();
            let frontier = aggregate::frontier(&busy).unwrap_or(0);
            let sums: Vec<f64> = aggregate::busy_sums(&busy, history_start, frontier)
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            // Listeners still reporting: their newest window reaches the frontier.
            let newest = busy.iter().filter_map(|b| b.last()).map(|w| w.end).max();
            let current: Vec<&Member> = members
                .iter()
                .zip(&busy)
                .filter(|(_, b)| {
                    b.last().is_some_and(|w| {
                        newest.is_some_and(|n| w.end + (w.end - w.start).max(1) >= n)
                    })
                })
                .map(|(m, _)| m)
                .collect();
            let mut pods: Vec<String> = current
                .iter()
                .map(|(node, key, _)| format!("{node}/{}", key.1))
                .collect();
            pods.dedup();
            let workers_per_pod = aggregate::mode(current.iter().filter_map(|(_, _, l)| {
                l.windows
                    .last_key_value()
                    .and_then(|(_, w)| w.workers.get())
            }));
            let mut queue_max = 0;
            let mut saturated = 0.0;
            let (mut first, mut last) = (u64::MAX, 0);
            for (_, _, l) in &members {
                let mut prev: Option<CounterPoint> = None;
                for (end, w) in &l.windows {
                    let in_span = *end >= history_start;
                    if in_span {
                        queue_max = queue_max.max(w.queue_max.get().unwrap_or(0));
                        first = first.min(if w.start == 0 { *end } else { w.start });
                        last = last.max(*end);
                    }
                    if let Some((start, value)) = w.saturated() {
                        let p = CounterPoint {
                            end: *end,
                            start,
                            value,
                        };
                        if in_span {
                            saturated += aggregate::rise(prev.as_ref(), &p, history_start);
                        }
                        prev = Some(p);
                    }
                }
            }
            let n = sums.len();
            WorkloadSnapshot {
                namespace,
                kind,
                name,
                pods,
                workers_per_pod,
                busy_latest: sums.last().copied().unwrap_or(0.0),
                busy_mean: if n > 0 {
                    sums.iter().sum::<f64>() / n as f64
                } else {
                    0.0
                },
                busy_p95: aggregate::p95(&sums),
                busy_max: sums.iter().copied().fold(0.0, f64::max),
                queue_max,
                saturated_seconds: saturated,
                history_seconds: last.saturating_sub(first.min(last)) as f64 / 1e9,
                windows: n as u32,
            }
        })
        .collect()
}

fn node_snapshot(
    name: &str,
    n: &Node,
    history: bool,
    generic: bool,
    history_start: u64,
) -> NodeSnapshot {
    let interfaces = n
        .interfaces
        .iter()
        .map(|((iface, eni), i)| {
            // Figures first, text (two RFC 3339 times) only for the windows shown: without
            // history that is the latest one, not the hour's hundreds.
            let mut prev_drops: Option<f64> = None;
            let figures: Vec<(u64, WindowFigures)> = i
                .windows
                .iter()
                .filter(|(_, w)| w.peak.is_some())
                .map(|(end, w)| {
                    let peak = w.peak.get().unwrap_or(0.0);
                    let limit = w.limit.get().unwrap_or(1024.0);
                    let drops_total = (!w.drops_total.is_nan()).then_some(w.drops_total);
                    let drops = match (drops_total, prev_drops) {
                        (Some(now), Some(before)) if now >= before => now - before,
                        _ => 0.0,
                    };
                    if drops_total.is_some() {
                        prev_drops = drops_total;
                    }
                    let start = if w.start_ns == 0 { *end } else { w.start_ns };
                    let f = WindowFigures {
                        seconds: ((end.saturating_sub(start)) as f64 / 1e6).round() / 1e3,
                        peak_pps: peak.round() as u64,
                        mean_pps: w.mean.get().unwrap_or(0.0),
                        utilization: w.utilization.get().unwrap_or(if limit > 0.0 {
                            ((peak / limit) * 1000.0).round() / 1000.0
                        } else {
                            0.0
                        }),
                        limit_pps: limit.round() as u64,
                        kernel_drops: drops.round() as u64,
                        dns_peak_pps: w.dns_peak.get().map(|v| v.round() as u64),
                        end_ns: *end,
                        ..Default::default()
                    };
                    (start, f)
                })
                .collect();
            let text = |(start, f): &(u64, WindowFigures)| WindowFigures {
                start: rfc3339(*start),
                end: rfc3339(f.end_ns),
                ..f.clone()
            };
            let latest = figures.last().map(text);
            let (allowance_exceeded_latest, dns) =
                interface_extras(i, latest.as_ref().map(|w| w.end_ns).unwrap_or(0));
            let peak_pps_last_hour = figures.iter().map(|f| f.1.peak_pps).max().unwrap_or(0);
            let utilization_last_hour = figures.iter().map(|f| f.1.utilization).fold(0.0, f64::max);
            let windows = if history {
                figures.iter().map(text).collect()
            } else {
                Vec::new()
            };
            EniSnapshot {
                interface: iface.clone(),
                eni_id: (!eni.is_empty()).then(|| eni.clone()),
                peak_pps_last_hour,
                utilization_last_hour,
                latest,
                windows: if history { windows } else { Vec::new() },
                allowance_exceeded_latest,
                dns,
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
            .filter(|_| generic)
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
        listeners: n
            .listeners
            .iter()
            .filter_map(|(k, l)| listener_snapshot(k, l))
            .collect(),
        probes: n
            .probes
            .iter()
            .map(|(k, p)| probe_snapshot(k, p, history_start))
            .collect(),
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

    fn sum(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    const S: u64 = 1_000_000_000;

    /// One pod's listener in one window: (pod, busy mean, workers, queue max, saturated total).
    type PodWindow<'a> = (&'a str, f64, f64, f64, f64);

    /// A window of listener metrics as the agent sends them: gauges from start to end, the
    /// saturated counter from `counter_start`.
    fn listeners(
        node: &str,
        start: u64,
        end: u64,
        counter_start: u64,
        pods: &[PodWindow],
    ) -> ExportMetricsServiceRequest {
        let a = |pod: &str| {
            vec![
                kv("namespace", "shop"),
                kv("pod", pod),
                kv("container", "app"),
                kv("port", "8000"),
                kv("process", "gunicorn"),
                kv("workload_kind", "Deployment"),
                kv("workload", "web"),
            ]
        };
        let g = |name: &str, f: &dyn Fn(&PodWindow) -> f64| {
            gauge(
                name,
                pods.iter()
                    .map(|p| point(a(p.0), start, end, f(p)))
                    .collect(),
            )
        };
        request(
            node,
            vec![
                g(otlp::WORKERS, &|p| p.2),
                g(otlp::WORKERS_BUSY, &|p| p.1),
                g(otlp::WORKERS_BUSY_MAX, &|p| p.1.ceil()),
                g(otlp::ACCEPT_QUEUE_DEPTH_MAX, &|p| p.3),
                g(otlp::ACCEPT_QUEUE_BACKLOG, &|_| 128.0),
                sum(
                    otlp::WORKERS_SATURATED_SECONDS,
                    pods.iter()
                        .map(|p| point(a(p.0), counter_start, end, p.4))
                        .collect(),
                ),
            ],
        )
    }

    /// Two nodes, two pods each of Deployment shop/web, three 10 s windows per node; node 2's
    /// windows start `offset` seconds after node 1's. Busy per window: n1 pods [1,2,3] and
    /// [0,1,1] (node sums 1,3,4); n2 pods [2,2,2] and [1,1,3] (sums 3,3,5).
    #[test]
    fn workload_busy_sums_over_offset_nodes() {
        struct Case {
            offset: u64,
            /// busy sums at each window end, worked out by hand from the windows in effect.
            sums: &'static [f64],
        }
        let cases = [
            // Aligned: ends 10, 20, 30 → 1+3, 3+3, 4+5.
            Case {
                offset: 0,
                sums: &[4.0, 6.0, 9.0],
            },
            // n2 5 s later: ends 10 (1+3), 15 (3+3), 20 (3+3), 25 (4+3), 30 (4+5); n2's end 35
            // waits for n1's next window.
            Case {
                offset: 5,
                sums: &[4.0, 6.0, 6.0, 7.0, 9.0],
            },
            // n2 1 s later: ends 10 (1+3), 11 (3+3), 20 (3+3), 21 (4+3), 30 (4+5).
            Case {
                offset: 1,
                sums: &[4.0, 6.0, 6.0, 7.0, 9.0],
            },
        ];
        let t0 = 1_700_000_000;
        for case in cases {
            let mut f = Fleet::new(Limits::default());
            let n1 = [[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]];
            let n2 = [[2.0, 2.0, 2.0], [1.0, 1.0, 3.0]];
            for w in 0..3u64 {
                for (node, pods, off) in [("n1", &n1, 0), ("n2", &n2, case.offset)] {
                    let start = (t0 + off + w * 10) * S;
                    let end = start + 10 * S;
                    let names = if node == "n1" {
                        ["web-1", "web-2"]
                    } else {
                        ["web-3", "web-4"]
                    };
                    // Saturated seconds: pod 1 of each node 0.5 s in every window, pod 2 none;
                    // queue: window w has depth w on pod 1.
                    let pw: Vec<PodWindow> = vec![
                        (
                            names[0],
                            pods[0][w as usize],
                            4.0,
                            w as f64,
                            0.5 * (w + 1) as f64,
                        ),
                        (names[1], pods[1][w as usize], 4.0, 0.0, 0.0),
                    ];
                    let a = f.apply_metrics(
                        &listeners(node, start, end, (t0 - 1) * S, &pw),
                        at(t0 + 40),
                    );
                    assert_eq!(a.rejected, 0);
                }
            }
            let s = f.snapshot(at(t0 + 40));
            let c = &s.clusters[0];
            assert_eq!(c.workloads.len(), 1, "one Deployment");
            let wl = &c.workloads[0];
            let n = case.sums.len() as f64;
            let mean = case.sums.iter().sum::<f64>() / n;
            assert_eq!(
                (wl.namespace.as_str(), wl.kind.as_str(), wl.name.as_str()),
                ("shop", "Deployment", "web")
            );
            assert_eq!(
                wl.pods,
                ["n1/web-1", "n1/web-2", "n2/web-3", "n2/web-4"],
                "offset {}",
                case.offset
            );
            assert_eq!(wl.workers_per_pod, 4);
            assert_eq!(
                wl.windows as usize,
                case.sums.len(),
                "offset {}",
                case.offset
            );
            assert!(
                (wl.busy_mean - mean).abs() < 1e-9,
                "offset {}: {} vs {mean}",
                case.offset,
                wl.busy_mean
            );
            assert_eq!(wl.busy_p95, aggregate::p95(case.sums));
            assert_eq!(wl.busy_max, 9.0);
            assert_eq!(wl.busy_latest, 9.0);
            assert_eq!(wl.queue_max, 2);
            // Two pods × 1.5 s; the counters started 1 s before the first window, inside the
            // 15 m history, so the first window's 0.5 s counts.
            assert!(
                (wl.saturated_seconds - 3.0).abs() < 1e-9,
                "{}",
                wl.saturated_seconds
            );
            assert_eq!(wl.history_seconds, (30 + case.offset) as f64);
            let l = &c.nodes[0].listeners[0];
            assert_eq!(
                (l.pod.as_str(), l.port, l.workers, l.busy_max),
                ("web-1", 8000, 4, 3)
            );
            assert_eq!(l.utilization, 0.75);
            assert_eq!(l.saturated_seconds_total, 1.5);
        }
    }

    #[test]
    fn pods_without_a_workload_are_their_own() {
        let mut f = Fleet::new(Limits::default());
        let t0 = 1_700_000_000;
        let mut req = listeners(
            "n1",
            t0 * S,
            (t0 + 10) * S,
            t0 * S,
            &[("solo", 2.0, 4.0, 0.0, 0.0)],
        );
        for m in &mut req.resource_metrics[0].scope_metrics[0].metrics {
            let points = match &mut m.data {
                Some(metric::Data::Gauge(g)) => &mut g.data_points,
                Some(metric::Data::Sum(s)) => &mut s.data_points,
                _ => unreachable!("the agent sends gauges and sums"),
            };
            for p in points {
                p.attributes.retain(|a| !a.key.starts_with("workload"));
            }
        }
        f.apply_metrics(&req, at(t0 + 11));
        let s = f.snapshot(at(t0 + 11));
        let wl = &s.clusters[0].workloads[0];
        assert_eq!((wl.kind.as_str(), wl.name.as_str()), ("Pod", "solo"));
        assert_eq!(wl.busy_latest, 2.0);
    }

    fn probe_window(
        start: u64,
        end: u64,
        counter_start: u64,
        counts: [(&str, f64); 4],
        removals: f64,
        p99: Option<f64>,
    ) -> ExportMetricsServiceRequest {
        let a = || {
            vec![
                kv("namespace", "shop"),
                kv("pod", "web-1"),
                kv("container", "app"),
                kv("probe", "readiness"),
                kv("target", "http://10.0.1.5:8000/healthz"),
                kv("workload_kind", "Deployment"),
                kv("workload", "web"),
            ]
        };
        let mut metrics = vec![
            gauge(otlp::PROBE_TIMEOUT, vec![point(a(), start, end, 1.0)]),
            sum(
                otlp::PROBE_ATTEMPTS,
                counts
                    .iter()
                    .map(|(r, v)| {
                        let mut at = a();
                        at.push(kv("result", r));
                        point(at, counter_start, end, *v)
                    })
                    .collect(),
            ),
            sum(
                otlp::PROBE_PREDICTED_REMOVALS,
                vec![point(a(), counter_start, end, removals)],
            ),
        ];
        if let Some(p) = p99 {
            metrics.push(gauge(
                otlp::PROBE_LATENCY_P99,
                vec![point(a(), start, end, p)],
            ));
            metrics.push(gauge(
                otlp::PROBE_LATENCY_MAX,
                vec![point(a(), start, end, p * 2.0)],
            ));
        }
        request("n1", metrics)
    }

    #[test]
    fn probe_attempts_are_counter_rises_over_the_history() {
        let t0 = 1_700_000_000;
        struct Case {
            name: &'static str,
            counter_start: u64,
            history: u64,
            /// ok, slow, timeout, error expected
            want: [u64; 4],
            removals: u64,
        }
        let cases = [
            // A fresh agent (counters began 1 s before the first window): all attempts count.
            Case {
                name: "fresh",
                counter_start: t0 - 1,
                history: 900,
                want: [30, 2, 1, 0],
                removals: 1,
            },
            // The collector joined an agent running for an hour: the first window is the base.
            Case {
                name: "joined late",
                counter_start: t0 - 3600,
                history: 900,
                want: [20, 2, 1, 0],
                removals: 1,
            },
            // A 15 s history holds the last two windows, their rises measured from the first
            // (kept as the base).
            Case {
                name: "short history",
                counter_start: t0 - 1,
                history: 15,
                want: [20, 2, 1, 0],
                removals: 1,
            },
        ];
        for c in cases {
            let limits = Limits {
                workload_history: Duration::from_secs(c.history),
                ..Limits::default()
            };
            let mut f = Fleet::new(limits);
            let windows = [
                (
                    [
                        ("ok", 10.0),
                        ("slow", 0.0),
                        ("timeout", 0.0),
                        ("error", 0.0),
                    ],
                    0.0,
                    Some(0.2),
                ),
                (
                    [
                        ("ok", 20.0),
                        ("slow", 0.0),
                        ("timeout", 1.0),
                        ("error", 0.0),
                    ],
                    0.0,
                    Some(1.0),
                ),
                (
                    [
                        ("ok", 30.0),
                        ("slow", 2.0),
                        ("timeout", 1.0),
                        ("error", 0.0),
                    ],
                    1.0,
                    Some(0.25),
                ),
            ];
            for (w, (counts, removals, p99)) in windows.into_iter().enumerate() {
                let start = (t0 + 10 * w as u64) * S;
                // Each window arrives as it ends; expiry runs meanwhile.
                let now = at(t0 + 10 * (w as u64 + 1));
                f.apply_metrics(
                    &probe_window(
                        start,
                        start + 10 * S,
                        c.counter_start * S,
                        counts,
                        removals,
                        p99,
                    ),
                    now,
                );
                f.expire(now);
            }
            let s = f.snapshot(at(t0 + 30));
            let p = &s.clusters[0].nodes[0].probes[0];
            let got: Vec<u64> = ["ok", "slow", "timeout", "error"]
                .iter()
                .map(|r| p.attempts[*r])
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
            assert_eq!(p.predicted_removals, c.removals, "{}", c.name);
            assert_eq!(p.latency_p99_seconds, Some(0.25));
            assert_eq!(p.latency_max_seconds, Some(0.5));
            assert_eq!(p.headroom, Some(4.0));
            assert_eq!(p.timeout_seconds, 1.0);
            assert_eq!(p.target, "http://10.0.1.5:8000/healthz");
            assert_eq!(
                (p.probe.as_str(), p.workload.as_str()),
                ("readiness", "web")
            );
        }
        // A window without attempts has no p99: no headroom.
        let mut f = Fleet::new(Limits::default());
        f.apply_metrics(
            &probe_window(
                t0 * S,
                (t0 + 10) * S,
                t0 * S,
                [("ok", 0.0), ("slow", 0.0), ("timeout", 0.0), ("error", 0.0)],
                0.0,
                None,
            ),
            at(t0 + 10),
        );
        let s = f.snapshot(at(t0 + 10));
        assert_eq!(s.clusters[0].nodes[0].probes[0].headroom, None);
    }

    fn dns_window(
        start: u64,
        end: u64,
        counter_start: u64,
        allowance: &[(&str, f64)],
        unanswered: f64,
    ) -> ExportMetricsServiceRequest {
        let a = || vec![kv("interface", "eth0"), kv("eni", "eni-1")];
        let with = |extra: Vec<KeyValue>| {
            let mut v = a();
            v.extend(extra);
            v
        };
        request(
            "n1",
            vec![
                gauge(
                    otlp::LINKLOCAL_PPS_PEAK,
                    vec![point(a(), start, end, 600.0)],
                ),
                gauge(
                    otlp::LINKLOCAL_SERVICE_PPS_PEAK,
                    vec![
                        point(with(vec![kv("service", "dns")]), start, end, 550.0),
                        point(with(vec![kv("service", "imds")]), start, end, 50.0),
                    ],
                ),
                sum(
                    otlp::ENA_ALLOWANCE_EXCEEDED,
                    allowance
                        .iter()
                        .map(|(n, v)| point(with(vec![kv("allowance", n)]), counter_start, end, *v))
                        .collect(),
                ),
                sum(
                    otlp::DNS_UNANSWERED,
                    vec![point(a(), counter_start, end, unanswered)],
                ),
                sum(
                    otlp::DNS_QUERIES,
                    vec![point(a(), counter_start, end, unanswered * 100.0)],
                ),
                gauge(
                    otlp::DNS_SEARCH_EXPANSION_SHARE,
                    vec![point(a(), start, end, 0.8)],
                ),
                gauge(
                    otlp::DNS_TOP_QNAME_QUERIES,
                    vec![
                        point(
                            with(vec![kv("qname", "db.example.com.shop.svc.cluster.local")]),
                            start,
                            end,
                            400.0,
                        ),
                        point(with(vec![kv("qname", "db.example.com")]), start, end, 100.0),
                    ],
                ),
                gauge(
                    otlp::DNS_TOP_SOURCE_QUERIES,
                    vec![point(
                        with(vec![
                            kv("source", "10.0.1.5"),
                            kv("namespace", "shop"),
                            kv("pod", "web-1"),
                            kv("workload_kind", "Deployment"),
                            kv("workload", "web"),
                        ]),
                        start,
                        end,
                        500.0,
                    )],
                ),
                gauge(
                    otlp::DNS_TOP_SOURCE_SEARCH_EXPANSION,
                    vec![point(
                        with(vec![
                            kv("source", "10.0.1.5"),
                            kv("namespace", "shop"),
                            kv("pod", "web-1"),
                            kv("workload_kind", "Deployment"),
                            kv("workload", "web"),
                        ]),
                        start,
                        end,
                        400.0,
                    )],
                ),
            ],
        )
    }

    #[test]
    fn allowance_and_dns_attach_to_the_interface_windows() {
        let t0 = 1_700_000_000;
        let mut f = Fleet::new(Limits::default());
        let cs = (t0 - 3600) * S;
        f.apply_metrics(
            &dns_window(
                t0 * S,
                (t0 + 10) * S,
                cs,
                &[("linklocal", 3.0), ("pps", 7.0)],
                2.0,
            ),
            at(t0 + 10),
        );
        let s = f.snapshot(at(t0 + 10));
        let i = &s.clusters[0].nodes[0].interfaces[0];
        assert_eq!(
            i.allowance_exceeded_latest
                .get("linklocal_allowance_exceeded"),
            Some(&0),
            "first window of a counter older than the window: rise unknown, 0"
        );
        // Second window: linklocal rises by 5, pps stays flat; 3 more unanswered.
        f.apply_metrics(
            &dns_window(
                (t0 + 10) * S,
                (t0 + 20) * S,
                cs,
                &[("linklocal", 8.0), ("pps", 7.0)],
                5.0,
            ),
            at(t0 + 20),
        );
        let s = f.snapshot(at(t0 + 20));
        let i = &s.clusters[0].nodes[0].interfaces[0];
        assert_eq!(
            i.allowance_exceeded_latest["linklocal_allowance_exceeded"],
            5
        );
        assert_eq!(i.allowance_exceeded_latest["pps_allowance_exceeded"], 0);
        assert_eq!(
            i.windows.iter().map(|w| w.dns_peak_pps).collect::<Vec<_>>(),
            [Some(550), Some(550)]
        );
        let d = i.dns.as_ref().unwrap();
        assert_eq!(
            (d.unanswered_latest, d.unanswered_previous, d.queries_latest),
            (3, 0, 300)
        );
        assert_eq!(d.search_expansion_share, 0.8);
        assert_eq!(
            d.top_qnames[0].qname,
            "db.example.com.shop.svc.cluster.local"
        );
        assert_eq!(
            d.top_qnames.iter().map(|q| q.queries).collect::<Vec<_>>(),
            [400, 100]
        );
        let src = &d.top_sources[0];
        assert_eq!(
            (
                src.source.as_str(),
                src.pod.as_str(),
                src.workload.as_str(),
                src.queries,
                src.search_expansion_packets
            ),
            ("10.0.1.5", "web-1", "web", 500, 400)
        );
        // An older window arriving late does not replace the newer top names.
        f.apply_metrics(
            &dns_window((t0 - 10) * S, t0 * S, cs, &[], 1.0),
            at(t0 + 21),
        );
        let s = f.snapshot(at(t0 + 21));
        let i = &s.clusters[0].nodes[0].interfaces[0];
        assert_eq!(i.dns.as_ref().unwrap().top_qnames.len(), 2);
        assert_eq!(i.windows.len(), 3);
    }

    #[test]
    fn listeners_and_probes_are_bounded_and_expire() {
        let t0 = 1_700_000_000;
        let limits = Limits {
            max_listeners_per_node: 2,
            max_probes_per_node: 1,
            ..Limits::default()
        };
        let mut f = Fleet::new(limits);
        let pods: Vec<PodWindow> = (0..5).map(|_| ("x", 1.0, 2.0, 0.0, 0.0)).collect();
        let names = ["p0", "p1", "p2", "p3", "p4"];
        let pods: Vec<PodWindow> = pods
            .iter()
            .zip(names)
            .map(|(p, n)| (n, p.1, p.2, p.3, p.4))
            .collect();
        let a = f.apply_metrics(
            &listeners("n1", t0 * S, (t0 + 10) * S, t0 * S, &pods),
            at(t0 + 10),
        );
        // 6 metrics × 5 pods; 2 listeners kept.
        assert_eq!(
            a,
            Applied {
                accepted: 12,
                rejected: 18
            }
        );
        f.apply_metrics(
            &probe_window(
                t0 * S,
                (t0 + 10) * S,
                t0 * S,
                [("ok", 1.0), ("slow", 0.0), ("timeout", 0.0), ("error", 0.0)],
                0.0,
                Some(0.1),
            ),
            at(t0 + 10),
        );
        // Too old for the 15 m workload history: refused.
        let a = f.apply_metrics(
            &listeners("n1", (t0 - 1000) * S, (t0 - 990) * S, t0 * S, &pods[..1]),
            at(t0 + 10),
        );
        assert_eq!(a.rejected, 6);
        // The node goes on reporting its interface for 20 minutes; the pods went away.
        for m in 1..=20 {
            f.apply_metrics(&window("n1", t0 + 60 * m, 1.0, 0.0), at(t0 + 60 * m + 10));
        }
        f.expire(at(t0 + 1210));
        let s = f.snapshot(at(t0 + 1210));
        let n = &s.clusters[0].nodes[0];
        assert!(n.listeners.is_empty() && n.probes.is_empty());
        assert!(s.clusters[0].workloads.is_empty());
        assert_eq!(s.ingest.listeners_probes_expired, 3);
        assert_eq!(s.nodes, 1);
    }

    #[test]
    fn window_records_stay_small() {
        // What an hour of windows for every interface and listener costs, before map overhead.
        assert!(std::mem::size_of::<WindowPoint>() <= 40);
        assert!(std::mem::size_of::<ListenerWindow>() <= 48);
        assert_eq!(Small::of(0.586).get(), Some(0.586));
        assert_eq!(Small::of(93.4).get(), Some(93.4));
        assert_eq!(Small::default().get(), None);
        assert_eq!(Small::of(900.0 / 1024.0).get(), Some(0.87890625));
        assert_eq!(Small::of(1024.0).get(), Some(1024.0));
        assert_eq!(Small::of(0.0).get(), Some(0.0));
        assert_eq!(
            (Count::of(4.0).get(), Count::default().get()),
            (Some(4), None)
        );
    }
}
