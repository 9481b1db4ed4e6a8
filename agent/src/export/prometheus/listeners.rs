//! Listener metrics on /metrics: workers, busy workers, accept queues, saturated time.

use super::families::*;
use crate::export::identity;
use crate::sources::listeners::ListenerReport;
use std::collections::HashMap;

#[derive(Default)]
pub struct Listeners {
    workers: Family<Labels, Gauge>,
    busy: Family<Labels, F64Gauge>,
    busy_max: Family<Labels, Gauge>,
    queue_max: Family<Labels, Gauge>,
    backlog: Family<Labels, Gauge>,
    saturated: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl Listeners {
    pub fn register(&self, r: &mut Registry) {
        register(r, &metric::WORKERS, self.workers.clone());
        register(r, &metric::WORKERS_BUSY, self.busy.clone());
        register(r, &metric::WORKERS_BUSY_MAX, self.busy_max.clone());
        register(r, &metric::ACCEPT_QUEUE_DEPTH_MAX, self.queue_max.clone());
        register(r, &metric::ACCEPT_QUEUE_BACKLOG, self.backlog.clone());
        register(
            r,
            &metric::WORKERS_SATURATED_SECONDS,
            self.saturated.clone(),
        );
    }

    pub fn update(&self, report: &Report) {
        // Gauges show the listeners of this window only; counters keep their totals.
        self.workers.clear();
        self.busy.clear();
        self.busy_max.clear();
        self.queue_max.clear();
        self.backlog.clear();
        // Listeners that share the labels (an IPv4 and an IPv6 socket on one port, or host
        // processes on one port in several namespaces) show the one with the most workers,
        // then the busiest; the report lists each.
        let mut by_labels: HashMap<Labels, &ListenerReport> = HashMap::new();
        for l in &report.listeners {
            let (ns, pod, container) = identity::listener(l);
            let lb = vec![
                (attr::NAMESPACE, ns.to_string()),
                (attr::POD, pod.to_string()),
                (attr::CONTAINER, container.to_string()),
                (attr::PORT, l.port.to_string()),
            ];
            let e = by_labels.entry(lb).or_insert(l);
            if (l.workers, l.busy_mean) > (e.workers, e.busy_mean) {
                *e = l;
            }
        }
        for (lb, l) in by_labels {
            self.workers.get_or_create(&lb).set(l.workers as i64);
            self.busy.get_or_create(&lb).set(l.busy_mean);
            self.busy_max.get_or_create(&lb).set(l.busy_max as i64);
            self.queue_max.get_or_create(&lb).set(l.queue_max as i64);
            self.backlog.get_or_create(&lb).set(l.backlog as i64);
            let c = self.saturated.get_or_create(&lb);
            let gain = l.saturated_seconds_total - c.get();
            if gain > 0.0 {
                c.inc_by(gain);
            }
        }
    }
}
