//! The probes closest to their timeout.

use super::html::{esc, MAX_SECTION_ROWS};
use crate::fleet::{FleetSnapshot, ProbeSnapshot};
use std::fmt::Write;

pub fn section(h: &mut String, s: &FleetSnapshot) {
    let mut rows: Vec<_> = s.probes().collect();
    rows.sort_by(|a, b| ProbeSnapshot::order(a.2, b.2));
    h.push_str("<h2>Probes closest to their timeout</h2>");
    if rows.is_empty() {
        h.push_str("<p>No shadowed probes reported yet.</p>");
        return;
    }
    h.push_str("<table><thead><tr><th>cluster</th><th>node</th><th>pod</th><th>container</th><th>probe</th>\
        <th>p99 ms</th><th>max ms</th><th>timeout s</th><th>headroom</th><th>attempts</th><th>slow</th>\
        <th>timeouts</th><th>errors</th><th>predicted removals</th></tr></thead><tbody>");
    for (c, n, p) in rows.iter().take(MAX_SECTION_ROWS) {
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{:.0}", v * 1000.0))
                .unwrap_or("-".into())
        };
        let count = |r: &str| p.attempts.get(r).copied().unwrap_or(0);
        let class = match p.headroom {
            Some(x) if x < 1.25 => "crit",
            Some(x) if x < 2.0 => "warn",
            _ => "ok",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n {class}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n {}\">{}</td><td class=\"n\">{}</td><td class=\"n {}\">{}</td></tr>",
            esc(&c.name),
            esc(&n.name),
            esc(&p.namespace),
            esc(&p.pod),
            esc(&p.container),
            esc(&p.probe),
            ms(p.latency_p99_seconds),
            ms(p.latency_max_seconds),
            p.timeout_seconds,
            p.headroom.map(|x| format!("{x:.2}×")).unwrap_or("-".into()),
            p.attempts.values().sum::<u64>(),
            count("slow"),
            if count("timeout") > 0 { "warn" } else { "ok" },
            count("timeout"),
            count("error"),
            if p.predicted_removals > 0 { "crit" } else { "ok" },
            p.predicted_removals,
        );
    }
    h.push_str("</tbody></table>");
}
