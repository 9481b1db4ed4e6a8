//! Open findings: firing and pending, each with its fix.

use super::html::esc;
use crate::findings::{ordered, Findings, Record, State};
use crate::rules::Severity;
use crate::time::rfc3339;
use std::fmt::Write;

/// The "Open findings" section: firing and pending, each with its fix.
pub fn section(out: &mut String, findings: &Findings) {
    let engine = findings.lock();
    let mut open: Vec<&Record> = engine
        .records()
        .filter(|r| r.state != State::Resolved)
        .collect();
    ordered(&mut open);
    let resolved = engine.records().count() - open.len();
    let mut h = String::from("<h2 id=\"findings\">Open findings</h2>");
    if open.is_empty() {
        let _ = write!(
                h,
                "<p>None. <small>{resolved} resolved recently; all in <a href=\"/api/v1/findings\">/api/v1/findings</a>.</small></p>"
            );
        out.push_str(&h);
        return;
    }
    h.push_str("<table><thead><tr><th>state</th><th>severity</th><th>rule</th><th>subject</th><th>summary</th><th>fix</th><th>since</th></tr></thead><tbody>");
    for r in open {
        let class = match r.severity {
            Severity::Critical => "crit",
            Severity::Warning => "warn",
            Severity::Info => "ok",
        };
        let subject: Vec<String> = r
            .subject
            .labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td><small>{}</small></td><td>{}</td><td><pre style=\"white-space:pre-wrap;margin:0\">{}</pre></td><td><small>{}</small></td></tr>",
                r.state.as_str(),
                r.severity.as_str(),
                esc(&r.rule),
                esc(&subject.join(" ")),
                esc(&r.summary),
                esc(&r.fix),
                esc(&rfc3339(r.fired_at.unwrap_or(r.started_at))),
            );
    }
    let _ = write!(
            h,
            "</tbody></table><p><small>{resolved} resolved recently; all in <a href=\"/api/v1/findings\">/api/v1/findings</a>.</small></p>"
        );
    out.push_str(&h);
}
