//! What every section of the status page shares: HTML escaping, the colour of a figure, the
//! row limit, the ENI cell, dollars, and the open findings of one rule.

use crate::findings::{Engine, Record, State};
use crate::fleet::EniSnapshot;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rows in each of the workload, probe and DNS tables.
pub const MAX_SECTION_ROWS: usize = 50;

pub fn util_class(u: f64) -> &'static str {
    if u >= 0.9 {
        "crit"
    } else if u >= 0.7 {
        "warn"
    } else {
        "ok"
    }
}

/// The ENI cell, when the page has an ENI column (some agent knows its ENI ids).
pub fn eni_cell(eni: bool, i: &EniSnapshot) -> String {
    if eni {
        format!("<td>{}</td>", esc(i.eni_id.as_deref().unwrap_or("-")))
    } else {
        String::new()
    }
}

/// Whole dollars with a space between thousands: 6640 → "6 640".
pub fn dollars(x: f64) -> String {
    let s = (x.round().max(0.0) as u64).to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A finding's cost per month, where its rule prices it.
pub fn usd(r: &Record) -> Option<f64> {
    r.cost.as_ref().and_then(|c| c.usd_per_month)
}

/// The findings of `rule` not yet resolved (the sections that read the engine, not the fleet).
pub fn open_findings<'a>(engine: &'a Engine, rule: &str) -> Vec<&'a Record> {
    engine
        .records()
        .filter(|r| r.rule == rule && r.state != State::Resolved)
        .collect()
}
