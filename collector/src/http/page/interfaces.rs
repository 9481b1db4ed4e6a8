//! The interfaces table: every interface ranked by its highest peak utilization of the last
//! hour, with a sparkline of the hour's window peaks against the limit.

use super::html::{eni_cell, esc, util_class};
use super::WindowsOf;
use crate::fleet::{ClusterSnapshot, EniSnapshot, NodeSnapshot, WindowFigures, HISTORY};
use std::fmt::Write;

/// Interfaces shown on the page (the busiest); the API has them all.
pub const MAX_ROWS: usize = 200;
const W: f64 = 240.0;
const H: f64 = 36.0;

/// An inline SVG of the interface's window peaks (`windows`) over the hour before `now_ns`.
pub fn sparkline(i: &EniSnapshot, windows: &[WindowFigures], now_ns: u64) -> String {
    let span = HISTORY.as_nanos() as f64;
    let from = now_ns as f64 - span;
    let limit = i
        .latest
        .as_ref()
        .map(|w| w.limit_pps)
        .unwrap_or(1024)
        .max(1) as f64;
    let top = windows
        .iter()
        .map(|w| w.peak_pps as f64)
        .fold(limit, f64::max);
    let y = |v: f64| H - v / top * (H - 2.0);
    let points: Vec<String> = windows
        .iter()
        .map(|w| {
            let x = ((w.end_ns as f64 - from) / span * W).clamp(0.0, W);
            format!("{x:.1},{:.1}", y(w.peak_pps as f64))
        })
        .collect();
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"peak packets/s, last hour\">"
    );
    let ly = y(limit);
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{ly:.1}\" x2=\"{W}\" y2=\"{ly:.1}\" stroke=\"#c33\" stroke-dasharray=\"3,3\" stroke-width=\"1\"/>"
    );
    if points.len() == 1 {
        let (x, yv) = points[0].split_once(',').unwrap_or(("0", "0"));
        let _ = write!(
            svg,
            "<circle cx=\"{x}\" cy=\"{yv}\" r=\"2\" fill=\"#36c\"/>"
        );
    } else if !points.is_empty() {
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The interfaces section (the ranked interfaces come from the page, which counts them too);
/// `eni`: whether any interface of the fleet has an ENI id (else the page said so at the top
/// and there is no ENI column).
pub fn section(
    h: &mut String,
    ifaces: &[(&ClusterSnapshot, &NodeSnapshot, &EniSnapshot)],
    now_ns: u64,
    windows: &WindowsOf<'_>,
    eni: bool,
) {
    h.push_str("<h2>Interfaces by peak utilization</h2>");
    if ifaces.is_empty() {
        h.push_str("<p>No link-local figures yet: point agents at this collector with <code>--otlp-endpoint</code>.</p>");
    } else {
        let shown = &ifaces[..ifaces.len().min(MAX_ROWS)];
        let without = shown.iter().filter(|(_, _, i)| i.eni_id.is_none()).count();
        let eni_column = eni;
        if eni_column && without > 0 {
            let _ = write!(
                h,
                "<p class=\"note\">{without} of {} interfaces have no ENI id (IMDS unreachable from their nodes): shown as -.</p>",
                shown.len()
            );
        }
        let _ = write!(
            h,
            "<table><thead><tr><th>cluster</th><th>node</th><th>interface</th>{}\
            <th>peak/s 1 h</th><th>util 1 h</th><th>peak/s now</th><th>util now</th><th>mean/s now</th><th>drops</th><th>last hour</th><th>window end</th></tr></thead><tbody>",
            if eni_column { "<th>ENI</th>" } else { "" }
        );
        for (c, n, i) in shown {
            let Some(w) = &i.latest else { continue };
            let eni = eni_cell(eni_column, i);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td>{}\
                 <td class=\"n\">{}</td><td class=\"n {}\">{:.1}%</td>\
                 <td class=\"n\">{}</td><td class=\"n {}\">{:.1}%</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td>\
                 <td>{}</td><td><small>{}</small></td></tr>",
                esc(&c.name),
                esc(&n.name),
                esc(&i.interface),
                eni,
                i.peak_pps_last_hour,
                util_class(i.utilization_last_hour),
                i.utilization_last_hour * 100.0,
                w.peak_pps,
                util_class(w.utilization),
                w.utilization * 100.0,
                w.mean_pps,
                w.kernel_drops,
                sparkline(i, &windows(c, n, i), now_ns),
                esc(w.end.get(11..19).unwrap_or(&w.end)),
            );
        }
        h.push_str("</tbody></table>");
        if ifaces.len() > MAX_ROWS {
            let _ = write!(
                h,
                "<p><small>The {MAX_ROWS} busiest of {} interfaces; all are in /api/v1/fleet.</small></p>",
                ifaces.len()
            );
        }
    }
}
