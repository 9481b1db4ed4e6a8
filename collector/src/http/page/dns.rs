//! The fleet's top DNS names, with each interface's search-expansion share, and what each DNS
//! fix would have saved on each interface as its agent measured it.

use super::html::{esc, MAX_SECTION_ROWS};
use crate::fleet::FleetSnapshot;
use std::fmt::Write;

pub fn section(h: &mut String, s: &FleetSnapshot) {
    names(h, s);
    savings(h, s);
}

/// One row per interface whose agent measured the fixes: the DNS peak and what NodeLocal
/// DNSCache (mean and busiest second), ndots:2 and FQDNs would have saved.
fn savings(h: &mut String, s: &FleetSnapshot) {
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
    h.push_str("<table><thead><tr><th>cluster</th><th>node</th><th>interface</th><th>ENI</th>\
        <th>DNS peak /s</th><th>cacheable share</th><th>node-local cache saves /s (mean)</th>\
        <th>… in the busiest second</th><th>ndots:2 saves /s</th><th>FQDN saves /s</th></tr></thead><tbody>");
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (c, n, i, m) in rows.iter().take(MAX_SECTION_ROWS) {
        let peak = i
            .latest
            .as_ref()
            .map(|w| w.dns_peak_pps.unwrap_or(w.peak_pps));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.name),
            esc(&n.name),
            esc(&i.interface),
            esc(i.eni_id.as_deref().unwrap_or("-")),
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

fn names(h: &mut String, s: &FleetSnapshot) {
    let mut rows: Vec<_> = s
        .interfaces()
        .filter_map(|(c, n, i)| Some((c, n, i, i.dns.as_ref()?)))
        .flat_map(|(c, n, i, d)| d.top_qnames.iter().map(move |q| (c, n, i, d, q)))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.4.queries));
    h.push_str("<h2>Top DNS names</h2>");
    if rows.is_empty() {
        h.push_str("<p>No DNS figures reported yet.</p>");
        return;
    }
    h.push_str("<table><thead><tr><th>name</th><th>queries (latest window)</th><th>cluster</th><th>node</th>\
        <th>interface</th><th>ENI</th><th>search-expansion share</th><th>unanswered</th></tr></thead><tbody>");
    for (c, n, i, d, q) in rows.iter().take(MAX_SECTION_ROWS) {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n {}\">{:.0}%</td><td class=\"n\">{}</td></tr>",
            esc(&q.qname),
            q.queries,
            esc(&c.name),
            esc(&n.name),
            esc(&i.interface),
            esc(i.eni_id.as_deref().unwrap_or("-")),
            if d.search_expansion_share >= 0.5 { "warn" } else { "ok" },
            d.search_expansion_share * 100.0,
            d.unanswered_latest,
        );
    }
    h.push_str("</tbody></table>");
}
