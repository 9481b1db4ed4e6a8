//! `/`: the status page. Server-rendered HTML with inline CSS and SVG, no external assets:
//! every interface of the fleet ranked by its highest peak utilization of the last hour, with a
//! sparkline of the hour's window peaks against the 1024/s limit; the most saturated
//! workloads; the probes closest to their timeout; the fleet's top DNS names; nodes ranked by
//! utilization.

mod dns;
mod findings;
mod html;
mod interfaces;
mod packing;
mod probes;
mod scale_down;
mod workloads;

use crate::findings::Findings;
use crate::fleet::{ClusterSnapshot, EniSnapshot, FleetSnapshot, NodeSnapshot, WindowFigures};
use html::{esc, util_class};
use std::fmt::Write;

/// An interface's windows of the last hour, for the interfaces the page draws: the snapshot
/// the page reads is the lean one, without every interface's history.
pub type WindowsOf<'a> =
    dyn Fn(&ClusterSnapshot, &NodeSnapshot, &EniSnapshot) -> Vec<WindowFigures> + 'a;

/// The whole page for one snapshot.
pub fn render(s: &FleetSnapshot, now_ns: u64, f: &Findings, windows: &WindowsOf<'_>) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"10\">",
        // A phone lays the page out at its own width; no favicon request (a 404 otherwise).
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<link rel=\"icon\" href=\"data:,\">",
        "<title>headroom — fleet</title><style>",
        "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}",
        "td.n{text-align:right;font-variant-numeric:tabular-nums}",
        ".ok{color:#262}.warn{color:#b60;font-weight:600}.crit{color:#c00;font-weight:700}",
        "small{color:#666}.note{color:#555;background:#f6f6f0;padding:.3em .6em}",
        ".sidecar{font-size:85%;background:#e8eef8;padding:0 .3em;border-radius:3px}",
        // Wide tables scroll inside their box, so the page itself never scrolls sideways.
        ".scroll{overflow-x:auto}th,td{vertical-align:top}td pre{min-width:22em;overflow-wrap:anywhere}</style></head><body>"
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
    // Without IMDS (not on EC2, or IMDS blocked from the nodes) no agent knows its ENI ids:
    // said once here, and no table has a column of dashes.
    let eni = s.interfaces().any(|(_, _, i)| i.eni_id.is_some());
    if !eni && !ifaces.is_empty() {
        h.push_str("<p class=\"note\" id=\"no-eni\">No interface has an ENI id: the agents could not read them from IMDS (not on EC2, or IMDS unreachable from the nodes). Figures are per interface.</p>");
    }
    findings::section(&mut h, f);
    scale_down::section(&mut h, f);
    packing::section(&mut h, f);
    interfaces::section(&mut h, &ifaces, now_ns, windows, eni);
    workloads::section(&mut h, s);
    probes::section(&mut h, s);
    dns::section(&mut h, s, eni);
    h.push_str("<h2>Nodes</h2><table><thead><tr><th>cluster</th><th>node</th><th>peak util 1 h</th><th>sender</th><th>instance</th><th>type</th><th>zone</th><th>metrics</th><th>spans</th><th>last seen</th></tr></thead><tbody>");
    for (c, n, u) in s.ranked_nodes() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n {}\">{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><small>{}</small></td></tr>",
            esc(&c.name),
            node_cell(n),
            util_class(u),
            u * 100.0,
            esc(n.service_name.as_deref().unwrap_or("-")),
            esc(n.instance_id.as_deref().unwrap_or("-")),
            esc(n.instance_type.as_deref().unwrap_or("-")),
            esc(n.availability_zone.as_deref().unwrap_or("-")),
            n.metric_count,
            n.spans_received,
            esc(&n.last_seen)
        );
    }
    h.push_str("</tbody></table><p><small><a href=\"/api/v1/fleet\">/api/v1/fleet</a> · <a href=\"/metrics\">/metrics</a></small></p></body></html>\n");
    h.replace("<table>", "<div class=\"scroll\"><table>")
        .replace("</table>", "</table></div>")
}

/// A node's name; a sidecar agent's (one pod, EKS Fargate) flagged, with its pod and ENI
/// (the ENI id where IMDS named it, else the pod's IP).
fn node_cell(n: &crate::fleet::NodeSnapshot) -> String {
    let Some(sc) = &n.sidecar else {
        return esc(&n.name);
    };
    let eni = n
        .interfaces
        .iter()
        .find_map(|i| i.eni_id.clone())
        .or_else(|| sc.pod_ip.as_ref().map(|ip| format!("pod IP {ip}")))
        .unwrap_or_else(|| "-".into());
    format!(
        "{} <span class=\"sidecar\">sidecar</span><br><small>pod {} · ENI {}</small>",
        esc(&n.name),
        esc(sc.pod.as_deref().unwrap_or("-")),
        esc(&eni)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{NodeSnapshot, ProbeSnapshot, WorkloadSnapshot};
    use workloads::saturation;

    fn snapshot(probes: Vec<ProbeSnapshot>, workloads: Vec<WorkloadSnapshot>) -> FleetSnapshot {
        let node = NodeSnapshot {
            name: "n".into(),
            probes,
            ..Default::default()
        };
        FleetSnapshot::one_cluster("c", vec![node], workloads)
    }

    fn findings() -> Findings {
        Findings::new(
            crate::findings::Engine::new(
                std::time::Duration::from_secs(3600),
                std::time::Duration::ZERO,
                std::time::SystemTime::now(),
            ),
            crate::alerts::Sinks::default(),
            None,
        )
    }

    /// A node whose interfaces have these ENI ids; each with DNS whose latest window has no
    /// names and whose hour has `db.example.com` at 1 613 queries.
    fn dns_node(enis: &[Option<&str>]) -> FleetSnapshot {
        use crate::fleet::{DnsSnapshot, QnameHour, SourceHour};
        let peak = crate::fleet::PeakWindow {
            peak_queries: 1613,
            peak_window_end: "2026-12-06T18:00:10.000Z".into(),
            windows: 3,
        };
        let interfaces = enis
            .iter()
            .enumerate()
            .map(|(k, e)| EniSnapshot {
                interface: format!("eth{k}"),
                eni_id: e.map(str::to_string),
                latest: Some(WindowFigures::default()),
                dns: Some(DnsSnapshot {
                    top_qnames_hour: vec![QnameHour {
                        qname: "db.example.com".into(),
                        peak: peak.clone(),
                    }],
                    top_sources_hour: vec![SourceHour {
                        source: "10.0.1.5".into(),
                        namespace: "shop".into(),
                        pod: "web-1".into(),
                        peak: peak.clone(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let node = NodeSnapshot {
            name: "n".into(),
            interfaces,
            ..Default::default()
        };
        FleetSnapshot::one_cluster("c", vec![node], Vec::new())
    }

    /// The page's text from `<h2>title</h2>` to the next section.
    fn section<'a>(page: &'a str, title: &str) -> &'a str {
        let from = page
            .find(&format!(">{title}</h2>"))
            .unwrap_or_else(|| panic!("no section {title}: {page}"));
        let rest = &page[from..];
        &rest[..rest[5..].find("<h2").map_or(rest.len(), |e| e + 5)]
    }

    #[test]
    fn top_dns_names_show_the_hours_burst_after_it_ended() {
        let page = render(&dns_node(&[None]), 0, &findings(), &|_, _, i| {
            i.windows.clone()
        });
        let names = section(&page, "Top DNS names");
        assert!(!names.contains("No DNS"), "{names}");
        assert!(
            names.contains("<code>db.example.com</code></td><td class=\"n\">1613</td><td><small>2026-12-06T18:00:10.000Z"),
            "{names}"
        );
        let sources = section(&page, "Top DNS sources");
        assert!(
            sources.contains("10.0.1.5")
                && sources.contains("shop/web-1")
                && sources.contains("1613"),
            "{sources}"
        );
    }

    /// A sidecar's node row says `sidecar`, its pod and its ENI (the pod IP when IMDS named
    /// none); a node agent's row has no flag.
    #[test]
    fn a_sidecar_node_row_is_flagged_with_its_pod_and_eni() {
        let side = NodeSnapshot {
            name: "fargate-ip-10-0-1-5".into(),
            sidecar: Some(crate::fleet::Sidecar {
                pod: Some("shop/web-0".into()),
                pod_ip: Some("10.0.1.5".into()),
            }),
            ..Default::default()
        };
        let plain = NodeSnapshot {
            name: "ip-10-0-0-1".into(),
            ..Default::default()
        };
        let s = FleetSnapshot::one_cluster("c", vec![side, plain], vec![]);
        let h = render(&s, 0, &findings(), &|_, _, i| i.windows.clone());
        let nodes = section(&h, "Nodes");
        assert!(
            nodes.contains("fargate-ip-10-0-1-5 <span class=\"sidecar\">sidecar</span><br><small>pod shop/web-0 · ENI pod IP 10.0.1.5</small>"),
            "{nodes}"
        );
        assert_eq!(nodes.matches("class=\"sidecar\"").count(), 1, "{nodes}");
    }

    #[test]
    fn without_any_eni_id_the_page_says_so_once_and_no_table_has_the_column() {
        let page = |enis: &[Option<&str>]| {
            render(&dns_node(enis), 0, &findings(), &|_, _, i| {
                i.windows.clone()
            })
        };
        let h = page(&[None, None, None]);
        assert_eq!(h.matches("No interface has an ENI id").count(), 1, "{h}");
        assert!(!h.contains("<th>ENI</th>"), "{h}");
        let h = page(&[Some("eni-0a1"), None]);
        for title in [
            "Interfaces by peak utilization",
            "Top DNS names",
            "Top DNS sources",
        ] {
            let s = section(&h, title);
            assert!(
                s.contains("<th>ENI</th>") && s.contains("<td>eni-0a1</td>"),
                "{title}: {s}"
            );
        }
        assert!(h.contains("1 of 2 interfaces have no ENI id"), "{h}");
        assert!(!h.contains("No interface has an ENI id"), "{h}");
        let h = page(&[Some("eni-0a1")]);
        assert!(
            h.contains("<td>eni-0a1</td>") && !h.contains("no ENI id"),
            "{h}"
        );
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
            capacity_per_pod: workers,
            threads_known: true,
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
        let page = render(&s, 0, &findings(), &|_, _, i| i.windows.clone());
        let pos = |t: &str| {
            page.find(t)
                .unwrap_or_else(|| panic!("{t} not on the page"))
        };
        assert!(pos("/tight") < pos("/roomy") && pos("/roomy") < pos("/idle"));
        assert!(pos("/hot") < pos("/calm"));
        assert!(page.contains("88%"), "hot: 7 of 8 workers at p95");
        let ranked = section(&page, "Most saturated workloads");
        assert!(
            ranked.contains(workloads::EVENT_LOOPS_NOTE),
            "what is counted by connections is said: {ranked}"
        );
        assert_eq!(saturation(&s.clusters[0].workloads[1]), 7.0 / 8.0);
    }
}
