//! Prometheus exposition of the node report, one encoder per signal, each metric registered
//! from its `headroom-signals` descriptor. Names are a public contract (docs/reference.md, "Metrics").

mod families;
pub mod probes;

use crate::export::figures::{self, To, Value};
use crate::report::Report;
use families::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One family per figure metric, of the value type its exposition needs.
enum Fam {
    Int(Family<Labels, Gauge>),
    Float(Family<Labels, F64Gauge>),
    Count(Family<Labels, Counter>),
    FloatCount(Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>),
}

/// The report's metrics on /metrics in exposition order, with those shown as floats.
const FIGURES: &[(&Descriptor, bool)] = &[
    (&metric::WORKERS, false),
    (&metric::WORKERS_THREADS, false),
    (&metric::WORKERS_CAPACITY, false),
    (&metric::WORKERS_BUSY, true),
    (&metric::WORKERS_BUSY_MAX, false),
    (&metric::WORKERS_UTILIZATION, true),
    (&metric::ACCEPT_QUEUE_DEPTH_MAX, false),
    (&metric::ACCEPT_QUEUE_BACKLOG, false),
    (&metric::WORKERS_SATURATED_SECONDS, true),
    (&metric::LISTENER_CONNECTIONS, true),
    (&metric::LISTENER_CONNECTIONS_MAX, false),
    (&metric::LISTENER_ACCEPTS, true),
    (&metric::LISTENER_ACCEPTS_MAX, true),
    (&metric::LISTENERS_OMITTED, false),
    (&metric::POD_CPU, true),
    (&metric::POD_CPU_BUSIEST_SECOND, true),
    (&metric::POD_CPU_REQUEST, true),
    (&metric::POD_CPU_LIMIT, true),
    (&metric::POD_CPU_THROTTLED, true),
    (&metric::POD_MEMORY, false),
    (&metric::POD_MEMORY_PEAK, false),
    (&metric::POD_MEMORY_REQUEST, false),
    (&metric::POD_MEMORY_LIMIT, false),
    (&metric::POD_USE_OMITTED, false),
    (&metric::NODE_POD_CPU_BUSIEST_SECOND, true),
    (&metric::NODE_POD_CPU_REQUESTS, true),
    (&metric::NODE_POD_CPU_LIMITS, true),
    (&metric::WORKLOAD_PODS, false),
    (&metric::WORKLOAD_PODS_ABOVE_REQUEST_MAX, false),
    (&metric::WORKLOAD_PODS_ABOVE_REQUEST_P95, false),
    (&metric::DNS_SEARCH_EXPANSION_SHARE, true),
    (&metric::DNS_CACHEABLE_SHARE, true),
    (&metric::DNS_CACHE_SAVINGS_PPS, true),
    (&metric::DNS_CACHE_SAVINGS_PPS_PEAK, true),
    (&metric::DNS_NDOTS2_SAVINGS_PPS, true),
    (&metric::DNS_FQDN_SAVINGS_PPS, true),
    (&metric::DNS_TOP_QNAME_QUERIES, false),
    (&metric::DNS_TOP_SOURCE_QUERIES, false),
    (&metric::DNS_TOP_SOURCE_SEARCH_EXPANSION, false),
    (&metric::DNS_TOP_SOURCE_CACHE_SAVINGS_PPS, true),
    (&metric::LINKLOCAL_SERVICE_PPS_PEAK, false),
    (&metric::LINKLOCAL_PACKETS, false),
    (&metric::LINKLOCAL_PPS_PEAK, false),
    (&metric::LINKLOCAL_PPS_MEAN, true),
    (&metric::LINKLOCAL_PPS_LIMIT, false),
    (&metric::LINKLOCAL_UTILIZATION, true),
    (&metric::CAPTURE_DROPS, false),
    (&metric::DNS_QUERIES, false),
    (&metric::DNS_RESPONSES, false),
    (&metric::DNS_UNANSWERED, false),
    (&metric::DNS_SEARCH_EXPANSION, false),
    (&metric::DNS_CACHE_TABLE_EVICTIONS, false),
    (&metric::ENA_ALLOWANCE_EXCEEDED, false),
    (&metric::ENA_CONNTRACK_AVAILABLE, false),
    (&metric::NFS_OPS, false),
    (&metric::NFS_RTT_SECONDS, true),
    (&metric::NFS_EXECUTE_SECONDS, true),
    (&metric::NFS_BYTES, false),
    (&metric::NFS_OPS_PER_SECOND, true),
    (&metric::NFS_BYTES_PER_SECOND, true),
    (&metric::NFS_EXECUTE_MEAN_SECONDS, true),
    (&metric::NFS_MOUNTS_OMITTED, false),
];

/// The agent's metrics, updated from each report.
pub struct Metrics {
    registry: Registry,
    families: Vec<(&'static Descriptor, Fam)>,
    probes: probes::ProbeMetrics,
    /// When each counter series was last in a window: one absent for `forget_after` (a pod
    /// gone, an interface detached) is removed, so families do not grow with every rollout.
    counted: std::sync::Mutex<HashMap<(&'static str, Labels), Instant>>,
    forget_after: Duration,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let probes = probes::ProbeMetrics::register(&mut registry);
        let families = FIGURES
            .iter()
            .map(|&(d, float)| {
                let fam = match (d.kind, float) {
                    (Kind::Gauge, false) => Fam::Int(register_new(&mut registry, d)),
                    (Kind::Gauge, true) => Fam::Float(register_new(&mut registry, d)),
                    (_, false) => Fam::Count(register_new(&mut registry, d)),
                    (_, true) => Fam::FloatCount(register_new(&mut registry, d)),
                };
                (d, fam)
            })
            .collect();
        Metrics {
            registry,
            families,
            probes,
            counted: Default::default(),
            forget_after: crate::sources::listeners::FORGET_GONE,
        }
    }

    /// Applies one report window: gauges show this window's figures only; counters follow
    /// the agent's running totals, so a window never double counts, and those the window
    /// no longer has are removed.
    pub fn update(&self, report: &Report) {
        let now = Instant::now();
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        self.probes.update(&report.probes);
        for (_, fam) in &self.families {
            match fam {
                Fam::Int(f) => f.clear(),
                Fam::Float(f) => f.clear(),
                Fam::Count(_) | Fam::FloatCount(_) => {}
            }
        }
        for f in figures::of(report).iter().filter(|f| f.to != To::Otlp) {
            let Some((_, fam)) = self.families.iter().find(|(d, _)| *d == f.metric) else {
                continue;
            };
            let l = &f.labels;
            if matches!(fam, Fam::Count(_) | Fam::FloatCount(_)) {
                counted.insert((f.metric.prom, l.clone()), now);
            }
            match (fam, f.value) {
                (Fam::Int(g), Value::Int(v)) => {
                    g.get_or_create(l).set(v);
                }
                (Fam::Float(g), Value::Float(v)) => {
                    g.get_or_create(l).set(v);
                }
                (Fam::Count(c), Value::Int(v)) => follow(&c.get_or_create(l), v.max(0) as u64),
                (Fam::FloatCount(c), Value::Float(v)) => {
                    let c = c.get_or_create(l);
                    let gain = v - c.get();
                    if gain > 0.0 {
                        c.inc_by(gain);
                    }
                }
                _ => debug_assert!(false, "{} has a value of another type", f.metric.prom),
            }
        }
        counted.retain(|(name, labels), seen| {
            let keep = now.duration_since(*seen) < self.forget_after;
            if !keep {
                match self.families.iter().find(|(d, _)| d.prom == *name) {
                    Some((_, Fam::Count(c))) => c.remove(labels),
                    Some((_, Fam::FloatCount(c))) => c.remove(labels),
                    _ => false,
                };
            }
            keep
        });
    }

    /// The exposition in the Prometheus text format (0.0.4), which every scraper and
    /// `promtool check metrics` accept.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        openmetrics_to_text(&out)
    }

    /// Adds the OTLP exporter's counters (`run` with an OTLP endpoint).
    pub fn register_export(&mut self, s: &crate::export::otlp::ExportStats) {
        let r = &mut self.registry;
        register(r, &metric::OTLP_WINDOWS_SENT, s.sent.clone());
        register(r, &metric::OTLP_WINDOWS_DROPPED, s.dropped.clone());
        register(r, &metric::OTLP_SEND_FAILURES, s.failures.clone());
        register(r, &metric::OTLP_WINDOWS_QUEUED, s.queued.clone());
    }
}

/// Content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = headroom_signals::TEXT_CONTENT_TYPE;

pub use headroom_signals::openmetrics_to_text;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Node;
    use crate::sources::linklocal::meter::InterfaceWindow;

    #[test]
    fn exposition_carries_the_report() {
        let w = InterfaceWindow::capturing("eth0", [10, 0, 0], 7, [7, 0, 0], [25, 1, 0], 4);
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
            r#"headroom_dns_cacheable_share_ratio{interface="eth0",eni=""} 0.2"#.to_string(),
            r#"headroom_dns_cache_savings_pps{interface="eth0",eni=""} 0.8"#.to_string(),
            r#"headroom_dns_cache_savings_pps_peak{interface="eth0",eni=""} 5.0"#.to_string(),
            r#"headroom_dns_ndots2_savings_pps{interface="eth0",eni=""} 3.0"#.to_string(),
            r#"headroom_dns_fqdn_savings_pps{interface="eth0",eni=""} 3.0"#.to_string(),
            r#"headroom_dns_top_source_cache_savings_pps{interface="eth0",eni="",source="10.0.0.5",namespace="shop",pod="web-1",workload_kind="Deployment",workload="web"} 0.8"#.to_string(),
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
            workers: 4,
            busy_mean: 3.5,
            busy_max: 4,
            queue_max: 2,
            backlog: 8,
            utilization: 0.875,
            saturated_seconds: 1.5,
            samples: 50,
            saturated_seconds_total: 1.5,
            ..crate::sources::listeners::ListenerReport::test(8000)
        };
        let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
        r.listeners = vec![l.clone()];
        r.listeners_omitted = crate::sources::listeners::Omitted {
            pod_cap: 5,
            node_cap: 2,
        };
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
            format!("headroom_workers_utilization_ratio{labels} 0.875"),
            format!("headroom_accept_queue_depth_max{labels} 2"),
            format!("headroom_accept_queue_backlog{labels} 8"),
            format!("headroom_workers_saturated_seconds_total{labels} 4.0"),
            "headroom_listeners_omitted{} 7".to_string(),
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

    /// A counter series absent from the windows for `forget_after` is removed (issue 17: the
    /// families grew with every rollout); one still reported is kept with its value.
    #[test]
    fn counters_of_gone_listeners_are_forgotten() {
        let with_ports = |ports: &[u16]| {
            let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
            r.listeners = ports
                .iter()
                .map(|&p| crate::sources::listeners::ListenerReport {
                    saturated_seconds_total: 2.5,
                    ..crate::sources::listeners::ListenerReport::test(p)
                })
                .collect();
            r
        };
        let series = |text: &str, port: u16| {
            text.lines()
                .filter(|l| l.starts_with("headroom_workers_saturated_seconds_total{"))
                .any(|l| l.contains(&format!("port=\"{port}\"")) && l.ends_with(" 2.5"))
        };
        let mut m = Metrics::new();
        m.forget_after = Duration::from_millis(100);
        m.update(&with_ports(&[8000, 8001]));
        assert!(series(&m.encode(), 8000) && series(&m.encode(), 8001));
        m.update(&with_ports(&[8000]));
        assert!(series(&m.encode(), 8001), "kept while within forget_after");
        std::thread::sleep(Duration::from_millis(150));
        m.update(&with_ports(&[8000]));
        let text = m.encode();
        assert!(series(&text, 8000), "{text}");
        assert!(
            !series(&text, 8001),
            "gone listener's counter still there:\n{text}"
        );
        assert!(!text.contains(r#"port="8001""#), "{text}");
    }
}
