//! Listeners (a prefork server's listening socket in a pod), the collector side: per report
//! window the workers, busy mean and max, accept queue depth and backlog, and the saturated
//! seconds counter, over `workload_history`; the workload sums read them (see
//! [`super::workloads`]).

use super::limits::Limits;
use super::otlp::{attr_or_empty, get, set_from, Attrs};
use super::store::{At, Count, Cuts, Part, Small, Windows};
use crate::time::rfc3339;
use headroom_signals::attr;
use serde::Serialize;
use std::time::Duration;

otlp_names! {
    pub fn takes;
    WORKERS, WORKERS_BUSY, WORKERS_BUSY_MAX, ACCEPT_QUEUE_DEPTH_MAX, ACCEPT_QUEUE_BACKLOG,
    WORKERS_SATURATED_SECONDS
}

/// (namespace, pod, container, port)
pub type ListenerKey = (String, String, String, u16);

/// One listener's report windows over `workload_history`.
#[derive(Debug, Default)]
pub struct Listener {
    pub process: String,
    pub workload_kind: String,
    pub workload: String,
    pub windows: Windows<ListenerWindow>,
}

/// One listener window in 48 bytes (see [`Small`]).
#[derive(Debug, Clone, Copy)]
pub struct ListenerWindow {
    pub start: u64,
    /// The saturated-seconds counter: its start and value at the window's end (NaN = none).
    pub saturated_start: u64,
    pub saturated: f64,
    pub busy: Small,
    pub workers: Count,
    pub busy_max: Count,
    pub queue_max: Count,
    pub backlog: Count,
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
    pub fn saturated(&self) -> Option<(u64, f64)> {
        (!self.saturated.is_nan()).then_some((self.saturated_start, self.saturated))
    }
}

impl Part for Listener {
    type Key = ListenerKey;

    fn key(a: &Attrs) -> Option<ListenerKey> {
        let port = get(a, attr::PORT).and_then(|p| p.parse::<u16>().ok())?;
        Some((
            attr_or_empty(a, attr::NAMESPACE),
            attr_or_empty(a, attr::POD),
            attr_or_empty(a, attr::CONTAINER),
            port,
        ))
    }

    fn max_age(limits: &Limits) -> Duration {
        limits.workload_history
    }

    fn max_per_node(limits: &Limits) -> usize {
        limits.max_listeners_per_node
    }

    fn take(&mut self, name: &str, a: &Attrs, v: f64, at: At) -> bool {
        let newest = self.windows.last().map(|(e, _)| e).unwrap_or(0);
        if at.end >= newest {
            set_from(
                a,
                [
                    (&mut self.process, attr::PROCESS),
                    (&mut self.workload_kind, attr::WORKLOAD_KIND),
                    (&mut self.workload, attr::WORKLOAD),
                ],
            );
        }
        self.windows.record(at.end, |w| {
            match name {
                WORKERS => w.workers = Count::of(v),
                WORKERS_BUSY => w.busy = Small::of(v.max(0.0)),
                WORKERS_BUSY_MAX => w.busy_max = Count::of(v),
                ACCEPT_QUEUE_DEPTH_MAX => w.queue_max = Count::of(v),
                ACCEPT_QUEUE_BACKLOG => w.backlog = Count::of(v),
                _ => {
                    w.saturated_start = at.start;
                    w.saturated = v;
                }
            }
            if name != WORKERS_SATURATED_SECONDS && at.start != 0 {
                w.start = at.start;
            }
        });
        true
    }

    fn expire(&mut self, cuts: &Cuts) -> bool {
        self.windows.prune_keeping_base(cuts.history_start);
        self.windows
            .last()
            .is_some_and(|(end, _)| end >= cuts.silent_since)
    }
}

impl Listener {
    /// The listener in its latest window; None without a window.
    pub fn snapshot(&self, key: &ListenerKey) -> Option<ListenerSnapshot> {
        let (end, w) = self.windows.last()?;
        let workers = w.workers.get().unwrap_or(0);
        let busy_max = w.busy_max.get().unwrap_or(0);
        Some(ListenerSnapshot {
            namespace: key.0.clone(),
            pod: key.1.clone(),
            container: key.2.clone(),
            port: key.3,
            process: self.process.clone(),
            workload_kind: self.workload_kind.clone(),
            workload: self.workload.clone(),
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
            time: rfc3339(end),
        })
    }
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
