//! The OTLP encoders against hand-built reports.

use super::encode::*;
use crate::report::Report;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::status;

/// A report whose one probe (readiness of shop/web, timeout 1 s) had a fast success, a
/// slow one, a timeout while both workers were busy, and a 503.
fn probe_report() -> Report {
    use crate::sources::probes::shadow::Attempt;
    use crate::sources::probes::stats::Outcome;
    use crate::sources::probes::{ProbeLog, Saturation};
    use std::time::{Duration, UNIX_EPOCH};
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "shop", "name": "web-7d9f8b6c5-x2k4p", "uid": "u1",
                     "labels": {"pod-template-hash": "7d9f8b6c5"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "name": "web-7d9f8b6c5", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 8080, "path": "/h"}}}]},
        "status": {"podIP": "10.0.0.5"}
    }))
    .unwrap();
    let spec = crate::sources::probes::spec::probes_of(&pod).remove(0);
    let log = ProbeLog::default();
    log.set_specs(std::slice::from_ref(&spec));
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
    let a = |ms: u64, outcome, elapsed: u64, status, error: Option<&str>| Attempt {
        started: at(ms),
        outcome,
        elapsed: Duration::from_millis(elapsed),
        status,
        error: error.map(str::to_string),
    };
    let busy = Saturation {
        busy: 2,
        workers: 2,
        queue: 3,
    };
    let k = spec.key();
    log.record(&k, &a(0, Outcome::Ok, 10, Some(200), None), None);
    log.record(&k, &a(1000, Outcome::Slow, 700, Some(200), None), None);
    log.record(&k, &a(2000, Outcome::Timeout, 1000, None, None), Some(busy));
    log.record(
        &k,
        &a(3000, Outcome::Error, 4, Some(503), Some("HTTP status 503")),
        None,
    );
    let mut r = Report::new(
        Node::default(),
        1_700_000_000_000_000_000,
        1_700_000_010_000_000_000,
        &[],
    );
    r.probes = log.cut();
    let idx = crate::enrich::pods::PodIndex::default();
    idx.rebuild([&pod]);
    r.probes[0].workload = idx.workload("u1");
    r
}

fn attr_of<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|a| a.key == k)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn numbers(m: &Metric) -> Vec<&NumberDataPoint> {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} is monotonic", m.name);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            s.data_points.iter().collect()
        }
        _ => panic!("{} is not a number metric", m.name),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => f64::NAN,
    }
}

/// The one point whose attributes include every `(key, value)` of `with`.
fn only<'a>(m: &'a Metric, with: &[(&str, &str)]) -> &'a NumberDataPoint {
    let hits: Vec<_> = numbers(m)
        .into_iter()
        .filter(|p| with.iter().all(|(k, v)| p.attributes.contains(&kv(k, v))))
        .collect();
    assert_eq!(hits.len(), 1, "{} {with:?}: {hits:?}", m.name);
    hits[0]
}

const START: u64 = 1_700_000_000_000_000_000;
const END: u64 = 1_700_000_010_000_000_000;

#[test]
fn probes_become_histograms_counters_and_gauges() {
    let r = probe_report();
    let req = request(&r, resource(&r, &[]), 1_600_000_000_000_000_000);
    let h = metric(&req, "headroom.probe.duration.seconds");
    let Some(metric::Data::Histogram(h)) = &h.data else {
        panic!("a histogram")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &h.data_points[0];
    assert_eq!(p.count, 4);
    // The bounds written out (dashboards and docs/reference.md rely on them), not the
    // constant the encoder itself reads.
    assert_eq!(
        p.explicit_bounds,
        [0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0]
    );
    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
    // 0.004 and 0.01 s ≤ 0.05; 0.7 s ≤ 0.75; the timeout at its timeout, 1 s.
    assert_eq!(p.bucket_counts[0], 2);
    assert_eq!(p.bucket_counts[4], 1);
    assert_eq!(p.bucket_counts[5], 1);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), 4);
    assert!((p.sum.unwrap() - 1.714).abs() < 1e-9);
    assert!(p.attributes.contains(&kv("workload", "web")));
    assert_eq!(p.time_unix_nano, END);
    // Cumulative: from when the probe was first counted, never before the process.
    assert!(p.start_time_unix_nano >= 1_600_000_000_000_000_000);
    assert!(p.start_time_unix_nano <= END);
    let attempts = metric(&req, "headroom.probe.attempts");
    for (result, n) in [("ok", 1.0), ("slow", 1.0), ("timeout", 1.0), ("error", 1.0)] {
        assert_eq!(value(only(attempts, &[("result", result)])), n, "{result}");
    }
    let removals = metric(&req, "headroom.probe.predicted.removals");
    assert_eq!(value(only(removals, &[("probe", "readiness")])), 0.0);
    let g = |name: &str| {
        let p = only(metric(&req, name), &[("pod", "web-7d9f8b6c5-x2k4p")]);
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (START, END));
        value(p)
    };
    assert_eq!(g("headroom.probe.timeout.seconds"), 1.0);
    assert_eq!(g("headroom.probe.latency.p99.seconds"), 1.0);
    assert_eq!(g("headroom.probe.latency.max.seconds"), 1.0);
}

#[test]
fn listeners_dns_talkers_services_and_allowances_are_exported() {
    let w = InterfaceWindow::with_dns_talkers("StatefulSet");
    let mut r = Report::new(Node::default(), START, END, &[w]);
    r.interfaces[0].eni_id = Some("eni-1".into());
    r.interfaces[0].allowance_totals = [("linklocal_allowance_exceeded".to_string(), 17)]
        .into_iter()
        .collect();
    let listener =
        |address: &str, workers: u32, busy_max: u32| crate::sources::listeners::ListenerReport {
            pod: Some(crate::sources::listeners::PodRef {
                namespace: Some("shop".into()),
                name: Some("web-1".into()),
                uid: "u".into(),
            }),
            container: Some("c0ffee".into()),
            address: address.into(),
            workers,
            busy_mean: 1.5,
            busy_max,
            queue_max: 3,
            backlog: 128,
            utilization: 0.75,
            saturated_seconds: 2.0,
            samples: 50,
            workload: Some(crate::pod::Workload {
                kind: "StatefulSet".into(),
                name: "web".into(),
            }),
            saturated_seconds_total: 5.5,
            ..crate::sources::listeners::ListenerReport::test(8000)
        };
    // The same port over IPv4 and IPv6: one series, the one with the workers.
    r.listeners = vec![listener("0.0.0.0", 2, 2), listener("::", 0, 0)];
    let req = request(&r, resource(&r, &[]), 42);
    let ll = [("namespace", "shop"), ("pod", "web-1"), ("port", "8000")];
    let lw = [("workload_kind", "StatefulSet"), ("workload", "web")];
    for (name, want) in [
        ("headroom.workers", 2.0),
        ("headroom.workers.busy", 1.5),
        ("headroom.workers.busy.max", 2.0),
        ("headroom.workers.utilization", 0.75),
        ("headroom.accept.queue.depth.max", 3.0),
        ("headroom.accept.queue.backlog", 128.0),
    ] {
        let p = only(metric(&req, name), &ll);
        assert_eq!(value(p), want, "{name}");
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (START, END));
        assert!(lw.iter().all(|(k, v)| p.attributes.contains(&kv(k, v))));
        assert!(p.attributes.contains(&kv("process", "gunicorn")));
        assert!(p.attributes.contains(&kv("container", "c0ffee")));
    }
    let sat = only(metric(&req, "headroom.workers.saturated.seconds"), &ll);
    assert_eq!((value(sat), sat.start_time_unix_nano), (5.5, 42));
    let svc = metric(&req, "headroom.linklocal.service.pps.peak");
    assert_eq!(
        value(only(svc, &[("service", "dns"), ("eni", "eni-1")])),
        6.0
    );
    assert_eq!(value(only(svc, &[("service", "imds")])), 2.0);
    let ena = only(
        metric(&req, "headroom.ena.allowance.exceeded"),
        &[("allowance", "linklocal")],
    );
    assert_eq!((value(ena), ena.start_time_unix_nano), (17.0, 42));
    let share = only(metric(&req, "headroom.dns.search.expansion.share"), &[]);
    assert_eq!(value(share), 0.75);
    for (name, want) in [
        ("headroom.dns.cacheable.share", 0.2),
        ("headroom.dns.cache.savings.pps", 0.8),
        ("headroom.dns.cache.savings.pps.peak", 5.0),
        ("headroom.dns.ndots2.savings.pps", 3.0),
        ("headroom.dns.fqdn.savings.pps", 3.0),
    ] {
        assert_eq!(value(only(metric(&req, name), &[])), want, "{name}");
    }
    let q = only(
        metric(&req, "headroom.dns.top.qname.queries"),
        &[("qname", "db.shop.svc.cluster.local")],
    );
    assert_eq!(
        (value(q), q.start_time_unix_nano, q.time_unix_nano),
        (25.0, START, END)
    );
    let src = [
        ("source", "10.0.0.5"),
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("workload_kind", "StatefulSet"),
        ("workload", "web"),
    ];
    assert_eq!(
        value(only(metric(&req, "headroom.dns.top.source.queries"), &src)),
        40.0
    );
    assert_eq!(
        value(only(
            metric(&req, "headroom.dns.top.source.search.expansion.packets"),
            &src
        )),
        30.0
    );
    assert_eq!(
        value(only(
            metric(&req, "headroom.dns.top.source.cache.savings.pps"),
            &src
        )),
        0.8
    );
    // No probes in this report: no probe metrics at all.
    let names: Vec<&str> = req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("headroom.probe.")),
        "{names:?}"
    );
}

#[test]
fn not_ok_probe_attempts_are_probe_spans_at_their_real_times() {
    use any_value::Value::{DoubleValue, IntValue, StringValue};
    let r = probe_report();
    let t = spans(&r, resource(&r, &[])).expect("probe spans without resolver checks");
    let sp = &t.resource_spans[0].scope_spans[0].spans;
    assert_eq!(sp.len(), 3, "slow, timeout and error; not the ok one");
    let s = |v: &str| Some(StringValue(v.into()));
    for x in sp {
        assert_eq!(x.name, "probe");
        assert_eq!(attr_of(&x.attributes, "namespace"), s("shop").as_ref());
        assert_eq!(
            attr_of(&x.attributes, "pod"),
            s("web-7d9f8b6c5-x2k4p").as_ref()
        );
        assert_eq!(attr_of(&x.attributes, "container"), s("app").as_ref());
        assert_eq!(attr_of(&x.attributes, "probe"), s("readiness").as_ref());
        assert_eq!(
            attr_of(&x.attributes, "target"),
            s("http://10.0.0.5:8080/h").as_ref()
        );
        assert_eq!(
            attr_of(&x.attributes, "workload_kind"),
            s("Deployment").as_ref()
        );
        assert_eq!(attr_of(&x.attributes, "workload"), s("web").as_ref());
        assert_eq!(
            attr_of(&x.attributes, "probe.timeout_seconds"),
            Some(&DoubleValue(1.0))
        );
    }
    let (slow, tmo, err) = (&sp[0], &sp[1], &sp[2]);
    assert_eq!(slow.start_time_unix_nano, 1_700_000_001_000_000_000);
    assert_eq!(slow.end_time_unix_nano, 1_700_000_001_700_000_000);
    assert_eq!(
        attr_of(&slow.attributes, "probe.outcome"),
        s("slow").as_ref()
    );
    assert_eq!(
        attr_of(&slow.attributes, "http.response.status_code"),
        Some(&IntValue(200))
    );
    assert_eq!(
        slow.status.as_ref().unwrap().code,
        status::StatusCode::Unset as i32
    );
    assert!(
        attr_of(&slow.attributes, "workers.busy").is_none(),
        "no listener known"
    );
    assert_eq!(tmo.start_time_unix_nano, 1_700_000_002_000_000_000);
    assert_eq!(
        tmo.end_time_unix_nano - tmo.start_time_unix_nano,
        1_000_000_000
    );
    assert_eq!(
        attr_of(&tmo.attributes, "probe.elapsed_seconds"),
        Some(&DoubleValue(1.0))
    );
    assert_eq!(attr_of(&tmo.attributes, "workers.busy"), Some(&IntValue(2)));
    assert_eq!(
        attr_of(&tmo.attributes, "workers.total"),
        Some(&IntValue(2))
    );
    assert_eq!(
        attr_of(&tmo.attributes, "accept_queue.depth"),
        Some(&IntValue(3))
    );
    let st = tmo.status.as_ref().unwrap();
    assert_eq!(st.code, status::StatusCode::Error as i32);
    assert_eq!(st.message, "timed out after 1 s");
    assert_eq!(
        attr_of(&err.attributes, "probe.error"),
        s("HTTP status 503").as_ref()
    );
    assert_eq!(
        err.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert_ne!(tmo.trace_id, err.trace_id);
}
use crate::report::Node;
use crate::sources::linklocal::meter::InterfaceWindow;

#[test]
fn a_window_becomes_gauges_at_its_end() {
    let w = InterfaceWindow {
        dns_totals: crate::sources::dns::tracker::DnsTotals {
            queries: 12,
            responses: [("NOERROR".to_string(), 11)].into_iter().collect(),
            unanswered: 1,
            search_expansion: 0,
            cacheable: 0,
            cache_evictions: 0,
        },
        ..InterfaceWindow::capturing("eth0", [10, 0, 0], 7, [7, 0, 0], [25, 1, 0], 4)
    };
    let node = Node {
        name: "ip-10-0-0-1".into(),
        ..Node::default()
    };
    let r = Report::new(node, 5_000_000_000, 15_000_000_000, &[w]);
    let extra = parse_resource_attributes("k8s.cluster.name=prod%2Deu,service.name=x");
    let req = request(&r, resource(&r, &extra), 1);
    let rm = &req.resource_metrics[0];
    let res = &rm.resource.as_ref().unwrap().attributes;
    let get = |k: &str| {
        res.iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    let s = |v: &str| Some(any_value::Value::StringValue(v.into()));
    assert_eq!(get("service.name"), s("headroom-agent"));
    assert_eq!(get("k8s.node.name"), s("ip-10-0-0-1"));
    assert_eq!(get("k8s.cluster.name"), s("prod-eu"));
    assert_eq!(get("cloud.provider"), s("aws"));
    assert_eq!(get("headroom.agent.mode"), s("node"));
    assert_eq!(get("k8s.pod.name"), None, "a node agent is no pod's");
    // A sidecar says so, with its pod.
    let mut side = r.clone();
    side.node.mode = crate::mode::Mode::Sidecar;
    side.node.pod = Some(crate::mode::OwnPod {
        namespace: Some("shop".into()),
        name: Some("web-0".into()),
        uid: Some("u-1".into()),
        ip: Some("10.244.0.5".into()),
    });
    let sres = resource(&side, &[]).attributes;
    let sget = |k: &str| {
        sres.iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(sget("headroom.agent.mode"), s("sidecar"));
    assert_eq!(sget("k8s.namespace.name"), s("shop"));
    assert_eq!(sget("k8s.pod.name"), s("web-0"));
    assert_eq!(sget("k8s.pod.uid"), s("u-1"));
    assert_eq!(sget("k8s.pod.ip"), s("10.244.0.5"));
    let m = &rm.scope_metrics[0].metrics;
    let peak = m
        .iter()
        .find(|m| m.name == "headroom.linklocal.pps.peak")
        .unwrap();
    let Some(metric::Data::Gauge(g)) = &peak.data else {
        panic!("peak is a gauge")
    };
    let p = &g.data_points[0];
    assert_eq!(p.start_time_unix_nano, 5_000_000_000);
    assert_eq!(p.time_unix_nano, 15_000_000_000);
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(7)));
    let packets = m
        .iter()
        .find(|m| m.name == "headroom.linklocal.packets")
        .unwrap();
    let Some(metric::Data::Sum(s)) = &packets.data else {
        panic!("packets is a sum")
    };
    assert_eq!(s.data_points.len(), 3);
    assert!(s.is_monotonic);
    let responses = m
        .iter()
        .find(|m| m.name == "headroom.dns.responses")
        .unwrap();
    let Some(metric::Data::Sum(s)) = &responses.data else {
        panic!("responses is a sum")
    };
    let p = &s.data_points[0];
    assert!(p.attributes.contains(&kv("rcode", "NOERROR")));
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(11)));
    assert!(
        spans(&r, resource(&r, &[])).is_none(),
        "no checks, no spans"
    );
    let mut r = r;
    r.resolver_checks
        .push(crate::sources::resolver_checks::ResolverCheck {
            resolver: "169.254.169.253".into(),
            qname: "example.com".into(),
            rcode: "TIMEOUT".into(),
            elapsed_ms: 2000.0,
            attempt: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            answers: vec![],
        });
    let t = spans(&r, resource(&r, &[])).unwrap();
    let sp = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, "dns.resolve");
    assert_eq!(
        sp.end_time_unix_nano - sp.start_time_unix_nano,
        2_000_000_000
    );
    assert_eq!(sp.trace_id.len(), 16);
    assert_eq!(sp.span_id.len(), 8);
    assert_eq!(
        sp.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
}
