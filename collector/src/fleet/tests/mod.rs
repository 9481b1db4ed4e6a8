//! The fleet's behaviour through its front door (OTLP requests in, snapshots out), one file
//! per part, with the request builders they share.

mod dns;
mod interfaces;
mod lean;
mod probes;
mod workloads;

use super::interfaces::WindowPoint;
use super::listeners::ListenerWindow;
use super::store::{Count, Small};
pub use super::*;
pub use headroom_signals::metric as names;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
pub use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
pub use opentelemetry_proto::tonic::resource::v1::Resource;
pub use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

pub fn point(attrs: Vec<KeyValue>, start: u64, end: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

pub fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

pub fn sum(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

pub fn request(node: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "headroom-agent"),
                    kv("k8s.node.name", node),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn window(node: &str, start_s: u64, peak: f64, drops: f64) -> ExportMetricsServiceRequest {
    let a = || vec![kv("interface", "eth0"), kv("eni", "eni-1")];
    let (s, e) = (start_s * 1_000_000_000, (start_s + 10) * 1_000_000_000);
    request(
        node,
        vec![
            gauge(names::LINKLOCAL_PPS_PEAK.otlp, vec![point(a(), s, e, peak)]),
            gauge(
                names::LINKLOCAL_PPS_MEAN.otlp,
                vec![point(a(), s, e, peak / 2.0)],
            ),
            gauge(
                names::LINKLOCAL_PPS_LIMIT.otlp,
                vec![point(a(), s, e, 1024.0)],
            ),
            gauge(
                names::LINKLOCAL_UTILIZATION.otlp,
                vec![point(a(), s, e, peak / 1024.0)],
            ),
            Metric {
                name: names::CAPTURE_DROPS.otlp.into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![point(vec![kv("interface", "eth0")], 0, e, drops)],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
        ],
    )
}

pub fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

pub const S: u64 = 1_000_000_000;

/// One pod's listener in one window: (pod, busy mean, workers, queue max, saturated total).
pub type PodWindow<'a> = (&'a str, f64, f64, f64, f64);

/// A window of listener metrics as the agent sends them: gauges from start to end, the
/// saturated counter from `counter_start`.
pub fn listeners(
    node: &str,
    start: u64,
    end: u64,
    counter_start: u64,
    pods: &[PodWindow],
) -> ExportMetricsServiceRequest {
    let a = |pod: &str| {
        vec![
            kv("namespace", "shop"),
            kv("pod", pod),
            kv("container", "app"),
            kv("port", "8000"),
            kv("process", "gunicorn"),
            kv("workload_kind", "Deployment"),
            kv("workload", "web"),
        ]
    };
    let g = |name: &str, f: &dyn Fn(&PodWindow) -> f64| {
        gauge(
            name,
            pods.iter()
                .map(|p| point(a(p.0), start, end, f(p)))
                .collect(),
        )
    };
    request(
        node,
        vec![
            g(names::WORKERS.otlp, &|p| p.2),
            g(names::WORKERS_BUSY.otlp, &|p| p.1),
            g(names::WORKERS_BUSY_MAX.otlp, &|p| p.1.ceil()),
            g(names::ACCEPT_QUEUE_DEPTH_MAX.otlp, &|p| p.3),
            g(names::ACCEPT_QUEUE_BACKLOG.otlp, &|_| 128.0),
            sum(
                names::WORKERS_SATURATED_SECONDS.otlp,
                pods.iter()
                    .map(|p| point(a(p.0), counter_start, end, p.4))
                    .collect(),
            ),
        ],
    )
}

pub fn probe_window(
    start: u64,
    end: u64,
    counter_start: u64,
    counts: [(&str, f64); 4],
    removals: f64,
    p99: Option<f64>,
) -> ExportMetricsServiceRequest {
    let a = || {
        vec![
            kv("namespace", "shop"),
            kv("pod", "web-1"),
            kv("container", "app"),
            kv("probe", "readiness"),
            kv("target", "http://10.0.1.5:8000/healthz"),
            kv("workload_kind", "Deployment"),
            kv("workload", "web"),
        ]
    };
    let mut metrics = vec![
        gauge(names::PROBE_TIMEOUT.otlp, vec![point(a(), start, end, 1.0)]),
        sum(
            names::PROBE_ATTEMPTS.otlp,
            counts
                .iter()
                .map(|(r, v)| {
                    let mut at = a();
                    at.push(kv("result", r));
                    point(at, counter_start, end, *v)
                })
                .collect(),
        ),
        sum(
            names::PROBE_PREDICTED_REMOVALS.otlp,
            vec![point(a(), counter_start, end, removals)],
        ),
    ];
    if let Some(p) = p99 {
        metrics.push(gauge(
            names::PROBE_LATENCY_P99.otlp,
            vec![point(a(), start, end, p)],
        ));
        metrics.push(gauge(
            names::PROBE_LATENCY_MAX.otlp,
            vec![point(a(), start, end, p * 2.0)],
        ));
    }
    request("n1", metrics)
}

pub fn dns_window(
    start: u64,
    end: u64,
    counter_start: u64,
    allowance: &[(&str, f64)],
    unanswered: f64,
) -> ExportMetricsServiceRequest {
    let a = || vec![kv("interface", "eth0"), kv("eni", "eni-1")];
    let with = |extra: Vec<KeyValue>| {
        let mut v = a();
        v.extend(extra);
        v
    };
    let source = || {
        with(vec![
            kv("source", "10.0.1.5"),
            kv("namespace", "shop"),
            kv("pod", "web-1"),
            kv("workload_kind", "Deployment"),
            kv("workload", "web"),
        ])
    };
    request(
        "n1",
        vec![
            gauge(
                names::LINKLOCAL_PPS_PEAK.otlp,
                vec![point(a(), start, end, 600.0)],
            ),
            gauge(
                names::LINKLOCAL_SERVICE_PPS_PEAK.otlp,
                vec![
                    point(with(vec![kv("service", "dns")]), start, end, 550.0),
                    point(with(vec![kv("service", "imds")]), start, end, 50.0),
                ],
            ),
            sum(
                names::ENA_ALLOWANCE_EXCEEDED.otlp,
                allowance
                    .iter()
                    .map(|(n, v)| point(with(vec![kv("allowance", n)]), counter_start, end, *v))
                    .collect(),
            ),
            sum(
                names::DNS_UNANSWERED.otlp,
                vec![point(a(), counter_start, end, unanswered)],
            ),
            sum(
                names::DNS_QUERIES.otlp,
                vec![point(a(), counter_start, end, unanswered * 100.0)],
            ),
            gauge(
                names::DNS_SEARCH_EXPANSION_SHARE.otlp,
                vec![point(a(), start, end, 0.8)],
            ),
            gauge(
                names::DNS_TOP_QNAME_QUERIES.otlp,
                vec![
                    point(
                        with(vec![kv("qname", "db.example.com.shop.svc.cluster.local")]),
                        start,
                        end,
                        400.0,
                    ),
                    point(with(vec![kv("qname", "db.example.com")]), start, end, 100.0),
                ],
            ),
            gauge(
                names::DNS_TOP_SOURCE_QUERIES.otlp,
                vec![point(source(), start, end, 500.0)],
            ),
            gauge(
                names::DNS_TOP_SOURCE_SEARCH_EXPANSION.otlp,
                vec![point(source(), start, end, 400.0)],
            ),
        ],
    )
}

#[test]
fn limits_bound_memory_and_nodes_expire() {
    let limits = Limits {
        max_series_per_metric: 10,
        max_nodes: 2,
        ..Limits::default()
    };
    let mut f = Fleet::new(limits);
    let t0 = 1_700_000_000;
    let points = (0..100)
        .map(|i| point(vec![kv("user", &i.to_string())], 0, 0, 1.0))
        .collect();
    let a = f.apply_metrics(&request("n1", vec![gauge("app.requests", points)]), at(t0));
    assert_eq!(
        a,
        Applied {
            accepted: 10,
            rejected: 90,
            over_series: 0
        }
    );
    f.apply_metrics(&window("n2", t0, 1.0, 0.0), at(t0));
    let a = f.apply_metrics(&window("n3", t0, 1.0, 0.0), at(t0));
    assert_eq!(a.accepted, 0, "third node over max_nodes");
    f.apply_metrics(&window("n2", t0 + 900, 1.0, 0.0), at(t0 + 900));
    f.expire(at(t0 + 901));
    let s = f.snapshot(at(t0 + 901));
    assert_eq!(s.nodes, 1);
    assert_eq!(s.clusters[0].nodes[0].name, "n2");
    assert_eq!(s.ingest.nodes_expired, 1);
    assert_eq!(s.ingest.points_rejected, 95);
}

#[test]
fn listeners_and_probes_are_bounded_and_expire() {
    let t0 = 1_700_000_000;
    let limits = Limits {
        max_listeners_per_node: 2,
        max_probes_per_node: 1,
        ..Limits::default()
    };
    let mut f = Fleet::new(limits);
    let pods: Vec<PodWindow> = (0..5).map(|_| ("x", 1.0, 2.0, 0.0, 0.0)).collect();
    let names = ["p0", "p1", "p2", "p3", "p4"];
    let pods: Vec<PodWindow> = pods
        .iter()
        .zip(names)
        .map(|(p, n)| (n, p.1, p.2, p.3, p.4))
        .collect();
    let a = f.apply_metrics(
        &listeners("n1", t0 * S, (t0 + 10) * S, t0 * S, &pods),
        at(t0 + 10),
    );
    // 6 metrics × 5 pods; 2 listeners kept.
    assert_eq!(
        a,
        Applied {
            accepted: 12,
            rejected: 18,
            over_series: 0
        }
    );
    f.apply_metrics(
        &probe_window(
            t0 * S,
            (t0 + 10) * S,
            t0 * S,
            [("ok", 1.0), ("slow", 0.0), ("timeout", 0.0), ("error", 0.0)],
            0.0,
            Some(0.1),
        ),
        at(t0 + 10),
    );
    // Too old for the 15 m workload history: refused.
    let a = f.apply_metrics(
        &listeners("n1", (t0 - 1000) * S, (t0 - 990) * S, t0 * S, &pods[..1]),
        at(t0 + 10),
    );
    assert_eq!(a.rejected, 6);
    // The node goes on reporting its interface for 20 minutes; the pods went away.
    for m in 1..=20 {
        f.apply_metrics(&window("n1", t0 + 60 * m, 1.0, 0.0), at(t0 + 60 * m + 10));
    }
    f.expire(at(t0 + 1210));
    let s = f.snapshot(at(t0 + 1210));
    let n = &s.clusters[0].nodes[0];
    assert!(n.listeners.is_empty() && n.probes.is_empty());
    assert!(s.clusters[0].workloads.is_empty());
    assert_eq!(s.ingest.listeners_probes_expired, 3);
    assert_eq!(s.nodes, 1);
}

#[test]
fn window_records_stay_small() {
    // What an hour of windows for every interface and listener costs, before map overhead.
    assert!(std::mem::size_of::<WindowPoint>() <= 40);
    assert!(std::mem::size_of::<ListenerWindow>() <= 48);
    assert_eq!(Small::of(0.586).get(), Some(0.586));
    assert_eq!(Small::of(93.4).get(), Some(93.4));
    assert_eq!(Small::default().get(), None);
    assert_eq!(Small::of(900.0 / 1024.0).get(), Some(0.87890625));
    assert_eq!(Small::of(1024.0).get(), Some(1024.0));
    assert_eq!(Small::of(0.0).get(), Some(0.0));
    assert_eq!(
        (Count::of(4.0).get(), Count::default().get()),
        (Some(4), None)
    );
}

/// One request for `nodes` nodes, each with one generic point per value in `values`.
fn many_nodes(nodes: usize, values: usize, t: u64) -> ExportMetricsServiceRequest {
    let mut req = request("n0", vec![]);
    let proto = req.resource_metrics.pop().unwrap();
    req.resource_metrics = (0..nodes)
        .map(|n| {
            let mut rm = proto.clone();
            rm.resource.as_mut().unwrap().attributes[1] = kv("k8s.node.name", &format!("n{n}"));
            let points = (0..values)
                .map(|v| point(vec![kv("user", &v.to_string())], 0, t * S, 1.0))
                .collect();
            rm.scope_metrics[0].metrics = vec![gauge("app.sessions", points)];
            rm
        })
        .collect();
    req
}

#[test]
fn one_request_adds_few_nodes_and_the_fleet_few_series() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits {
        max_new_nodes_per_request: 3,
        max_series: 10,
        ..Limits::default()
    });
    let a = f.apply_metrics(&many_nodes(1000, 2, t0), at(t0));
    assert_eq!(a.accepted, 6, "3 nodes × 2 series");
    let s = f.snapshot(at(t0));
    assert_eq!(s.nodes, 3);
    assert_eq!(s.ingest.bounds[Bound::NodesPerRequest.name()], 997);
    // Known nodes are not new: their points are taken; 4 more series fit the budget of 10.
    let a = f.apply_metrics(&many_nodes(3, 4, t0 + 1), at(t0 + 1));
    assert_eq!((a.accepted, a.over_series), (10, 2));
    let s = f.snapshot(at(t0 + 1));
    assert_eq!(s.ingest.bounds[Bound::SeriesMax.name()], 2);
    // Expired nodes give their series back.
    f.expire(at(t0 + 2000));
    let a = f.apply_metrics(&many_nodes(2, 5, t0 + 2000), at(t0 + 2000));
    assert_eq!(a.accepted, 10);
}

/// A snapshot made on several threads is the one made on one, node for node and cluster
/// for cluster (every part of a node in it: interfaces, DNS, listeners, probes).
#[test]
fn a_snapshot_spread_over_threads_is_the_one_made_on_one() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let mut want: Vec<(String, Vec<String>)> = Vec::new();
    for (c, nodes) in [("a", 4), ("b", 1), ("c", 6)] {
        let mut names = Vec::new();
        for n in 0..nodes {
            let name = format!("{c}-n{n}");
            let pods: Vec<PodWindow> = vec![("p0", n as f64, 4.0, 1.0, 2.0)];
            for mut req in [
                window(&name, t0, 100.0 + n as f64, 0.0),
                listeners(&name, t0 * S, (t0 + 10) * S, t0 * S, &pods),
                dns_window(t0 * S, (t0 + 10) * S, t0 * S, &[("pps", n as f64)], 1.0),
                probe_window(
                    t0 * S,
                    (t0 + 10) * S,
                    t0 * S,
                    [
                        ("success", 5.0),
                        ("timeout", n as f64),
                        ("failure", 0.0),
                        ("error", 0.0),
                    ],
                    0.0,
                    Some(0.2),
                ),
            ] {
                let attrs = &mut req.resource_metrics[0]
                    .resource
                    .as_mut()
                    .unwrap()
                    .attributes;
                attrs.retain(|a| a.key != "k8s.node.name");
                attrs.push(kv("k8s.node.name", &name));
                attrs.push(kv("k8s.cluster.name", c));
                f.apply_metrics(&req, at(t0 + 10));
            }
            names.push(name);
        }
        want.push((c.to_string(), names));
    }
    let view = f.view();
    // At t0 + 11 a lean snapshot gathers what each report made; at t0 + 100 (the reports
    // older than `LEAN_FRESH`) it makes every node again.
    let cases = [(false, false), (false, true), (true, true)];
    for (now, (history, full)) in [at(t0 + 11), at(t0 + 100)]
        .into_iter()
        .flat_map(|now| cases.map(|c| (now, c)))
    {
        let one = view.build_on(now, history, full, 1);
        let got: Vec<(String, Vec<String>)> = one
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.nodes.iter().map(|n| n.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(got, want, "each cluster holds its own nodes, in order");
        assert!(one
            .clusters
            .iter()
            .all(|c| c.nodes.iter().all(|n| !n.interfaces.is_empty())));
        let one = serde_json::to_string(&one).unwrap();
        for threads in [2, 3, 11, 64] {
            let spread =
                serde_json::to_string(&view.build_on(now, history, full, threads)).unwrap();
            assert_eq!(
                spread, one,
                "{threads} threads, history {history}, full {full}"
            );
        }
    }
}

#[test]
fn pages_walk_every_node_once_and_a_node_alone() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let mut all = Vec::new();
    for c in ["a", "b", "c"] {
        for n in 0..5 {
            let name = format!("n{n}");
            let mut req = window(&name, t0, 1.0, 0.0);
            let res = req.resource_metrics[0].resource.as_mut().unwrap();
            res.attributes.push(kv("k8s.cluster.name", c));
            f.apply_metrics(&req, at(t0 + 10));
            all.push(format!("{c}/{name}"));
        }
    }
    let q = |after: Option<(String, String)>, limit| PageQuery {
        node: None,
        cluster: None,
        after,
        limit,
        history: false,
    };
    for limit in [1, 2, 4, 5, 7, 15, 100] {
        let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let p = f.page(at(t0 + 11), &q(after.clone(), limit));
            pages += 1;
            assert_eq!(p.nodes, 15);
            let names: Vec<String> = p
                .nodes()
                .map(|(c, n)| format!("{}/{}", c.name, n.name))
                .collect();
            assert!(names.len() <= limit);
            seen.extend(names);
            match p.next {
                Some(n) => {
                    assert_eq!(Some(&n), seen.last(), "the cursor is the page's last node");
                    let (c, n) = n.split_once('/').unwrap();
                    after = Some((c.to_string(), n.to_string()));
                }
                None => break,
            }
            assert!(pages < 100);
        }
        assert_eq!(seen, all, "limit {limit}");
    }
    let p = f.page(
        at(t0 + 11),
        &PageQuery {
            node: Some("n3".into()),
            cluster: Some("b".into()),
            ..q(None, 1000)
        },
    );
    let names: Vec<String> = p
        .nodes()
        .map(|(c, n)| format!("{}/{}", c.name, n.name))
        .collect();
    assert_eq!(names, ["b/n3"]);
    assert!(p.next.is_none());
}

#[test]
fn the_first_page_carries_its_clusters_workloads_even_when_full() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let pods: Vec<PodWindow> = vec![("p0", 1.0, 2.0, 0.0, 0.0), ("p1", 1.0, 2.0, 0.0, 0.0)];
    for n in ["n1", "n2", "n3"] {
        f.apply_metrics(
            &listeners(n, t0 * S, (t0 + 10) * S, t0 * S, &pods),
            at(t0 + 10),
        );
    }
    let full = f.snapshot_with(at(t0 + 10), false);
    assert!(!full.clusters[0].workloads.is_empty());
    let q = PageQuery {
        node: None,
        cluster: None,
        after: None,
        limit: 2,
        history: false,
    };
    let p = f.page(at(t0 + 10), &q);
    assert_eq!(p.clusters[0].nodes.len(), 2);
    assert!(p.next.is_some());
    assert_eq!(
        serde_json::to_value(&p.clusters[0].workloads).unwrap(),
        serde_json::to_value(&full.clusters[0].workloads).unwrap()
    );
}
