//! A view of the fleet taken under its lock and read after: the snapshots the API, the status
//! page, `/metrics` and the rules read are built from a view, so ingest never waits for one.

use super::snapshot::{self, ClusterSnapshot, FleetSnapshot, IngestStats};
use super::{workloads, Limits, Node, PageQuery, WindowFigures, WorkloadSnapshot};
use crate::time::{ns, rfc3339};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The fleet at the instant [`super::Fleet::view`] was called.
pub struct View {
    pub(super) limits: Limits,
    pub(super) clusters: BTreeMap<String, BTreeMap<String, Arc<Node>>>,
    pub(super) nodes: usize,
    pub(super) generation: u64,
    pub(super) stats: IngestStats,
    pub(super) sizing: Arc<super::SizingSummary>,
    /// Each cluster's workloads made earlier (see [`super::LeanCache`]); None: made from the
    /// view's listeners when asked.
    pub(super) workloads: Option<Arc<Workloads>>,
}

/// Each cluster's workloads, by cluster name.
pub type Workloads = BTreeMap<String, Vec<WorkloadSnapshot>>;

impl View {
    /// Every window of the last hour of one interface (what the status page draws for the
    /// interfaces it shows); empty when there is no such interface.
    pub fn interface_windows(
        &self,
        cluster: &str,
        node: &str,
        interface: &str,
        eni: Option<&str>,
    ) -> Vec<WindowFigures> {
        let key = (interface.to_string(), eni.unwrap_or("").to_string());
        self.clusters
            .get(cluster)
            .and_then(|nodes| nodes.get(node))
            .and_then(|n| n.interfaces.iter().find(|(k, _)| **k == key))
            .and_then(|(k, i)| i.snapshot(k, true))
            .map(|s| s.windows)
            .unwrap_or_default()
    }

    /// The fleet's generation when the view was taken (see [`super::Fleet::generation`]).
    pub fn generation(&self) -> u64 {
        self.generation
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

    /// What the rules, `/metrics` and the page read: as `snapshot_with(now, false)` but without
    /// each node's latest-value `metrics` (other senders' series, probe histograms …) and its
    /// list of listeners (the workloads, which sum them, are there), which none of them reads.
    pub fn snapshot_lean(&self, now: SystemTime) -> FleetSnapshot {
        self.build(now, false, false)
    }

    /// Every cluster's workloads at `now`, summed from the nodes' listener windows: at 5 000
    /// nodes the larger part of a snapshot's cost.
    pub fn make_workloads(&self, now: SystemTime) -> Workloads {
        let history_start = self.history_start(now);
        self.clusters
            .iter()
            .map(|(cname, nodes)| (cname.clone(), Self::cluster_workloads(nodes, history_start)))
            .collect()
    }

    fn history_start(&self, now: SystemTime) -> u64 {
        self.limits.history_start(ns(now))
    }

    fn cluster_workloads(
        nodes: &BTreeMap<String, Arc<Node>>,
        history_start: u64,
    ) -> Vec<WorkloadSnapshot> {
        workloads::workloads(
            nodes.iter().map(|(name, n)| (name.as_str(), &n.listeners)),
            history_start,
        )
    }

    /// A cluster's workloads: the ones made earlier when the view has them, else made now.
    fn workloads_of(
        &self,
        cname: &str,
        nodes: &BTreeMap<String, Arc<Node>>,
        history_start: u64,
    ) -> Vec<WorkloadSnapshot> {
        match &self.workloads {
            Some(made) => made.get(cname).cloned().unwrap_or_default(),
            None => Self::cluster_workloads(nodes, history_start),
        }
    }

    fn build(&self, now: SystemTime, history: bool, full: bool) -> FleetSnapshot {
        let to_make = if history || full {
            self.nodes
        } else {
            let now_ns = ns(now);
            let nodes = self.clusters.values().flat_map(|nodes| nodes.values());
            nodes.filter(|n| !n.lean_fresh(now_ns)).count()
        };
        self.build_on(now, history, full, spread_threads(to_make))
    }

    /// As `build`, the nodes' snapshots made on `threads` threads (the calling one among them).
    pub(super) fn build_on(
        &self,
        now: SystemTime,
        history: bool,
        full: bool,
        threads: usize,
    ) -> FleetSnapshot {
        let history_start = self.history_start(now);
        let all: Vec<(&String, &Arc<Node>)> = self.clusters.values().flatten().collect();
        let now_ns = ns(now);
        // The lean snapshot (every evaluation's) gathers what each report made; only nodes
        // silent for longer than `LEAN_FRESH` are made here.
        let mut made = map_spread(&all, threads, |(name, n)| {
            if history || full {
                Arc::new(n.snapshot(name, history, full, history_start))
            } else {
                n.lean(name, &self.limits, now_ns)
            }
        })
        .into_iter();
        let clusters = self
            .clusters
            .iter()
            .map(|(cname, nodes)| ClusterSnapshot {
                name: cname.clone(),
                nodes: made.by_ref().take(nodes.len()).collect(),
                workloads: self.workloads_of(cname, nodes, history_start),
                sizing: self.sizing.get(cname).cloned().unwrap_or_default(),
            })
            .collect();
        FleetSnapshot {
            schema: snapshot::SCHEMA,
            generated_at: rfc3339(ns(now)),
            nodes: self.nodes,
            clusters,
            ingest: self.stats.clone(),
            next: None,
        }
    }

    /// One page of the fleet: at most `q.limit` nodes in (cluster, node) order after
    /// `q.after`, or the one node `q.node`; only those nodes are copied. The workloads (small:
    /// one entry per workload, summed over its pods) of each cluster in the first page, or of
    /// `q.node`'s cluster, come with it.
    pub fn page(&self, now: SystemTime, q: &PageQuery) -> FleetSnapshot {
        use std::ops::Bound::{Excluded, Unbounded};
        let now_ns = ns(now);
        let history_start = self.history_start(now);
        let first = q.after.is_none();
        let mut clusters: Vec<ClusterSnapshot> = Vec::new();
        let mut taken = 0;
        let mut next = None;
        let mut last: Option<(String, String)> = None;
        let start = q.after.as_ref().map(|(c, _)| c.as_str());
        let range = match start {
            Some(c) => self
                .clusters
                .range::<str, _>((std::ops::Bound::Included(c), Unbounded)),
            None => self.clusters.range::<str, _>((Unbounded, Unbounded)),
        };
        'clusters: for (cname, nodes) in range {
            if q.cluster.as_deref().is_some_and(|c| c != cname) {
                continue;
            }
            let iter: Box<dyn Iterator<Item = (&String, &Arc<Node>)>> = match (&q.node, &q.after) {
                (Some(n), _) => Box::new(nodes.get_key_value(n).into_iter()),
                (None, Some((c, after))) if c == cname => {
                    Box::new(nodes.range::<str, _>((Excluded(after.as_str()), Unbounded)))
                }
                _ => Box::new(nodes.iter()),
            };
            let mut c = ClusterSnapshot {
                name: cname.clone(),
                ..ClusterSnapshot::default()
            };
            let mut more = false;
            for (name, n) in iter {
                if taken == q.limit {
                    more = true;
                    break;
                }
                c.nodes
                    .push(Arc::new(n.snapshot(name, q.history, true, history_start)));
                taken += 1;
                last = Some((cname.clone(), name.clone()));
            }
            if first || q.node.is_some() {
                c.workloads = self.workloads_of(cname, nodes, history_start);
            }
            if more {
                next = last.take();
                if !c.nodes.is_empty() {
                    clusters.push(c);
                }
                break 'clusters;
            }
            if !c.nodes.is_empty() || !c.workloads.is_empty() {
                clusters.push(c);
            }
        }
        FleetSnapshot {
            schema: snapshot::SCHEMA,
            generated_at: rfc3339(now_ns),
            nodes: self.nodes,
            clusters,
            ingest: self.stats.clone(),
            next: next.map(|(c, n)| format!("{c}/{n}")),
        }
    }
}

/// Nodes per thread below which a snapshot is not spread over more threads (starting one
/// costs tens of microseconds; a node's snapshot a few).
const NODES_PER_THREAD: usize = 500;

/// How many threads a snapshot of `nodes` nodes is made on: one per [`NODES_PER_THREAD`], at
/// most the CPUs the collector may use (its cgroup's quota counts). A fleet too small for two
/// is not asked about the CPUs (std reads the cgroup's files for that on every call).
fn spread_threads(nodes: usize) -> usize {
    if nodes < 2 * NODES_PER_THREAD {
        return 1;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (nodes / NODES_PER_THREAD).clamp(1, cpus)
}

/// `items` mapped by `f` in order, in contiguous chunks on `threads` threads (the calling
/// thread takes the first). At 5 000 nodes a snapshot is tens of milliseconds of CPU that
/// the evaluation waits for; with two idle cores it waits about half as long.
fn map_spread<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        // A chunk whose thread cannot be started (out of threads) is made here instead.
        let others: Vec<_> = chunks
            .map(|c| {
                std::thread::Builder::new()
                    .name("headroom-snapshot".into())
                    .spawn_scoped(scope, move || c.iter().map(f).collect::<Vec<R>>())
                    .map_err(|_| c)
            })
            .collect();
        let mut out: Vec<R> = first.iter().map(f).collect();
        out.reserve(items.len() - out.len());
        for other in others {
            match other {
                Ok(h) => match h.join() {
                    Ok(part) => out.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(c) => out.extend(c.iter().map(f)),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_keeps_the_order_for_any_split() {
        for len in [0, 1, 2, 7, 100, 1001] {
            let items: Vec<usize> = (0..len).collect();
            let want: Vec<usize> = items.iter().map(|i| i * 3).collect();
            for threads in [0, 1, 2, 3, 8, 2000] {
                assert_eq!(
                    map_spread(&items, threads, |i| i * 3),
                    want,
                    "{len} items on {threads}"
                );
            }
        }
    }

    #[test]
    fn spreading_uses_other_threads_only_for_large_fleets() {
        let on = |items: &[u8], threads| {
            let mut ids = map_spread(items, threads, |_| std::thread::current().id());
            ids.dedup();
            ids.len()
        };
        assert_eq!(on(&[0; 10], 1), 1);
        assert_eq!(on(&[0; 10], 4), 4, "four contiguous chunks, four threads");
        assert_eq!(spread_threads(0), 1);
        assert_eq!(
            spread_threads(NODES_PER_THREAD - 1),
            1,
            "a small fleet stays on one thread"
        );
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(spread_threads(NODES_PER_THREAD * 64), cpus.min(64));
    }
}
