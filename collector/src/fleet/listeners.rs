//! Listeners (a server's listening socket in a pod, TCP or unix), the collector side: per
//! report window the workers, busy mean and max, accept queue depth and backlog, and the
//! saturated seconds counter, and the accepted connections per second of the listener's
//! namespace (the request rate), over `workload_history`; the workload sums read them (see
//! [`super::workloads`]). Threads per worker, the serving model, the connections held and the
//! busiest second of accepts are kept from the newest window only: they describe the server,
//! and no sum reads their history (this keeps a window at 48 bytes); whether connections are
//! requests is kept as the end of the newest window that said they were not.

use super::limits::Limits;
use super::otlp::{attr_or_empty, get, set_from, Attrs};
use super::store::{At, Count, Cuts, Part, Small};
use super::windows::{self, Packed, Windows};
use crate::time::rfc3339;
use headroom_signals::attr;
use serde::Serialize;
use std::time::Duration;

otlp_names! {
    pub fn takes;
    WORKERS, WORKERS_BUSY, WORKERS_BUSY_MAX, ACCEPT_QUEUE_DEPTH_MAX, ACCEPT_QUEUE_BACKLOG,
    WORKERS_SATURATED_SECONDS, WORKERS_THREADS, WORKERS_CAPACITY, LISTENER_CONNECTIONS,
    LISTENER_CONNECTIONS_MAX, LISTENER_ACCEPTS, LISTENER_ACCEPTS_MAX
}

/// (namespace, pod, container, endpoint): the endpoint is the TCP port in decimal, or a unix
/// listener's socket path (the agent sends `port` empty and `address` = the path).
pub type ListenerKey = (String, String, String, String);

pub use headroom_signals::Model;

/// One listener's report windows over `workload_history`, and what the newest says about
/// the server.
#[derive(Debug, Clone, Default)]
pub struct Listener {
    pub process: String,
    pub workload_kind: String,
    pub workload: String,
    pub model: Model,
    /// Whether the agent found the threads per worker stated (false: assumed 1).
    pub threads_known: bool,
    /// Threads per worker in the newest window that sent it (0 = never sent: an older agent).
    pub threads: u32,
    /// Mean and most accepted connections the listener's processes held, newest window.
    pub connections: f64,
    pub connections_max: u32,
    /// Busiest second of accepted connections, newest window (0: none sent).
    pub accepts_max: f64,
    /// End of the newest window whose points said connections are not requests
    /// (`requests_are_connections` "false"); 0: none did.
    pub not_requests_at: u64,
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
    /// Accepted connections per second in the listener's namespace (the request rate).
    pub accepts: Small,
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
            accepts: Small::default(),
        }
    }
}

impl Packed for ListenerWindow {
    type Summary = ();

    fn pack(&self, end: u64, prev: &Self, prev_end: u64, out: &mut Vec<u8>) {
        windows::put_start(out, self.start, end, prev.start, prev_end);
        windows::put_xor(out, self.saturated_start, prev.saturated_start);
        windows::put_xor(out, self.saturated.to_bits(), prev.saturated.to_bits());
        windows::put_xor(out, self.busy.bits(), prev.busy.bits());
        windows::put_xor(out, self.accepts.bits(), prev.accepts.bits());
        for (a, b) in self.counts().into_iter().zip(prev.counts()) {
            windows::put_xor(out, a.bits(), b.bits());
        }
    }

    fn unpack(end: u64, prev: &Self, prev_end: u64, input: &mut &[u8]) -> Option<Self> {
        let start = windows::start(input, end, prev.start, prev_end)?;
        let saturated_start = windows::xor(input, prev.saturated_start)?;
        let saturated = f64::from_bits(windows::xor(input, prev.saturated.to_bits())?);
        let busy = Small::from_bits(windows::xor(input, prev.busy.bits())?);
        let accepts = Small::from_bits(windows::xor(input, prev.accepts.bits())?);
        let mut c = prev.counts();
        for x in &mut c {
            *x = Count::from_bits(windows::xor(input, x.bits())?);
        }
        let [workers, busy_max, queue_max, backlog] = c;
        Some(ListenerWindow {
            start,
            saturated_start,
            saturated,
            busy,
            workers,
            busy_max,
            queue_max,
            backlog,
            accepts,
        })
    }
}

impl ListenerWindow {
    fn counts(&self) -> [Count; 4] {
        [self.workers, self.busy_max, self.queue_max, self.backlog]
    }

    pub fn saturated(&self) -> Option<(u64, f64)> {
        (!self.saturated.is_nan()).then_some((self.saturated_start, self.saturated))
    }
}

impl Part for Listener {
    type Key = ListenerKey;

    fn key(a: &Attrs) -> Option<ListenerKey> {
        let endpoint = match get(a, attr::PORT).filter(|p| !p.is_empty()) {
            Some(p) => p.parse::<u16>().ok()?.to_string(),
            None => get(a, attr::ADDRESS).filter(|p| !p.is_empty())?.to_string(),
        };
        Some((
            attr_or_empty(a, attr::NAMESPACE),
            attr_or_empty(a, attr::POD),
            attr_or_empty(a, attr::CONTAINER),
            endpoint,
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
            if let Some(m) = get(a, attr::MODEL).and_then(Model::parse) {
                self.model = m;
            }
            if let Some(k) = get(a, attr::THREADS_KNOWN) {
                self.threads_known = k == "true";
            }
            match name {
                WORKERS_THREADS => self.threads = Count::of(v).get().unwrap_or(0),
                LISTENER_ACCEPTS_MAX => self.accepts_max = v.max(0.0),
                LISTENER_CONNECTIONS => self.connections = v.max(0.0),
                LISTENER_CONNECTIONS_MAX => self.connections_max = Count::of(v).get().unwrap_or(0),
                _ => {}
            }
        }
        if get(a, attr::REQUESTS_ARE_CONNECTIONS) == Some("false") {
            self.not_requests_at = self.not_requests_at.max(at.end);
        }
        self.windows.record(at.end, |w| {
            match name {
                // Kept on the listener (above); capacity is workers × threads.
                WORKERS_THREADS
                | WORKERS_CAPACITY
                | LISTENER_CONNECTIONS
                | LISTENER_CONNECTIONS_MAX
                | LISTENER_ACCEPTS_MAX => {}
                LISTENER_ACCEPTS => w.accepts = Small::of(v.max(0.0)),
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
    /// Requests one worker serves at once: the agent's figure, 1 from agents before it.
    pub fn threads_per_worker(&self) -> u32 {
        self.threads.max(1)
    }

    /// The listener in its latest window; None without a window.
    pub fn snapshot(&self, key: &ListenerKey) -> Option<ListenerSnapshot> {
        let (end, w) = self.windows.last()?;
        let workers = w.workers.get().unwrap_or(0);
        let busy_max = w.busy_max.get().unwrap_or(0);
        let threads = self.threads_per_worker();
        let capacity = workers.saturating_mul(threads);
        let port = key.3.parse::<u16>().ok();
        Some(ListenerSnapshot {
            namespace: key.0.clone(),
            pod: key.1.clone(),
            container: key.2.clone(),
            port,
            address: if port.is_none() {
                key.3.clone()
            } else {
                String::new()
            },
            process: self.process.clone(),
            workload_kind: self.workload_kind.clone(),
            workload: self.workload.clone(),
            model: self.model,
            workers,
            threads,
            threads_known: self.threads_known,
            capacity,
            connections: self.connections,
            connections_max: self.connections_max,
            accepts_per_second: w.accepts.get(),
            accepts_per_second_max: w.accepts.get().map(|mean| self.accepts_max.max(mean)),
            requests_are_connections: self.not_requests_at < end,
            busy: w.busy.get().unwrap_or(0.0),
            busy_max,
            queue_max: w.queue_max.get().unwrap_or(0),
            backlog: w.backlog.get().unwrap_or(0),
            utilization: if capacity > 0 {
                f64::from(busy_max) / f64::from(capacity)
            } else {
                0.0
            },
            saturated_seconds_total: w.saturated().map(|s| s.1).unwrap_or(0.0),
            time: rfc3339(end),
        })
    }
}

/// One listener (a server's listening socket) in its latest window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ListenerSnapshot {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The TCP port; null for a unix listener.
    pub port: Option<u16>,
    /// A unix listener's socket path; empty for TCP.
    pub address: String,
    pub process: String,
    pub workload_kind: String,
    pub workload: String,
    /// prefork | threaded | event_loop. An event loop has no worker figures (all 0): its
    /// load is `connections`.
    pub model: Model,
    pub workers: u32,
    /// Requests one worker serves at once (1 for prefork; `threads_known` false: assumed).
    pub threads: u32,
    pub threads_known: bool,
    /// workers × threads: requests the listener serves at once.
    pub capacity: u32,
    /// Mean and most accepted connections held over the latest window.
    pub connections: f64,
    pub connections_max: u32,
    /// Accepted TCP connections per second in the listener's network namespace over the
    /// latest window, and its busiest second (null from agents that send none).
    pub accepts_per_second: Option<f64>,
    pub accepts_per_second_max: Option<f64>,
    /// False when the latest window said a front keeps connections open (the agent's
    /// `requests_are_connections`).
    pub requests_are_connections: bool,
    /// Mean requests in service over the latest window (busy threads for threaded servers).
    pub busy: f64,
    pub busy_max: u32,
    pub queue_max: u32,
    pub backlog: u32,
    /// busy_max / capacity.
    pub utilization: f64,
    /// Cumulative seconds with every worker busy (the agent's counter).
    pub saturated_seconds_total: f64,
    /// End of the latest window (RFC 3339).
    pub time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a listener window reads back after the window is sealed and packed.
    #[test]
    fn windows_read_back_after_packing() {
        let mut w: Windows<ListenerWindow> = Windows::default();
        let want: Vec<(u64, ListenerWindow)> = (1..=80u64)
            .map(|i| {
                let end = i * 10_000_000_000 + i * 7;
                let lw = ListenerWindow {
                    start: end - 10_000_000_000,
                    saturated_start: 5,
                    saturated: i as f64 * 0.25,
                    busy: Small::of(i as f64 / 3.0),
                    workers: Count::of((i % 4) as f64),
                    busy_max: Count::of(3.0),
                    queue_max: if i % 5 == 0 {
                        Count::default()
                    } else {
                        Count::of(i as f64)
                    },
                    backlog: Count::of(128.0),
                    accepts: Small::of(20.0 + (i % 3) as f64),
                };
                (end, lw)
            })
            .collect();
        for (end, lw) in &want {
            w.record(*end, |x| *x = *lw);
        }
        let got: Vec<(u64, ListenerWindow)> = w.iter().collect();
        assert_eq!(got.len(), want.len());
        for ((ge, g), (we, x)) in got.iter().zip(&want) {
            assert_eq!(ge, we);
            assert_eq!(
                (
                    g.start,
                    g.saturated_start,
                    g.saturated.to_bits(),
                    g.busy,
                    g.workers
                ),
                (
                    x.start,
                    x.saturated_start,
                    x.saturated.to_bits(),
                    x.busy,
                    x.workers
                )
            );
            assert_eq!(
                (g.busy_max, g.queue_max, g.backlog, g.accepts),
                (x.busy_max, x.queue_max, x.backlog, x.accepts)
            );
        }
    }
}
