//! Prometheus exposition of the node report. Names are a public contract (design.md §3).

pub mod probes;

use crate::report::Report;
use crate::sources::linklocal::Service;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfaceLabels {
    interface: String,
    eni: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    interface: String,
    eni: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabels {
    interface: String,
    eni: String,
    rcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CaptureLabels {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AllowanceLabels {
    interface: String,
    eni: String,
    allowance: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QnameLabels {
    interface: String,
    eni: String,
    qname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    interface: String,
    eni: String,
    source: String,
    namespace: String,
    pod: String,
    workload_kind: String,
    workload: String,
}

/// DNS top talkers of the last window (gauges: only the window's top entries are shown).
#[derive(Default)]
struct TalkerMetrics {
    share: Family<IfaceLabels, F64Gauge>,
    qnames: Family<QnameLabels, Gauge>,
    sources: Family<SourceLabels, Gauge>,
    source_expansion: Family<SourceLabels, Gauge>,
}

impl TalkerMetrics {
    fn register(&self, r: &mut Registry) {
        use headroom_signals::prom;
        r.register(
            prom::DNS_SEARCH_EXPANSION_SHARE,
            "Share of the last window's DNS queries spent on search-list suffixes that failed",
            self.share.clone(),
        );
        r.register(
            prom::DNS_TOP_QNAME_QUERIES,
            "Queries in the last report window for one of its most asked names",
            self.qnames.clone(),
        );
        r.register(
            prom::DNS_TOP_SOURCE_QUERIES,
            "Queries in the last report window from one of its busiest sources (with the pod and workload behind it)",
            self.sources.clone(),
        );
        r.register(
            prom::DNS_TOP_SOURCE_SEARCH_EXPANSION,
            "Packets one of the last window's busiest sources spent on search-list suffixes that failed",
            self.source_expansion.clone(),
        );
    }

    fn update(&self, report: &Report) {
        self.share.clear();
        self.qnames.clear();
        self.sources.clear();
        self.source_expansion.clear();
        for i in report.interfaces.iter().filter(|i| i.capturing) {
            let Some(d) = &i.dns else { continue };
            let eni = i.eni_id.clone().unwrap_or_default();
            self.share
                .get_or_create(&IfaceLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                })
                .set(d.search_expansion_share);
            for q in &d.top_qnames {
                self.qnames
                    .get_or_create(&QnameLabels {
                        interface: i.name.clone(),
                        eni: eni.clone(),
                        qname: q.qname.clone(),
                    })
                    .set(q.queries as i64);
            }
            for s in &d.top_sources {
                let (ns, pod) = s
                    .pod
                    .as_deref()
                    .and_then(|p| p.split_once('/'))
                    .unwrap_or(("", ""));
                let l = SourceLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                    source: s.source.clone(),
                    namespace: ns.into(),
                    pod: pod.into(),
                    workload_kind: s
                        .workload
                        .as_ref()
                        .map(|w| w.kind.clone())
                        .unwrap_or_default(),
                    workload: s
                        .workload
                        .as_ref()
                        .map(|w| w.name.clone())
                        .unwrap_or_default(),
                };
                self.sources.get_or_create(&l).set(s.queries as i64);
                self.source_expansion
                    .get_or_create(&l)
                    .set(s.search_expansion_packets as i64);
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    namespace: String,
    pod: String,
    container: String,
    port: String,
}

/// Listener metrics (worker source).
#[derive(Default)]
struct ListenerMetrics {
    workers: Family<ListenerLabels, Gauge>,
    busy: Family<ListenerLabels, F64Gauge>,
    busy_max: Family<ListenerLabels, Gauge>,
    queue_max: Family<ListenerLabels, Gauge>,
    backlog: Family<ListenerLabels, Gauge>,
    saturated: Family<ListenerLabels, Counter<f64, AtomicU64>>,
}

impl ListenerMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            headroom_signals::prom::WORKERS,
            "Worker processes of a listening socket (masters excluded)",
            self.workers.clone(),
        );
        r.register(
            headroom_signals::prom::WORKERS_BUSY,
            "Mean number of workers holding an accepted connection over the last report window",
            self.busy.clone(),
        );
        r.register(
            headroom_signals::prom::WORKERS_BUSY_MAX,
            "Most workers busy at once in the last report window",
            self.busy_max.clone(),
        );
        r.register(
            headroom_signals::prom::ACCEPT_QUEUE_DEPTH_MAX,
            "Deepest accept queue (connections waiting for a worker) in the last report window",
            self.queue_max.clone(),
        );
        r.register(
            headroom_signals::prom::ACCEPT_QUEUE_BACKLOG,
            "Accept queue limit of the listening socket (listen backlog)",
            self.backlog.clone(),
        );
        r.register(
            headroom_signals::prom::WORKERS_SATURATED_SECONDS,
            "Time with every worker of the listening socket busy",
            self.saturated.clone(),
        );
    }

    fn update(&self, report: &Report) {
        // Gauges show the listeners of this window only; counters keep their totals.
        self.workers.clear();
        self.busy.clear();
        self.busy_max.clear();
        self.queue_max.clear();
        self.backlog.clear();
        // Listeners that share the labels (an IPv4 and an IPv6 socket on one port, or host
        // processes on one port in several namespaces) show the one with the most workers,
        // then the busiest; the report lists each.
        let mut by_labels: std::collections::HashMap<
            ListenerLabels,
            &crate::sources::listeners::ListenerReport,
        > = std::collections::HashMap::new();
        for l in &report.listeners {
            let pod = l.pod.as_ref();
            let lb = ListenerLabels {
                namespace: pod.and_then(|p| p.namespace.clone()).unwrap_or_default(),
                pod: pod.and_then(|p| p.name.clone()).unwrap_or_default(),
                container: l.container.clone().unwrap_or_default(),
                port: l.port.to_string(),
            };
            let e = by_labels.entry(lb).or_insert(l);
            if (l.workers, l.busy_mean) > (e.workers, e.busy_mean) {
                *e = l;
            }
        }
        for (lb, l) in by_labels {
            self.workers.get_or_create(&lb).set(l.workers as i64);
            self.busy.get_or_create(&lb).set(l.busy_mean);
            self.busy_max.get_or_create(&lb).set(l.busy_max as i64);
            self.queue_max.get_or_create(&lb).set(l.queue_max as i64);
            self.backlog.get_or_create(&lb).set(l.backlog as i64);
            let c = self.saturated.get_or_create(&lb);
            let gain = l.saturated_seconds_total - c.get();
            if gain > 0.0 {
                c.inc_by(gain);
            }
        }
    }
}

/// The agent's metrics, updated from each report.
pub struct Metrics {
    registry: Registry,
    packets: Family<ServiceLabels, Counter>,
    peak: Family<IfaceLabels, Gauge>,
    service_peak: Family<ServiceLabels, Gauge>,
    talkers: TalkerMetrics,
    mean: Family<IfaceLabels, F64Gauge>,
    limit: Family<IfaceLabels, Gauge>,
    utilization: Family<IfaceLabels, F64Gauge>,
    drops: Family<CaptureLabels, Counter>,
    dns_queries: Family<IfaceLabels, Counter>,
    dns_responses: Family<RcodeLabels, Counter>,
    dns_unanswered: Family<IfaceLabels, Counter>,
    dns_expansion: Family<IfaceLabels, Counter>,
    listeners: ListenerMetrics,
    ena_exceeded: Family<AllowanceLabels, Counter>,
    conntrack_available: Family<IfaceLabels, Gauge>,
    probes: crate::export::prometheus::probes::ProbeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            packets: Family::default(),
            peak: Family::default(),
            service_peak: Family::default(),
            talkers: TalkerMetrics::default(),
            mean: Family::default(),
            limit: Family::default(),
            utilization: Family::default(),
            drops: Family::default(),
            dns_queries: Family::default(),
            dns_responses: Family::default(),
            dns_unanswered: Family::default(),
            dns_expansion: Family::default(),
            listeners: ListenerMetrics::default(),
            ena_exceeded: Family::default(),
            conntrack_available: Family::default(),
            probes: crate::export::prometheus::probes::ProbeMetrics::register(&mut registry),
            registry: Registry::default(),
        };
        m.listeners.register(&mut registry);
        m.talkers.register(&mut registry);
        registry.register(
            headroom_signals::prom::LINKLOCAL_SERVICE_PPS_PEAK,
            "Highest packets in any one second of the last report window to one link-local service",
            m.service_peak.clone(),
        );
        registry.register(
            "headroom_linklocal_packets",
            "Packets sent to EC2 link-local services (Route 53 Resolver, IMDS, Time Sync)",
            m.packets.clone(),
        );
        registry.register(
            "headroom_linklocal_pps_peak",
            "Highest packets in any one second of the last report window, all link-local services together",
            m.peak.clone(),
        );
        registry.register(
            "headroom_linklocal_pps_mean",
            "Mean packets per second to link-local services over the last report window",
            m.mean.clone(),
        );
        registry.register(
            "headroom_linklocal_pps_limit",
            "Packets per second an interface may send to link-local services before EC2 drops them",
            m.limit.clone(),
        );
        registry.register(
            "headroom_linklocal_utilization_ratio",
            "Peak packets per second over the link-local limit, last report window",
            m.utilization.clone(),
        );
        registry.register(
            "headroom_capture_drops",
            "Packets the kernel matched but the agent's capture ring had no room for (the count is low by this much)",
            m.drops.clone(),
        );
        registry.register(
            "headroom_dns_queries",
            "DNS queries sent to link-local resolvers",
            m.dns_queries.clone(),
        );
        registry.register(
            "headroom_dns_responses",
            "DNS replies from link-local resolvers matched to a query, by RCODE",
            m.dns_responses.clone(),
        );
        registry.register(
            "headroom_dns_unanswered",
            "DNS queries with no reply within 5 s (what a throttled packet looks like)",
            m.dns_unanswered.clone(),
        );
        registry.register(
            "headroom_dns_search_expansion_packets",
            "DNS queries for a name plus a search suffix answered NXDOMAIN (packets ndots costs)",
            m.dns_expansion.clone(),
        );
        registry.register(
            headroom_signals::prom::ENA_ALLOWANCE_EXCEEDED,
            "Packets EC2 dropped or queued because an allowance was exceeded, from the ENA driver's counters (allowance=linklocal|pps|conntrack|bw_in|bw_out)",
            m.ena_exceeded.clone(),
        );
        registry.register(
            "headroom_ena_conntrack_allowance_available",
            "Tracked connections that can still be established before the conntrack allowance is exceeded (ENA driver)",
            m.conntrack_available.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Applies one report window.
    pub fn update(&self, report: &Report) {
        self.listeners.update(report);
        self.probes.update(&report.probes);
        self.talkers.update(report);
        for i in &report.interfaces {
            let eni = i.eni_id.clone().unwrap_or_default();
            let il = IfaceLabels {
                interface: i.name.clone(),
                eni: eni.clone(),
            };
            for s in Service::ALL {
                let l = ServiceLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                    service: s.as_str().into(),
                };
                match i.by_service.get(&s) {
                    Some(f) if i.capturing => {
                        self.service_peak.get_or_create(&l).set(f.peak_pps as i64);
                    }
                    _ => {
                        self.service_peak.remove(&l);
                    }
                };
            }
            if !i.capturing {
                self.peak.remove(&il);
                self.mean.remove(&il);
                self.limit.remove(&il);
                self.utilization.remove(&il);
            } else {
                self.peak.get_or_create(&il).set(i.peak_pps as i64);
                self.mean.get_or_create(&il).set(i.mean_pps);
                self.limit.get_or_create(&il).set(i.limit_pps as i64);
                self.utilization.get_or_create(&il).set(i.utilization);
            }
            for s in Service::ALL {
                let c = self.packets.get_or_create(&ServiceLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                    service: s.as_str().into(),
                });
                // Counters follow the agent's running totals, so a window never double counts.
                let total = i.packets_total[s.index()];
                c.inc_by(total.saturating_sub(c.get()));
            }
            let d = self.drops.get_or_create(&CaptureLabels {
                interface: i.name.clone(),
            });
            d.inc_by(i.drops_total.saturating_sub(d.get()));
            let t = &i.dns_totals;
            let follow = |c: &Counter, total: u64| {
                c.inc_by(total.saturating_sub(c.get()));
            };
            follow(&self.dns_queries.get_or_create(&il), t.queries);
            follow(&self.dns_unanswered.get_or_create(&il), t.unanswered);
            follow(&self.dns_expansion.get_or_create(&il), t.search_expansion);
            for (rcode, n) in &t.responses {
                let l = RcodeLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                    rcode: rcode.clone(),
                };
                follow(&self.dns_responses.get_or_create(&l), *n);
            }
            for (name, total) in &i.allowance_totals {
                let c = self.ena_exceeded.get_or_create(&AllowanceLabels {
                    interface: i.name.clone(),
                    eni: eni.clone(),
                    allowance: name.trim_end_matches("_allowance_exceeded").into(),
                });
                c.inc_by(total.saturating_sub(c.get()));
            }
            match i.conntrack_allowance_available {
                Some(v) if i.capturing => {
                    self.conntrack_available
                        .get_or_create(&il)
                        .set(v.min(i64::MAX as u64) as i64);
                }
                _ => {
                    self.conntrack_available.remove(&il);
                }
            }
        }
    }

    /// The exposition in the Prometheus text format (0.0.4), which every scraper and
    /// `promtool check metrics` accept.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        openmetrics_to_text(&out)
    }
}

/// Content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = headroom_signals::TEXT_CONTENT_TYPE;

pub use headroom_signals::openmetrics_to_text;

impl Metrics {
    /// Adds the OTLP exporter's counters (`run` with an OTLP endpoint).
    pub fn register_export(&mut self, s: &crate::export::otlp::ExportStats) {
        self.registry.register(
            "headroom_otlp_windows_sent",
            "Report windows the OTLP receiver acknowledged",
            s.sent.clone(),
        );
        self.registry.register(
            "headroom_otlp_windows_dropped",
            "Report windows never exported: oldest dropped from a full queue, or refused by the receiver",
            s.dropped.clone(),
        );
        self.registry.register(
            "headroom_otlp_send_failures",
            "Failed OTLP send attempts (each window is retried until sent or dropped)",
            s.failures.clone(),
        );
        self.registry.register(
            "headroom_otlp_windows_queued",
            "Report windows waiting to be exported",
            s.queued.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Node;
    use crate::sources::linklocal::meter::InterfaceWindow;
    use crate::sources::linklocal::series::Figures;

    #[test]
    fn exposition_carries_the_report() {
        let w = InterfaceWindow {
            name: "eth0".into(),
            figures: Figures {
                packets: [10, 0, 0],
                peak: 7,
                peak_by_service: [7, 0, 0],
            },
            packets_total: [25, 1, 0],
            drops_total: 4,
            capturing: true,
            ..Default::default()
        };
        let m = Metrics::new();
        m.update(&Report::new(
            Node::default(),
            0,
            10_000_000_000,
            std::slice::from_ref(&w),
        ));
        m.update(&Report::new(Node::default(), 0, 10_000_000_000, &[w]));
        let text = m.encode();
        assert!(
            text.contains(
                r#"headroom_linklocal_packets_total{interface="eth0",eni="",service="dns"} 25"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"headroom_linklocal_pps_peak{interface="eth0",eni=""} 7"#));
        assert!(text.contains(r#"headroom_linklocal_pps_limit{interface="eth0",eni=""} 1024"#));
        assert!(text.contains(r#"headroom_capture_drops_total{interface="eth0"} 4"#));
        assert!(text.contains("# TYPE headroom_linklocal_packets_total counter\n"));
        assert!(text.contains("# HELP headroom_capture_drops_total Packets"));
        assert!(text.contains("# TYPE headroom_linklocal_pps_peak gauge\n"));
        assert!(!text.contains("# EOF") && !text.contains(".."));
    }

    /// The signals table's Prometheus names that came with the OTLP ones: per-service peaks,
    /// DNS search share and top talkers (with pod and workload), probe p99/max and predicted
    /// removals; promtool accepts the whole exposition.
    #[test]
    fn exposition_carries_services_talkers_and_probe_figures() {
        use crate::sources::probes::shadow::Attempt;
        use crate::sources::probes::stats::Outcome;
        let w = InterfaceWindow::with_dns_talkers("Deployment");
        let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[w]);
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-1", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        let spec = crate::sources::probes::spec::probes_of(&pod).remove(0);
        let log = crate::sources::probes::ProbeLog::default();
        log.set_specs(std::slice::from_ref(&spec));
        for (outcome, ms) in [
            (Outcome::Ok, 120),
            (Outcome::Timeout, 1000),
            (Outcome::Timeout, 1000),
            (Outcome::Timeout, 1000),
        ] {
            let a = Attempt {
                started: std::time::SystemTime::now(),
                outcome,
                elapsed: std::time::Duration::from_millis(ms),
                status: None,
                error: None,
            };
            log.record(&spec.key(), &a, None);
        }
        r.probes = log.cut();
        let m = Metrics::new();
        m.update(&r);
        let text = m.encode();
        let probe = r#"{namespace="shop",pod="web-1",container="app",probe="readiness"}"#;
        for line in [
            r#"headroom_linklocal_service_pps_peak{interface="eth0",eni="",service="dns"} 6"#.to_string(),
            r#"headroom_linklocal_service_pps_peak{interface="eth0",eni="",service="imds"} 2"#.to_string(),
            r#"headroom_dns_search_expansion_share_ratio{interface="eth0",eni=""} 0.75"#.to_string(),
            r#"headroom_dns_top_qname_queries{interface="eth0",eni="",qname="db.shop.svc.cluster.local"} 25"#.to_string(),
            r#"headroom_dns_top_source_queries{interface="eth0",eni="",source="10.0.0.5",namespace="shop",pod="web-1",workload_kind="Deployment",workload="web"} 40"#.to_string(),
            r#"headroom_dns_top_source_search_expansion_packets{interface="eth0",eni="",source="10.0.0.5",namespace="shop",pod="web-1",workload_kind="Deployment",workload="web"} 30"#.to_string(),
            format!("headroom_probe_latency_p99_seconds{probe} 1.0"),
            format!("headroom_probe_latency_max_seconds{probe} 1.0"),
            format!("headroom_probe_predicted_removals_total{probe} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // Next window without DNS or attempts: the window's gauges go, the counter stays.
        let mut r2 = Report::new(Node::default(), 0, 10_000_000_000, &[]);
        r2.probes = log.cut();
        m.update(&r2);
        let text2 = m.encode();
        assert!(
            !text2.contains("headroom_dns_top_qname_queries{"),
            "{text2}"
        );
        assert!(
            !text2.contains("headroom_probe_latency_p99_seconds{"),
            "{text2}"
        );
        assert!(text2.contains(&format!("headroom_probe_predicted_removals_total{probe} 1")));
        if headroom_testbed::require(
            "promtool check metrics",
            &[headroom_testbed::Need::Tool("promtool")],
        ) {
            headroom_testbed::scrape::promtool_check(&text);
            headroom_testbed::scrape::promtool_check(&text2);
        }
    }

    #[test]
    fn exposition_carries_listeners() {
        let l = crate::sources::listeners::ListenerReport {
            pod: Some(crate::sources::listeners::PodRef {
                namespace: Some("shop".into()),
                name: Some("web-1".into()),
                uid: "u".into(),
            }),
            container: Some("c0ffee".into()),
            address: "0.0.0.0".into(),
            port: 8000,
            process: "gunicorn".into(),
            workers: 4,
            busy_mean: 3.5,
            busy_max: 4,
            queue_max: 2,
            backlog: 8,
            utilization: 0.875,
            saturated_seconds: 1.5,
            cpu_periods: None,
            cpu_throttled_periods: None,
            cpu_throttled_seconds: None,
            samples: 50,
            netns: 1,
            worker_pids: vec![],
            workload: None,
            saturated_seconds_total: 1.5,
        };
        let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
        r.listeners = vec![l.clone()];
        let m = Metrics::new();
        m.update(&r);
        r.listeners[0].saturated_seconds_total = 4.0;
        m.update(&r);
        let text = m.encode();
        let labels = r#"{namespace="shop",pod="web-1",container="c0ffee",port="8000"}"#;
        for line in [
            format!("headroom_workers{labels} 4"),
            format!("headroom_workers_busy{labels} 3.5"),
            format!("headroom_workers_busy_max{labels} 4"),
            format!("headroom_accept_queue_depth_max{labels} 2"),
            format!("headroom_accept_queue_backlog{labels} 8"),
            format!("headroom_workers_saturated_seconds_total{labels} 4.0"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // A listener that is gone leaves the gauges; its counter stays.
        r.listeners.clear();
        m.update(&r);
        let text = m.encode();
        assert!(!text.contains("headroom_workers{"), "{text}");
        assert!(text.contains("headroom_workers_saturated_seconds_total{"));
    }
}
