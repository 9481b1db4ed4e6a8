//! Workloads, the collector side: each Deployment, StatefulSet, … with listeners on any node
//! of a cluster, its pods' busy workers added up per report window (see
//! [`aggregate::busy_sum_values`] for how pods on different nodes add up), over `workload_history`.
//! Event loops (nginx, Node) have no busy workers and are left out: a workload is its worker
//! pools, so a pod's nginx sidecar does not add to, or dilute, its app's figures. The request
//! rate (accepted connections per second of each pod's network namespace) is summed the same
//! way, one listener per pod (a pod's listeners carry the same namespace figure).

use super::aggregate::{self, BusyWindow, CounterPoint};
use super::listeners::{Listener, ListenerKey, Model};
use super::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// Every workload of a cluster from its nodes' listeners, given as (node name, listeners).
pub fn workloads<'a>(
    nodes: impl Iterator<Item = (&'a str, &'a Store<Listener>)>,
    history_start: u64,
) -> Vec<WorkloadSnapshot> {
    type Member<'a> = (&'a str, &'a ListenerKey, &'a Listener);
    let mut groups: BTreeMap<(String, String, String), Vec<Member>> = BTreeMap::new();
    for (node, listeners) in nodes {
        for (key, l) in listeners
            .iter()
            .filter(|(_, l)| l.model != Model::EventLoop)
        {
            groups
                .entry(workload_of(key, l))
                .or_default()
                .push((node, key, l));
        }
    }
    groups
        .into_iter()
        .map(|((namespace, kind, name), members)| {
            // One pass over each listener's windows: its busy and request-rate windows, and
            // the deepest queue, saturated seconds and span (no copy of the windows: a
            // DaemonSet on 5 000 nodes has 450 000 of them).
            let mut busy: Vec<Vec<BusyWindow>> = Vec::with_capacity(members.len());
            let mut accepts: Vec<Vec<BusyWindow>> = Vec::with_capacity(members.len());
            let mut queue_max = 0;
            let mut saturated = 0.0;
            let (mut first, mut last) = (u64::MAX, 0);
            for (_, _, l) in &members {
                let (mut b, mut r) = (Vec::new(), Vec::new());
                let mut prev: Option<CounterPoint> = None;
                for (end, w) in l.windows.iter() {
                    let start = if w.start == 0 { end } else { w.start };
                    if let Some(v) = w.busy.get() {
                        b.push(BusyWindow {
                            start,
                            end,
                            busy: v,
                        });
                    }
                    if let Some(v) = w.accepts.get() {
                        r.push(BusyWindow {
                            start,
                            end,
                            busy: v,
                        });
                    }
                    let in_span = end >= history_start;
                    if in_span {
                        queue_max = queue_max.max(w.queue_max.get().unwrap_or(0));
                        first = first.min(start);
                        last = last.max(end);
                    }
                    if let Some((start, value)) = w.saturated() {
                        let p = CounterPoint { end, start, value };
                        if in_span {
                            saturated += aggregate::rise(prev.as_ref(), &p, history_start);
                        }
                        prev = Some(p);
                    }
                }
                b.shrink_to_fit();
                r.shrink_to_fit();
                busy.push(b);
                accepts.push(r);
            }
            let frontier = aggregate::frontier(&busy).unwrap_or(0);
            let sums = aggregate::busy_sum_values(&busy, history_start, frontier);
            let rates = request_sums(&members, accepts, history_start, frontier);
            let not_requests = members
                .iter()
                .any(|(_, _, l)| l.not_requests_at != 0 && l.not_requests_at >= history_start);
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
            let workers_per_pod = aggregate::mode(
                current
                    .iter()
                    .filter_map(|(_, _, l)| l.windows.last().and_then(|(_, w)| w.workers.get())),
            );
            let capacity_per_pod = aggregate::mode(current.iter().filter_map(|(_, _, l)| {
                let workers = l.windows.last().and_then(|(_, w)| w.workers.get())?;
                Some(workers.saturating_mul(l.threads_per_worker()))
            }));
            let threads_per_worker =
                aggregate::mode(current.iter().map(|(_, _, l)| l.threads_per_worker()));
            let threaded = current.iter().any(|(_, _, l)| l.model == Model::Threaded);
            let threads_known = current.iter().all(|(_, _, l)| l.threads_known);
            let n = sums.len();
            WorkloadSnapshot {
                namespace,
                kind,
                name,
                pods,
                workers_per_pod,
                threads_per_worker,
                threads_known,
                capacity_per_pod,
                model: if threaded {
                    Model::Threaded
                } else {
                    Model::Prefork
                },
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
                requests_per_second_latest: rates.last().copied(),
                requests_per_second_mean: (!rates.is_empty())
                    .then(|| rates.iter().sum::<f64>() / rates.len() as f64),
                requests_per_second_p95: (!rates.is_empty()).then(|| aggregate::p95(&rates)),
                requests_per_second_max: (!rates.is_empty())
                    .then(|| rates.iter().copied().fold(0.0, f64::max)),
                requests_are_connections: !not_requests,
            }
        })
        .collect()
}

/// The workload's request rate at every window end up to `frontier`, as [`aggregate::busy_sum_values`]
/// adds busy workers: from each pod the accepted connections per second of the window in
/// effect then, one listener per pod (the one with the most windows carrying the figure; a
/// pod's listeners share their namespace's). Empty when no pod sent the figure.
fn request_sums(
    members: &[(&str, &ListenerKey, &Listener)],
    mut accepts: Vec<Vec<BusyWindow>>,
    history_start: u64,
    frontier: u64,
) -> Vec<f64> {
    let mut per_pod: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for (i, ((node, key, _), windows)) in members.iter().zip(&accepts).enumerate() {
        // A listener outside pods is its own (host processes share the node's namespace but
        // are different workloads already).
        let pod = if key.1.is_empty() { key.3.as_str() } else { "" };
        let slot = per_pod.entry((node, key.1.as_str(), pod)).or_insert(i);
        if windows.len() > accepts[*slot].len() {
            *slot = i;
        }
    }
    let pods: Vec<Vec<BusyWindow>> = per_pod
        .into_values()
        .map(|i| std::mem::take(&mut accepts[i]))
        .filter(|w| !w.is_empty())
        .collect();
    drop(accepts);
    if pods.is_empty() {
        return Vec::new();
    }
    aggregate::busy_sum_values(&pods, history_start, frontier)
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
    /// Requests one worker serves at once (pool threads; 1 for prefork), the most common.
    pub threads_per_worker: u32,
    /// Whether every pod's server stated its threads (false: some assumed 1).
    pub threads_known: bool,
    /// Requests a pod serves at once, workers × threads (the most common figure): what
    /// HPAOverScaling and the saturation ranking divide busy by.
    pub capacity_per_pod: u32,
    /// threaded when any current pod's listener is, else prefork.
    pub model: Model,
    /// Requests in service (busy workers, or busy threads for threaded servers) summed over
    /// the workload's pods: the latest window, then mean, p95 and max of that sum over the
    /// windows of `history_seconds`.
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
    /// Requests per second summed over the workload's pods (each pod's accepted TCP
    /// connections per second, from the agent), at the same instants as the busy sums: the
    /// latest, then mean, p95 and max over `history_seconds`. Null when no pod's agent sends
    /// the figure.
    pub requests_per_second_latest: Option<f64>,
    pub requests_per_second_mean: Option<f64>,
    pub requests_per_second_p95: Option<f64>,
    pub requests_per_second_max: Option<f64>,
    /// False when any pod's agent said, within `history_seconds`, that a front keeps
    /// connections open (connections are then not requests, and the rate is not to be trusted).
    pub requests_are_connections: bool,
}
