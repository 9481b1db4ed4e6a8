//! The most saturated workloads: busy p95 over their capacity (workers × threads). Event loops
//! are no workloads here (see `fleet::workloads`): nginx, Node, Envoy, and one process serving
//! alone (redis, a Go or Java server, the agent and the collector themselves), whose load is
//! their connections, not busy workers; the page says so under the title.

use super::html::{esc, util_class, MAX_SECTION_ROWS};
use crate::fleet::{FleetSnapshot, WorkloadSnapshot};
use std::fmt::Write;

/// busy p95 over the workload's capacity (capacity per pod × pods); 0 without workers.
pub fn saturation(w: &WorkloadSnapshot) -> f64 {
    let capacity = f64::from(w.capacity_per_pod) * w.pods.len() as f64;
    if capacity > 0.0 {
        w.busy_p95 / capacity
    } else {
        0.0
    }
}

/// "3×4" (pods × workers) for prefork pools, "3×2×4" with threads, "?" marking threads
/// assumed.
fn capacity_words(w: &WorkloadSnapshot) -> String {
    let pods = w.pods.len();
    if w.threads_per_worker > 1 {
        format!(
            "{pods}×{}×{} threads",
            w.workers_per_pod, w.threads_per_worker
        )
    } else if w.threads_known {
        format!("{pods}×{}", w.workers_per_pod)
    } else {
        format!("{pods}×{} (threads?)", w.workers_per_pod)
    }
}

/// What is ranked and what is not, said once under the title.
pub const EVENT_LOOPS_NOTE: &str = "<p><small>Ranked: worker pools (prefork and threaded: busy workers against \
    workers × threads). Event loops (nginx, Node, Envoy …) and single processes serving alone (redis, Go or Java \
    servers, headroom's own agent and collector) are counted by connections, not busy workers, and not ranked: \
    their listeners are in <a href=\"/api/v1/fleet\">/api/v1/fleet</a> as <code>model: event_loop</code> \
    with <code>connections</code>.</small></p>";

pub fn section(h: &mut String, s: &FleetSnapshot) {
    let mut rows: Vec<_> = s
        .clusters
        .iter()
        .flat_map(|c| c.workloads.iter().map(move |w| (c, w)))
        .collect();
    rows.sort_by(|a, b| {
        saturation(b.1)
            .total_cmp(&saturation(a.1))
            .then(b.1.queue_max.cmp(&a.1.queue_max))
    });
    h.push_str("<h2>Most saturated workloads</h2>");
    h.push_str(EVENT_LOOPS_NOTE);
    if rows.is_empty() {
        h.push_str(
            "<p>No listeners reported yet (prefork servers in pods: gunicorn, uwsgi, puma …).</p>",
        );
        return;
    }
    h.push_str("<table><thead><tr><th>cluster</th><th>workload</th><th>kind</th><th>pods</th><th>capacity</th>\
        <th>busy now</th><th>busy mean</th><th>busy p95</th><th>busy max</th><th>p95 / capacity</th>\
        <th>queue max</th><th>saturated s</th><th>span</th></tr></thead><tbody>");
    for (c, w) in rows.iter().take(MAX_SECTION_ROWS) {
        let u = saturation(w);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td>\
             <td class=\"n {}\">{:.0}%</td><td class=\"n {}\">{}</td><td class=\"n\">{:.1}</td><td><small>{:.0} s, {} windows</small></td></tr>",
            esc(&c.name),
            esc(&w.namespace),
            esc(&w.name),
            esc(&w.kind),
            w.pods.len(),
            esc(&capacity_words(w)),
            w.busy_latest,
            w.busy_mean,
            w.busy_p95,
            w.busy_max,
            util_class(u),
            u * 100.0,
            if w.queue_max > 0 { "warn" } else { "ok" },
            w.queue_max,
            w.saturated_seconds,
            w.history_seconds,
            w.windows,
        );
    }
    h.push_str("</tbody></table>");
}
