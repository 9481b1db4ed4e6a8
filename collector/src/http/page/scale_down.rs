//! "Nodes that cannot be removed": the open ScaleDownBlocked findings, costliest first, each
//! node with its group, requested share, the pods that pin it and why, and its $/month; the
//! total on top ("12 nodes pinned: $6 640/month"). Read from the findings engine, not the
//! fleet snapshot.

use super::html::{dollars, esc, open_findings, usd, MAX_SECTION_ROWS};
use crate::findings::Findings;
use crate::rules::scale_down::RULE;
use std::fmt::Write;

/// Blocking pods shown per node; the rest are counted.
const PODS_SHOWN: usize = 5;

pub fn section(out: &mut String, findings: &Findings) {
    let engine = findings.lock();
    let mut open = open_findings(&engine, RULE);
    out.push_str("<h2 id=\"scale-down\">Nodes that cannot be removed</h2>");
    if open.is_empty() {
        out.push_str("<p>None: every node under the scale-down threshold can be removed. <small>(Needs Kubernetes access: pods, nodes, PodDisruptionBudgets.)</small></p>");
        return;
    }
    open.sort_by(|a, b| {
        usd(b)
            .unwrap_or(-1.0)
            .total_cmp(&usd(a).unwrap_or(-1.0))
            .then(a.subject.node.cmp(&b.subject.node))
    });
    let total: f64 = open.iter().filter_map(|r| usd(r)).sum();
    let unknown = open.iter().filter(|r| usd(r).is_none()).count();
    let _ = write!(
        out,
        "<p><strong>{} node{} pinned: ${}/month</strong>{}</p>",
        open.len(),
        if open.len() == 1 { "" } else { "s" },
        dollars(total),
        if unknown > 0 {
            format!(" <small>(and {unknown} of unknown price: see each node's cost basis)</small>")
        } else {
            String::new()
        }
    );
    out.push_str("<table><thead><tr><th>node</th><th>group</th><th>requested</th><th>blocked by</th><th>$/month</th><th>state</th></tr></thead><tbody>");
    for r in open.iter().take(MAX_SECTION_ROWS) {
        let e = &r.evidence;
        let mut blockers = String::new();
        let pods = e.get("blocking_pods").and_then(|b| b.as_array());
        for b in pods.into_iter().flatten().take(PODS_SHOWN) {
            let who = match (b["namespace"].as_str(), b["pod"].as_str()) {
                (Some(ns), Some(p)) => format!("{ns}/{p}"),
                _ => "the node".into(),
            };
            let _ = write!(
                blockers,
                "{}: {}<br>",
                esc(&who),
                esc(b["reason"].as_str().unwrap_or_default())
            );
        }
        let count = e.get("blockers").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        if count > PODS_SHOWN {
            let _ = write!(blockers, "<small>+{} more</small>", count - PODS_SHOWN);
        }
        let cost = match (usd(r), &r.cost) {
            (Some(m), _) => format!("${}", dollars(m)),
            (None, Some(c)) => format!("<small title=\"{}\">unknown</small>", esc(&c.basis)),
            (None, None) => "<small>unknown</small>".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><small>{}</small></td><td class=\"n\">{:.0}%</td><td><small>{blockers}</small></td><td class=\"n\">{cost}</td><td>{}</td></tr>",
            esc(r.subject.node.as_deref().unwrap_or("-")),
            esc(r.subject.node_group.as_deref().unwrap_or("-")),
            e.get("utilization").and_then(|u| u.as_f64()).unwrap_or(0.0) * 100.0,
            r.state.as_str()
        );
    }
    out.push_str("</tbody></table><p><small>Each node's fixes are in Open findings above and in <a href=\"/api/v1/findings\">/api/v1/findings</a>; $/month is on-demand × 730 h from the instance catalog.</small></p>");
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollars_group_thousands() {
        assert_eq!(super::dollars(6640.2), "6 640");
        assert_eq!(super::dollars(560.64), "561");
        assert_eq!(super::dollars(1_234_567.0), "1 234 567");
        assert_eq!(super::dollars(0.0), "0");
    }
}
