//! Listeners: workers, busy workers, accept queues and saturated time per listening socket.

use super::points::*;
use crate::sources::listeners::ListenerReport;

/// Listener attributes (signals crate docs); empty strings where unknown.
fn attributes(l: &ListenerReport) -> Vec<KeyValue> {
    let (ns, pod, container) = identity::listener(l);
    let (kind, name) = identity::workload(l.workload.as_ref());
    vec![
        kv(attr::NAMESPACE, ns),
        kv(attr::POD, pod),
        kv(attr::CONTAINER, container),
        kv(attr::PORT, &l.port.to_string()),
        kv(attr::PROCESS, &l.process),
        kv(attr::WORKLOAD_KIND, kind),
        kv(attr::WORKLOAD, name),
    ]
}

/// `process_start` starts the listeners' cumulative saturated seconds.
pub fn metrics(report: &Report, w: Span) -> Vec<Metric> {
    // Listeners sharing attributes (an IPv4 and an IPv6 socket on one port) are one series:
    // the one with the most workers, then the busiest, as on /metrics.
    let mut listeners: Vec<(Vec<KeyValue>, &ListenerReport)> = Vec::new();
    for l in &report.listeners {
        let a = attributes(l);
        match listeners.iter_mut().find(|(b, _)| *b == a) {
            Some(e) if (l.workers, l.busy_mean) > (e.1.workers, e.1.busy_mean) => e.1 = l,
            Some(_) => {}
            None => listeners.push((a, l)),
        }
    }
    if listeners.is_empty() {
        return vec![];
    }
    let (mut workers, mut busy, mut busy_max, mut queue, mut backlog, mut saturated) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (a, l) in &listeners {
        let (s, e) = (w.start, w.end);
        workers.push(point(a, s, e, AsInt(l.workers.into())));
        busy.push(point(a, s, e, AsDouble(l.busy_mean)));
        busy_max.push(point(a, s, e, AsInt(l.busy_max.into())));
        queue.push(point(a, s, e, AsInt(l.queue_max.into())));
        backlog.push(point(a, s, e, AsInt(l.backlog.into())));
        let total = AsDouble(l.saturated_seconds_total);
        saturated.push(point(a, w.process_start, e, total));
    }
    vec![
        number(&metric::WORKERS, workers),
        number(&metric::WORKERS_BUSY, busy),
        number(&metric::WORKERS_BUSY_MAX, busy_max),
        number(&metric::ACCEPT_QUEUE_DEPTH_MAX, queue),
        number(&metric::ACCEPT_QUEUE_BACKLOG, backlog),
        number(&metric::WORKERS_SATURATED_SECONDS, saturated),
    ]
}
