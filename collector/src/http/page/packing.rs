//! "Packing": the open NodeGroupPacking findings, largest saving first, each node group with
//! its nodes now → needed, $/month now → after and the DNS headroom the move leaves (the
//! busiest ENI's link-local peak after it against the 1024/s limit and the threshold). Read
//! from the findings engine, not the fleet snapshot.

use super::html::{dollars, esc, open_findings, usd, util_class, MAX_SECTION_ROWS};
use crate::findings::{Findings, Record};
use crate::rules::packing::RULE;
use std::fmt::Write;

fn saving(r: &Record) -> f64 {
    usd(r).unwrap_or(0.0)
}

pub fn section(out: &mut String, findings: &Findings) {
    let engine = findings.lock();
    let mut open = open_findings(&engine, RULE);
    out.push_str("<h2 id=\"packing\">Packing</h2>");
    if open.is_empty() {
        out.push_str("<p>None: no node group would cost less packed at the target utilization without breaking DNS. <small>(Needs Kubernetes access: pods, nodes.)</small></p>");
        return;
    }
    open.sort_by(|a, b| {
        saving(b)
            .total_cmp(&saving(a))
            .then(a.subject.node_group.cmp(&b.subject.node_group))
    });
    let total: f64 = open.iter().map(|r| saving(r)).sum();
    let _ = write!(
        out,
        "<p><strong>{} node group{} could save ${}/month</strong></p>",
        open.len(),
        if open.len() == 1 { "" } else { "s" },
        dollars(total)
    );
    out.push_str("<div class=\"scroll\"><table><thead><tr><th>node group</th><th>nodes now → needed</th><th>$/month now → after</th><th>DNS headroom after</th><th>state</th></tr></thead><tbody>");
    for r in open.iter().take(MAX_SECTION_ROWS) {
        let e = &r.evidence;
        let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let u = |k: &str| e.get(k).and_then(|v| v.as_u64());
        let f = |k: &str| e.get(k).and_then(|v| v.as_f64());
        let dns = match (f("dns_utilization_after"), f("dns_peak_after_pps")) {
            (Some(util), Some(peak)) => format!(
                "<td class=\"n {}\">{:.0}% <small>(busiest ENI ≈ {peak:.0}/s of 1024/s, {:.0}% used; threshold {:.0}%)</small></td>",
                util_class(util),
                (1.0 - util) * 100.0,
                util * 100.0,
                f("dns_threshold").unwrap_or(0.0) * 100.0
            ),
            _ => "<td><small>not measured (no agents)</small></td>".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{} × {} → {} × {}</td><td class=\"n\">${} → ${}</td>{dns}<td>{}</td></tr>",
            esc(r.subject.node_group.as_deref().unwrap_or("-")),
            u("nodes_now").unwrap_or(0),
            esc(&s("instance_type_now")),
            u("nodes_after").unwrap_or(0),
            esc(&s("instance_type_after")),
            dollars(f("usd_per_month_now").unwrap_or(0.0)),
            dollars(f("usd_per_month_after").unwrap_or(0.0)),
            r.state.as_str()
        );
    }
    out.push_str("</tbody></table></div><p><small>Each group's fix (the instance type, the NodePool or node group change, and the NodeLocal DNSCache step when a cheaper move breaks DNS) is in Open findings above and in <a href=\"/api/v1/findings\">/api/v1/findings</a>; $/month is on-demand × 730 h from the instance catalog.</small></p>");
}
