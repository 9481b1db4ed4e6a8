//! The fleet's top DNS names and sources of the last hour (each at the window it peaked in, so
//! a burst is still there after it ended), with each interface's search-expansion share, and
//! what each DNS fix would have saved on each interface as its agent measured it.

use super::html::{eni_cell, esc, MAX_SECTION_ROWS};
use crate::fleet::FleetSnapshot;
use std::fmt::Write;

/// `eni`: whether the tables have an ENI column (some agent knows its ENI ids; the page says
/// once at the top when none does).
pub fn section(h: &mut String, s: &FleetSnapshot, eni: bool) {
    names(h, s, eni);
    sources(h, s, eni);
    savings(h, s, eni);
}

/// One row per interface whose agent measured the fixes: the DNS peak and what NodeLocal
/// DNSCache (mean and busiest second), ndots:2 and FQDNs would have saved.
fn savings(h: &mut String, s: &FleetSnapshot, eni: bool) {
    let mut rows: Vec<_> = s
        .interfaces()
        .filter_map(|(c, n, i)| Some((c, n, i, i.dns.as_ref()?.measured)))
        .filter(|r| r.3.cache_pps.is_some())
        .collect();
    rows.sort_by(|a, b| {
        let p = |r: &(_, _, _, crate::fleet::Savings)| r.3.cache_peak_pps.unwrap_or(0.0);
        p(b).total_cmp(&p(a))
    });
    if rows.is_empty() {
        return;
    }
    h.push_str("<h2>DNS fix savings (measured)</h2>");
    let _ = write!(
        h,
        "<table><thead><tr><th>cluster</th><th>node</th><th>interface</th>{}\
        <th>DNS peak /s</th><th>cacheable share</th><th>node-local cache saves /s (mean)</th>\
        <th>… in the busiest second</th><th>ndots:2 saves /s</th><th>FQDN saves /s</th></tr></thead><tbody>",
        if eni { "<th>ENI</th>" } else { "" }
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (c, n, i, m) in rows.iter().take(MAX_SECTION_ROWS) {
        let peak = i
            .latest
            .as_ref()
            .map(|w| w.dns_peak_pps.unwrap_or(w.peak_pps));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}<td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.name),
            esc(&n.name),
            esc(&i.interface),
            eni_cell(eni, i),
            peak.map_or("-".to_string(), |p| p.to_string()),
            m.cacheable_share
                .map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0)),
            f(m.cache_pps),
            f(m.cache_peak_pps),
            f(m.ndots2_pps),
            f(m.fqdn_pps),
        );
    }
    h.push_str("</tbody></table>");
}

/// The hour's top names, each at the window it peaked in, busiest first; the latest window's
/// count beside it (0: not among the agent's top names now).
fn names(h: &mut String, s: &FleetSnapshot, eni: bool) {
    let mut rows: Vec<_> = s
        .interfaces()
        .filter_map(|(c, n, i)| Some((c, n, i, i.dns.as_ref()?)))
        .flat_map(|(c, n, i, d)| d.top_qnames_hour.iter().map(move |q| (c, n, i, d, q)))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.4.peak.peak_queries));
    h.push_str("<h2 id=\"dns-names\">Top DNS names</h2>");
    if rows.is_empty() {
        h.push_str("<p>No DNS names reported in the last hour.</p>");
        return;
    }
    h.push_str("<p><small>Over the last hour, each name at its busiest report window (the agents' top 10 per window and interface); <i>now</i> is the latest window.</small></p>");
    let _ = write!(
        h,
        "<table><thead><tr><th>name</th><th>peak queries (1 window)</th><th>peaked in window ending</th>\
         <th>windows in top</th><th>queries now</th><th>cluster</th><th>node</th><th>interface</th>{}\
         <th>search-expansion share now</th><th>unanswered now</th></tr></thead><tbody>",
        if eni { "<th>ENI</th>" } else { "" }
    );
    for (c, n, i, d, q) in rows.iter().take(MAX_SECTION_ROWS) {
        let now = d
            .top_qnames
            .iter()
            .find(|l| l.qname == q.qname)
            .map_or(0, |l| l.queries);
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td><small>{}</small></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td>{}\
             <td class=\"n {}\">{:.0}%</td><td class=\"n\">{}</td></tr>",
            esc(&q.qname),
            q.peak.peak_queries,
            esc(&q.peak.peak_window_end),
            q.peak.windows,
            now,
            esc(&c.name),
            esc(&n.name),
            esc(&i.interface),
            eni_cell(eni, i),
            if d.search_expansion_share >= 0.5 { "warn" } else { "ok" },
            d.search_expansion_share * 100.0,
            d.unanswered_latest,
        );
    }
    h.push_str("</tbody></table>");
}

/// The hour's top sources (pods, or addresses without one), each at its busiest window.
fn sources(h: &mut String, s: &FleetSnapshot, eni: bool) {
    let mut rows: Vec<_> = s
        .interfaces()
        .filter_map(|(c, n, i)| Some((c, n, i, i.dns.as_ref()?)))
        .flat_map(|(c, n, i, d)| d.top_sources_hour.iter().map(move |q| (c, n, i, q)))
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.3.peak.peak_queries));
    let _ = write!(
        h,
        "<h2 id=\"dns-sources\">Top DNS sources</h2><table><thead><tr><th>source</th><th>pod</th><th>workload</th>\
         <th>peak queries (1 window)</th><th>peaked in window ending</th><th>windows in top</th>\
         <th>cluster</th><th>node</th><th>interface</th>{}</tr></thead><tbody>",
        if eni { "<th>ENI</th>" } else { "" }
    );
    for (c, n, i, q) in rows.iter().take(MAX_SECTION_ROWS) {
        let pod = if q.pod.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", q.namespace, q.pod)
        };
        let workload = if q.workload.is_empty() {
            "-".to_string()
        } else {
            format!("{} {}", q.workload_kind, q.workload)
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td><small>{}</small></td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            esc(&q.source),
            esc(&pod),
            esc(&workload),
            q.peak.peak_queries,
            esc(&q.peak.peak_window_end),
            q.peak.windows,
            esc(&c.name),
            esc(&n.name),
            esc(&i.interface),
            eni_cell(eni, i),
        );
    }
    h.push_str("</tbody></table>");
}
