//! The most saturated workloads: busy p95 over their workers.

use super::html::{esc, util_class, MAX_SECTION_ROWS};
use crate::fleet::{FleetSnapshot, WorkloadSnapshot};
use std::fmt::Write;

/// busy p95 over the workload's workers (workers per pod × pods); 0 without workers.
pub fn saturation(w: &WorkloadSnapshot) -> f64 {
    let workers = f64::from(w.workers_per_pod) * w.pods.len() as f64;
    if workers > 0.0 {
        w.busy_p95 / workers
    } else {
        0.0
    }
}

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
    if rows.is_empty() {
        h.push_str(
            "<p>No listeners reported yet (prefork servers in pods: gunicorn, uwsgi, puma …).</p>",
        );
        return;
    }
    h.push_str("<table><thead><tr><th>cluster</th><th>workload</th><th>kind</th><th>pods</th><th>workers</th>\
        <th>busy now</th><th>busy mean</th><th>busy p95</th><th>busy max</th><th>p95 / workers</th>\
        <th>queue max</th><th>saturated s</th><th>span</th></tr></thead><tbody>");
    for (c, w) in rows.iter().take(MAX_SECTION_ROWS) {
        let u = saturation(w);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}×{}</td>\
             <td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td>\
             <td class=\"n {}\">{:.0}%</td><td class=\"n {}\">{}</td><td class=\"n\">{:.1}</td><td><small>{:.0} s, {} windows</small></td></tr>",
            esc(&c.name),
            esc(&w.namespace),
            esc(&w.name),
            esc(&w.kind),
            w.pods.len(),
            w.pods.len(),
            w.workers_per_pod,
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
