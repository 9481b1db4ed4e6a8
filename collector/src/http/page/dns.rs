//! The fleet's top DNS names, with each interface's search-expansion share.

use super::html::{esc, MAX_SECTION_ROWS};
use crate::fleet::FleetSnapshot;
use std::fmt::Write;

pub fn section(h: &mut String, s: &FleetSnapshot) {
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
