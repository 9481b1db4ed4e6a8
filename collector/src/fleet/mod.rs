//! The fleet model: cluster → node → its parts, built from OTLP metrics. One file per part:
//! [`interfaces`] (link-local windows, ENA allowance counters) with [`dns`] (top talkers,
//! query counters), [`listeners`], [`probes`], [`storage`] (pods' NFS mounts), [`generic`] (the latest value of every other
//! metric), all but the last kept in one bounded keyed store ([`store`]); per cluster,
//! [`workloads`] add up their pods' listeners (arithmetic in [`aggregate`]). [`otlp`] decodes
//! attributes, [`limits`] bounds memory: nodes expire, listeners and probes without data for
//! `node_expiry` go, windows older than an hour (listener windows: older than
//! `workload_history`) go, and every map has a limit.
//!
//! [`Fleet::snapshot`] is the one read-only view the API, the status page, `/metrics` and the
//! rules read (types in [`snapshot`]).

/// `const NAME: &str = headroom_signals::metric::NAME.otlp;` for each name: the OTLP names a
/// part matches on (a `match` arm needs a constant, not a field of one).
/// With `pub fn takes;` first, also `takes(name)`: whether a metric is one of them.
macro_rules! otlp_names {
    ($($name:ident),* $(,)?) => {
        $(const $name: &str = headroom_signals::metric::$name.otlp;)*
    };
    (pub fn $takes:ident; $($name:ident),* $(,)?) => {
        otlp_names!($($name),*);
        /// Whether a metric is one this part takes.
        pub fn $takes(name: &str) -> bool {
            [$($name),*].contains(&name)
        }
    };
}

mod aggregate;
mod cache;
mod dns;
mod generic;
mod interfaces;
mod limits;
mod listeners;
pub(crate) mod otlp;
mod probes;
pub mod sizing;
mod snapshot;
mod storage;
mod store;
#[cfg(test)]
mod tests;
mod view;
mod windows;
mod workloads;

pub use aggregate::p95;
pub use cache::{Lean, LeanCache};
pub use dns::{
    DnsSnapshot, PeakWindow, QnameCount, QnameHour, Savings, SourceCount, SourceHour, MAX_TOP,
};
pub use generic::{MetricSnapshot, SeriesSnapshot};
pub use interfaces::{EniSnapshot, WindowFigures};
pub use limits::{Limits, HISTORY, MAX_FUTURE, MAX_SIZING_HISTORY, MAX_WINDOWS};
pub use listeners::{ListenerSnapshot, Model as ListenerModel};
pub use otlp::DEFAULT_CLUSTER;
pub use probes::ProbeSnapshot;
pub use sizing::{ContainerUse, Sizing, WorkloadKey, WorkloadUse};
pub use snapshot::{ClusterSnapshot, FleetSnapshot, IngestStats, NodeSnapshot, Sidecar};
pub use storage::{MountSnapshot, OpSnapshot};
pub use view::View;
pub use workloads::WorkloadSnapshot;

use crate::time::{ns, rfc3339};
use generic::Generic;
use headroom_signals::resource;
use interfaces::Interface;
use listeners::Listener;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use otlp::{attributes, get, identity, number, points_in, resource_attributes, Attrs};
use probes::Probe;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use storage::Mount;
use store::{At, Cuts, Store};

/// A node's parts. Held behind an `Arc` so a [`View`] can be taken in a moment under the
/// fleet's lock and read after it is let go; ingest copies a node a view still holds
/// (`Arc::make_mut`), expiry leaves it for the next round.
#[derive(Debug, Clone)]
struct Node {
    service_name: Option<String>,
    instance_id: Option<String>,
    instance_type: Option<String>,
    availability_zone: Option<String>,
    /// A sidecar agent's (one pod's) `namespace/name` and IP: a one-pod "node" (Fargate).
    sidecar: Option<Sidecar>,
    last_seen: SystemTime,
    interfaces: Store<Interface>,
    listeners: Store<Listener>,
    probes: Store<Probe>,
    storage: Store<Mount>,
    metrics: Generic,
    spans: u64,
    /// The node's lean snapshot as of its latest report, with that report's time (ns): made
    /// by ingest ([`Node::settle`]) so the refresh an evaluation waits for only gathers them.
    lean: Option<(u64, Arc<NodeSnapshot>)>,
}

/// How long a node's lean snapshot made at its report stands for it (see [`Node::lean`]): a
/// node reporting at least this often is read as of its latest report; one silent longer is
/// made again at the refresh's instant (its probes' counts slide with the history).
pub const LEAN_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl Node {
    fn new(now: SystemTime) -> Node {
        Node {
            service_name: None,
            instance_id: None,
            instance_type: None,
            availability_zone: None,
            sidecar: None,
            last_seen: now,
            interfaces: Store::default(),
            listeners: Store::default(),
            probes: Store::default(),
            storage: Store::default(),
            metrics: Generic::default(),
            spans: 0,
            lean: None,
        }
    }

    /// Makes the node's lean snapshot as of `now_ns`, once a report (or expiry) changed it. At
    /// 5 000 nodes the refresh made every node's each evaluation, 60 ms of CPU it waited for;
    /// here each report pays for its own node (about 10 µs), spread over the interval.
    fn settle(&mut self, name: &str, limits: &Limits, now_ns: u64) {
        self.lean = Some((now_ns, self.make_lean(name, limits, now_ns)));
    }

    /// The node's lean snapshot made at `now_ns` (its probes counted over the workload
    /// history ending then).
    fn make_lean(&self, name: &str, limits: &Limits, now_ns: u64) -> Arc<NodeSnapshot> {
        Arc::new(self.snapshot(name, false, false, limits.history_start(now_ns)))
    }

    /// The node's lean snapshot at `now_ns`: the one made at its latest report while that is at
    /// most [`LEAN_FRESH`] old, else made now.
    fn lean(&self, name: &str, limits: &Limits, now_ns: u64) -> Arc<NodeSnapshot> {
        match &self.lean {
            Some((_, lean)) if self.lean_fresh(now_ns) => lean.clone(),
            _ => self.make_lean(name, limits, now_ns),
        }
    }

    /// Whether the lean snapshot made at the latest report stands for the node at `now_ns`.
    fn lean_fresh(&self, now_ns: u64) -> bool {
        self.lean
            .as_ref()
            .is_some_and(|(at, _)| *at <= now_ns && now_ns - at <= LEAN_FRESH.as_nanos() as u64)
    }

    /// One gauge or sum point of a keyed part's metric; false when refused.
    fn take(
        &mut self,
        limits: &Limits,
        class: Class,
        name: &str,
        a: &Attrs,
        v: f64,
        at: At,
    ) -> bool {
        match class {
            Class::Interface => self.interfaces.take(limits, name, a, v, at),
            Class::Listener => self.listeners.take(limits, name, a, v, at),
            Class::Probe => self.probes.take(limits, name, a, v, at),
            Class::Storage => self.storage.take(limits, name, a, v, at),
            Class::Generic => false,
        }
    }

    /// The node's snapshot; without `full` (the lean snapshot) neither the latest-value
    /// metrics nor the per-node listener list, which no rule, `/metrics` or the page reads
    /// (workloads sum the listeners themselves).
    fn snapshot(&self, name: &str, history: bool, full: bool, history_start: u64) -> NodeSnapshot {
        NodeSnapshot {
            name: name.to_string(),
            service_name: self.service_name.clone(),
            instance_id: self.instance_id.clone(),
            instance_type: self.instance_type.clone(),
            availability_zone: self.availability_zone.clone(),
            sidecar: self.sidecar.clone(),
            last_seen: rfc3339(ns(self.last_seen)),
            interfaces: self
                .interfaces
                .iter()
                .filter_map(|(k, i)| i.snapshot(k, history))
                .collect(),
            metric_count: self.metrics.len(),
            metrics: if full {
                self.metrics.snapshot()
            } else {
                Vec::new()
            },
            spans_received: self.spans,
            listeners: if full {
                self.listeners
                    .iter()
                    .filter_map(|(k, l)| l.snapshot(k))
                    .collect()
            } else {
                Vec::new()
            },
            probes: self
                .probes
                .iter()
                .map(|(k, p)| p.snapshot(k, history_start))
                .collect(),
            storage: self.storage.iter().map(|(k, m)| m.snapshot(k)).collect(),
        }
    }
}

/// Which part of the model a metric feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Interface,
    Listener,
    Probe,
    Storage,
    /// Anything else: the latest value per attribute set.
    Generic,
}

impl Class {
    fn of(name: &str) -> Class {
        if interfaces::takes(name) {
            Class::Interface
        } else if listeners::takes(name) {
            Class::Listener
        } else if probes::takes(name) {
            Class::Probe
        } else if storage::takes(name) {
            Class::Storage
        } else {
            Class::Generic
        }
    }
}

/// Which part of the fleet `/api/v1/fleet` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// Only this node (in every cluster, or in `cluster`).
    pub node: Option<String>,
    pub cluster: Option<String>,
    /// Nodes after this (cluster, node).
    pub after: Option<(String, String)>,
    /// Most nodes in the page.
    pub limit: usize,
    /// Each interface's list of windows.
    pub history: bool,
}

/// A bound that refused something, counted in [`IngestStats::bounds`] under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Data points stamped more than [`MAX_FUTURE`] ahead.
    PointsFuture,
    /// Data points older than the history kept ([`HISTORY`]).
    PointsTooOld,
    /// New nodes refused: the fleet holds `max_nodes`.
    NodesMax,
    /// New nodes refused: the request already added `max_new_nodes_per_request`.
    NodesPerRequest,
    /// New series refused: the fleet holds `max_series`.
    SeriesMax,
    /// Bytes of span requests not queued for the traces endpoint: the queue was full.
    TracesQueueBytes,
}

impl Bound {
    pub const ALL: [Bound; 6] = [
        Bound::PointsFuture,
        Bound::PointsTooOld,
        Bound::NodesMax,
        Bound::NodesPerRequest,
        Bound::SeriesMax,
        Bound::TracesQueueBytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bound::PointsFuture => "points_future",
            Bound::PointsTooOld => "points_too_old",
            Bound::NodesMax => "nodes_max",
            Bound::NodesPerRequest => "nodes_per_request",
            Bound::SeriesMax => "series_max",
            Bound::TracesQueueBytes => "traces_queue_bytes",
        }
    }
}

/// The result of one export request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub accepted: u64,
    /// All refused points (also those counted below).
    pub rejected: u64,
    /// Of them, new series over `max_series`.
    pub over_series: u64,
}

/// Whether a resource of (cluster, node) may be taken; else the rejection reason.
pub type Allow<'a> = dyn Fn(&str, &str) -> Result<(), &'static str> + 'a;

fn claim(allow: &Allow<'_>, res: &Attrs) -> Result<(), &'static str> {
    let (cluster, node) = identity(res);
    allow(&cluster, &node)
}

pub struct Fleet {
    limits: Limits,
    clusters: BTreeMap<String, BTreeMap<String, Arc<Node>>>,
    nodes: usize,
    /// Bumped by every change (ingest, expiry): a snapshot of the same generation is current.
    generation: u64,
    /// Latest-value series over all nodes (bounded by `max_series`).
    series: usize,
    stats: IngestStats,
    /// Per cluster: measured pod use over `sizing_history` (RequestsRightSizing).
    sizing: BTreeMap<String, Sizing>,
    /// Its summary, made again at most every [`SIZING_SUMMARY_EVERY`] by ingest (an hour's
    /// figures move slowly; views share it).
    sizing_summary: Arc<SizingSummary>,
    sizing_summary_at: u64,
}

/// One pod-use point for the sizing history: cluster, node, metric, attributes, value, end.
type SizingPoint = (String, String, String, Vec<(String, String)>, f64, u64);

/// Per cluster: each workload's use over the sizing history.
pub type SizingSummary = BTreeMap<String, Arc<BTreeMap<WorkloadKey, WorkloadUse>>>;

/// How often ingest makes the sizing summary again.
pub const SIZING_SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Fleet {
    pub fn new(limits: Limits) -> Self {
        Fleet {
            limits,
            clusters: BTreeMap::new(),
            nodes: 0,
            generation: 0,
            series: 0,
            stats: IngestStats::default(),
            sizing: BTreeMap::new(),
            sizing_summary: Arc::default(),
            sizing_summary_at: 0,
        }
    }

    /// Feeds pod-use points to the cluster's sizing history; makes the summary again when due.
    fn take_sizing(&mut self, points: Vec<SizingPoint>, now_ns: u64) {
        let hours = (self.limits.sizing_history.as_secs() / 3600).max(1) as u32;
        let clusters = self.limits.max_nodes.max(1);
        for (cluster, node, name, a, v, end) in points {
            if !self.sizing.contains_key(&cluster) && self.sizing.len() >= clusters {
                continue;
            }
            self.sizing
                .entry(cluster)
                .or_default()
                .take(&node, &name, &a, v, end, hours);
        }
        if now_ns.saturating_sub(self.sizing_summary_at) >= SIZING_SUMMARY_EVERY.as_nanos() as u64 {
            self.sizing_summary = Arc::new(
                self.sizing
                    .iter()
                    .map(|(c, s)| (c.clone(), Arc::new(s.summary())))
                    .collect(),
            );
            self.sizing_summary_at = now_ns;
        }
    }

    /// Bytes of sizing history held, over all clusters (hours and co-burst entries).
    pub fn sizing_bytes(&self) -> usize {
        self.sizing.values().map(Sizing::history_bytes).sum()
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

    /// Counts `n` things a bound refused.
    pub fn count_bound(&mut self, bound: Bound, n: u64) {
        if n > 0 {
            *self.stats.bounds.entry(bound.name()).or_default() += n;
        }
    }

    /// The node for a resource and its (cluster, node) identity, the node created (and
    /// refreshed) if the node limits allow; `created` counts the nodes this request added.
    fn node(
        &mut self,
        res: &Attrs,
        now: SystemTime,
        created: &mut usize,
    ) -> Option<(&mut Node, (String, String))> {
        let (cluster, name) = identity(res);
        let exists = self
            .clusters
            .get(&cluster)
            .is_some_and(|c| c.contains_key(&name));
        if !exists {
            let refused = if self.nodes >= self.limits.max_nodes {
                Some(Bound::NodesMax)
            } else if *created >= self.limits.max_new_nodes_per_request {
                Some(Bound::NodesPerRequest)
            } else {
                None
            };
            if let Some(b) = refused {
                self.count_bound(b, 1);
                return None;
            }
            *created += 1;
            self.nodes += 1;
        }
        // A known node is found by reference; only a new one clones its keys.
        let node = match exists {
            true => self.clusters.get_mut(&cluster)?.get_mut(&name)?,
            false => self
                .clusters
                .entry(cluster.clone())
                .or_default()
                .entry(name.clone())
                .or_insert_with(|| Arc::new(Node::new(now))),
        };
        let node = Arc::make_mut(node);
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
        node.sidecar = (get(res, resource::AGENT_MODE) == Some("sidecar")).then(|| Sidecar {
            pod: match (
                get(res, resource::K8S_NAMESPACE_NAME),
                get(res, resource::K8S_POD_NAME),
            ) {
                (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
                _ => None,
            },
            pod_ip: get(res, resource::K8S_POD_IP).map(str::to_string),
        });
        Some((node, (cluster, name)))
    }

    /// Takes one OTLP metrics export into the model.
    pub fn apply_metrics(&mut self, req: &ExportMetricsServiceRequest, now: SystemTime) -> Applied {
        self.apply_metrics_as(req, now, &|_, _| Ok(()))
    }

    /// As [`Fleet::apply_metrics`], taking only the resources whose (cluster, node) `allow`
    /// accepts: the others' points are rejected and each such resource is counted as a
    /// refused request with the reason `allow` gave.
    pub fn apply_metrics_as(
        &mut self,
        req: &ExportMetricsServiceRequest,
        now: SystemTime,
        allow: &Allow<'_>,
    ) -> Applied {
        let limits = self.limits;
        let now_ns = ns(now);
        self.generation += 1;
        let mut applied = Applied::default();
        let mut created = 0;
        let (mut future, mut old) = (0, 0);
        let newest = now_ns.saturating_add(MAX_FUTURE.as_nanos() as u64);
        let oldest = now_ns.saturating_sub(HISTORY.as_nanos() as u64);
        let mut series = self.series;
        let mut sizing = Vec::new();
        for rm in &req.resource_metrics {
            let res = resource_attributes(rm.resource.as_ref());
            let total: u64 = rm
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(|m| points_in(m) as u64)
                .sum();
            if let Err(reason) = claim(allow, &res) {
                self.reject_request(reason);
                applied.rejected += total;
                continue;
            }
            let Some((node, (cluster, node_name))) = self.node(&res, now, &mut created) else {
                applied.rejected += total;
                continue;
            };
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let class = Class::of(&m.name);
                // Pod use feeds the sizing history only: a node's pods' series would fill
                // the latest-value store (`max_series`) at a few thousand nodes.
                if sizing::takes(&m.name) {
                    let Some(metric::Data::Gauge(g)) = &m.data else {
                        applied.rejected += points_in(m) as u64;
                        continue;
                    };
                    for p in &g.data_points {
                        let end = match p.time_unix_nano {
                            0 => now_ns,
                            t => t,
                        };
                        if !(oldest..=newest).contains(&end) {
                            applied.rejected += 1;
                            *(if end > newest { &mut future } else { &mut old }) += 1;
                            continue;
                        }
                        let Some(v) = number(p) else {
                            applied.rejected += 1;
                            continue;
                        };
                        applied.accepted += 1;
                        let a = attributes(&p.attributes);
                        let name = m.name.clone();
                        sizing.push((cluster.clone(), node_name.clone(), name, a, v, end));
                    }
                    continue;
                }
                if class == Class::Generic {
                    let t = node.metrics.take(&limits, m, now_ns, &mut series);
                    applied.accepted += t.accepted;
                    applied.rejected += t.rejected;
                    future += t.future;
                    old += t.old;
                    applied.over_series += t.over_series;
                    continue;
                }
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
                    if end > newest || end < oldest {
                        *(if end > newest { &mut future } else { &mut old }) += 1;
                        applied.rejected += 1;
                        continue;
                    }
                    let at = At {
                        end,
                        start: p.start_time_unix_nano,
                        now: now_ns,
                    };
                    let taken =
                        number(p).is_some_and(|v| node.take(&limits, class, &m.name, &a, v, at));
                    if taken {
                        applied.accepted += 1;
                    } else {
                        applied.rejected += 1;
                    }
                }
            }
            node.settle(&node_name, &limits, now_ns);
        }
        self.series = series;
        self.take_sizing(sizing, now_ns);
        self.stats.points_accepted += applied.accepted;
        self.stats.points_rejected += applied.rejected;
        self.count_bound(Bound::PointsFuture, future);
        self.count_bound(Bound::PointsTooOld, old);
        self.count_bound(Bound::SeriesMax, applied.over_series);
        applied
    }

    /// Counts the spans of one OTLP traces export per node.
    pub fn apply_traces(&mut self, req: &ExportTraceServiceRequest, now: SystemTime) -> Applied {
        self.apply_traces_as(req, now, &|_, _| Ok(()))
    }

    /// As [`Fleet::apply_traces`], for the resources `allow` accepts (see
    /// [`Fleet::apply_metrics_as`]).
    pub fn apply_traces_as(
        &mut self,
        req: &ExportTraceServiceRequest,
        now: SystemTime,
        allow: &Allow<'_>,
    ) -> Applied {
        self.generation += 1;
        let (limits, now_ns) = (self.limits, ns(now));
        let mut applied = Applied::default();
        let mut created = 0;
        for rs in &req.resource_spans {
            let res = resource_attributes(rs.resource.as_ref());
            let n: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
            if let Err(reason) = claim(allow, &res) {
                self.reject_request(reason);
                applied.rejected += n;
                continue;
            }
            match self.node(&res, now, &mut created) {
                Some((node, (_, name))) => {
                    node.spans += n;
                    node.settle(&name, &limits, now_ns);
                    applied.accepted += n;
                }
                None => applied.rejected += n,
            }
        }
        self.stats.spans_received += applied.accepted;
        applied
    }

    /// Removes nodes silent for longer than `node_expiry` and windows older than an hour.
    /// Returns how many nodes were left as they were because a [`View`] still reads them:
    /// call again shortly (views live for one snapshot).
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let expiry = self.limits.node_expiry;
        let cuts = Cuts {
            oldest: ns(now).saturating_sub(HISTORY.as_nanos() as u64),
            history_start: ns(now).saturating_sub(self.limits.workload_history.as_nanos() as u64),
            silent_since: ns(now).saturating_sub(expiry.as_nanos() as u64),
        };
        self.generation += 1;
        let mut parts_expired = 0;
        let mut removed = 0;
        let mut series = 0;
        let mut busy = 0;
        for nodes in self.clusters.values_mut() {
            nodes.retain(|_, n| {
                let keep = now.duration_since(n.last_seen).unwrap_or_default() <= expiry;
                removed += usize::from(!keep);
                series += if keep { 0 } else { n.metrics.series() };
                keep
            });
            for (name, n) in nodes.iter_mut() {
                // Copying a node a view holds only to expire it would double the fleet's
                // memory during a snapshot: it waits for the next call instead.
                let Some(n) = Arc::get_mut(n) else {
                    busy += 1;
                    continue;
                };
                n.interfaces.expire(&cuts);
                let gone =
                    n.listeners.expire(&cuts) + n.probes.expire(&cuts) + n.storage.expire(&cuts);
                // A pod gone is gone from the node's snapshot now, not at its next report.
                // (Windows leaving the hour are not: the snapshot stays as of the report.)
                if gone > 0 && n.lean.is_some() {
                    n.settle(name, &self.limits, ns(now));
                }
                parts_expired += gone as u64;
            }
        }
        self.clusters.retain(|_, nodes| !nodes.is_empty());
        self.nodes -= removed;
        self.series -= series;
        self.stats.nodes_expired += removed as u64;
        self.stats.listeners_probes_expired += parts_expired;
        busy
    }

    /// Changes so far: a snapshot taken at the same generation is still current.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The fleet as it is now, to read after the lock is let go: the nodes are shared, not
    /// copied (a node changed meanwhile is copied by the change), so taking a view of 5 000
    /// nodes holds the lock for about a millisecond.
    pub fn view(&self) -> View {
        View {
            limits: self.limits,
            clusters: self.clusters.clone(),
            nodes: self.nodes,
            generation: self.generation,
            stats: self.stats.clone(),
            sizing: self.sizing_summary.clone(),
            workloads: None,
        }
    }

    /// The read-only view of the whole fleet at `now`, with every window of the last hour.
    pub fn snapshot(&self, now: SystemTime) -> FleetSnapshot {
        self.view().snapshot(now)
    }

    /// See [`View::snapshot_with`].
    pub fn snapshot_with(&self, now: SystemTime, history: bool) -> FleetSnapshot {
        self.view().snapshot_with(now, history)
    }

    /// See [`View::snapshot_lean`].
    pub fn snapshot_lean(&self, now: SystemTime) -> FleetSnapshot {
        self.view().snapshot_lean(now)
    }

    /// See [`View::page`].
    pub fn page(&self, now: SystemTime, q: &PageQuery) -> FleetSnapshot {
        self.view().page(now, q)
    }
}
