//! `/`: the status page. Server-rendered HTML with inline CSS and SVG, no external assets:
//! every interface of the fleet ranked by its highest peak utilization of the last hour, with a
//! sparkline of the hour's window peaks against the 1024/s limit; the most saturated
//! workloads; the probes closest to their timeout; the fleet's top DNS names; nodes ranked by
//! utilization.

use crate::fleet::{EniSnapshot, FleetSnapshot, ProbeSnapshot, WorkloadSnapshot, HISTORY};
use std::fmt::Write;

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

/// Interfaces shown on the page (the busiest); the API has them all.
pub const MAX_ROWS: usize = 200;
const W: f64 = 240.0;
const H: f64 = 36.0;

/// An inline SVG of the interface's window peaks over the hour before `now_ns`.
pub fn sparkline(i: &EniSnapshot, now_ns: u64) -> String {
    let span = HISTORY.as_nanos() as f64;
    let from = now_ns as f64 - span;
    let limit = i
        .latest
        .as_ref()
        .map(|w| w.limit_pps)
        .unwrap_or(1024)
        .max(1) as f64;
    let top = i
        .windows
        .iter()
        .map(|w| w.peak_pps as f64)
        .fold(limit, f64::max);
    let y = |v: f64| H - v / top * (H - 2.0);
    let points: Vec<String> = i
        .windows
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

fn util_class(u: f64) -> &'static str {
    if u >= 0.9 {
        "crit"
    } else if u >= 0.7 {
        "warn"
    } else {
        "ok"
    }
}

/// The whole page for one snapshot.
pub fn render(s: &FleetSnapshot, now_ns: u64, findings: &crate::findings::Findings) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"10\">",
        "<title>headroom — fleet</title><style>",
        "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}",
        "td.n{text-align:right;font-variant-numeric:tabular-nums}",
        ".ok{color:#262}.warn{color:#b60;font-weight:600}.crit{color:#c00;font-weight:700}",
        "small{color:#666}</style></head><body>"
    ));
    let ifaces = s.ranked_interfaces();
    let _ = write!(
        h,
        "<h1>headroom</h1><p>{} node(s), {} interface(s); generated {}. Link-local limit: 1024 packets/s per interface. \
         <small>points accepted {}, rejected {}; spans {}</small></p>",
        s.nodes,
        ifaces.len(),
        esc(&s.generated_at),
        s.ingest.points_accepted,
        s.ingest.points_rejected,
        s.ingest.spans_received
    );
    h.push_str(&findings.page_section());
    h.push_str("<h2>Interfaces by peak utilization</h2>");
    if ifaces.is_empty() {
        h.push_str("<p>No link-local figures yet: point agents at this collector with <code>--otlp-endpoint</code>.</p>");
    } else {
        h.push_str("<table><thead><tr><th>cluster</th><th>node</th><th>interface</th><th>ENI</th>\
            <th>peak/s 1 h</th><th>util 1 h</th><th>peak/s now</th><th>util now</th><th>mean/s now</th><th>drops</th><th>last hour</th><th>window end</th></tr></thead><tbody>");
        for (c, n, i) in ifaces.iter().take(MAX_ROWS) {
            let Some(w) = &i.latest else { continue };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n {}\">{:.1}%</td>\
                 <td class=\"n\">{}</td><td class=\"n {}\">{:.1}%</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td>\
                 <td>{}</td><td><small>{}</small></td></tr>",
                esc(&c.name),
                esc(&n.name),
                esc(&i.interface),
                esc(i.eni_id.as_deref().unwrap_or("-")),
                i.peak_pps_last_hour,
                util_class(i.utilization_last_hour),
                i.utilization_last_hour * 100.0,
                w.peak_pps,
                util_class(w.utilization),
                w.utilization * 100.0,
                w.mean_pps,
                w.kernel_drops,
                sparkline(i, now_ns),
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
    workloads_section(&mut h, s);
    probes_section(&mut h, s);
    dns_section(&mut h, s);
    h.push_str("<h2>Nodes</h2><table><thead><tr><th>cluster</th><th>node</th><th>peak util 1 h</th><th>sender</th><th>instance</th><th>type</th><th>zone</th><th>metrics</th><th>spans</th><th>last seen</th></tr></thead><tbody>");
    for (c, n, u) in s.ranked_nodes() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n {}\">{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><small>{}</small></td></tr>",
            esc(&c.name),
            esc(&n.name),
            util_class(u),
            u * 100.0,
            esc(n.service_name.as_deref().unwrap_or("-")),
            esc(n.instance_id.as_deref().unwrap_or("-")),
            esc(n.instance_type.as_deref().unwrap_or("-")),
            esc(n.availability_zone.as_deref().unwrap_or("-")),
            n.metrics.len(),
            n.spans_received,
            esc(&n.last_seen)
        );
    }
    h.push_str("</tbody></table><p><small><a href=\"/api/v1/fleet\">/api/v1/fleet</a> · <a href=\"/metrics\">/metrics</a></small></p></body></html>\n");
    h
}

/// Rows in each of the workload, probe and DNS tables.
pub const MAX_SECTION_ROWS: usize = 50;

/// busy p95 over the workload's workers (workers per pod × pods); 0 without workers.
pub fn saturation(w: &WorkloadSnapshot) -> f64 {
    let workers = f64::from(w.workers_per_pod) * w.pods.len() as f64;
    if workers > 0.0 {
        w.busy_p95 / workers
    } else {
        0.0
    }
}

fn workloads_section(h: &mut String, s: &FleetSnapshot) {
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

fn probes_section(h: &mut String, s: &FleetSnapshot) {
    let mut rows: Vec<_> = s
        .clusters
        .iter()
        .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
        .flat_map(|(c, n)| n.probes.iter().map(move |p| (c, n, p)))
        .collect();
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

fn dns_section(h: &mut String, s: &FleetSnapshot) {
    let mut rows: Vec<_> = s
        .clusters
        .iter()
        .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
        .flat_map(|(c, n)| n.interfaces.iter().map(move |i| (c, n, i)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{ClusterSnapshot, IngestStats, NodeSnapshot};

    fn snapshot(probes: Vec<ProbeSnapshot>, workloads: Vec<WorkloadSnapshot>) -> FleetSnapshot {
        FleetSnapshot {
            schema: "headroom.fleet/v1",
            generated_at: String::new(),
            nodes: 1,
            clusters: vec![ClusterSnapshot {
                name: "c".into(),
                nodes: vec![NodeSnapshot {
                    name: "n".into(),
                    probes,
                    ..Default::default()
                }],
                workloads,
            }],
            ingest: IngestStats::default(),
        }
    }

    #[test]
    fn probes_rank_by_headroom_and_workloads_by_saturation() {
        let probe = |pod: &str, headroom: Option<f64>| ProbeSnapshot {
            pod: pod.into(),
            headroom,
            ..Default::default()
        };
        let wl = |name: &str, p95: f64, workers: u32| WorkloadSnapshot {
            name: name.into(),
            pods: vec!["n/a".into(), "n/b".into()],
            workers_per_pod: workers,
            busy_p95: p95,
            ..Default::default()
        };
        let s = snapshot(
            vec![
                probe("roomy", Some(8.0)),
                probe("idle", None),
                probe("tight", Some(1.1)),
            ],
            vec![wl("calm", 2.0, 4), wl("hot", 7.0, 4)],
        );
        let findings = crate::findings::Findings::new(
            crate::engine::Engine::new(
                std::time::Duration::from_secs(3600),
                std::time::Duration::ZERO,
                std::time::SystemTime::now(),
            ),
            crate::alerts::Sinks::start(
                &[],
                None,
                "",
                std::time::Duration::from_secs(60),
                tokio_util::sync::CancellationToken::new(),
            ),
            None,
        );
        let page = render(&s, 0, &findings);
        let pos = |t: &str| {
            page.find(t)
                .unwrap_or_else(|| panic!("{t} not on the page"))
        };
        assert!(pos("/tight") < pos("/roomy") && pos("/roomy") < pos("/idle"));
        assert!(pos("/hot") < pos("/calm"));
        assert!(page.contains("88%"), "hot: 7 of 8 workers at p95");
        assert_eq!(saturation(&s.clusters[0].workloads[1]), 7.0 / 8.0);
    }
}
