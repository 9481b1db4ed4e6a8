use super::*;

/// Two nodes, two pods each of Deployment shop/web, three 10 s windows per node; node 2's
/// windows start `offset` seconds after node 1's. Busy per window: n1 pods [1,2,3] and
/// [0,1,1] (node sums 1,3,4); n2 pods [2,2,2] and [1,1,3] (sums 3,3,5).
#[test]
fn workload_busy_sums_over_offset_nodes() {
    struct Case {
        offset: u64,
        /// busy sums at each window end, worked out by hand from the windows in effect.
        sums: &'static [f64],
    }
    let cases = [
        // Aligned: ends 10, 20, 30 → 1+3, 3+3, 4+5.
        Case {
            offset: 0,
            sums: &[4.0, 6.0, 9.0],
        },
        // n2 5 s later: ends 10 (1+3), 15 (3+3), 20 (3+3), 25 (4+3), 30 (4+5); n2's end 35
        // waits for n1's next window.
        Case {
            offset: 5,
            sums: &[4.0, 6.0, 6.0, 7.0, 9.0],
        },
        // n2 1 s later: ends 10 (1+3), 11 (3+3), 20 (3+3), 21 (4+3), 30 (4+5).
        Case {
            offset: 1,
            sums: &[4.0, 6.0, 6.0, 7.0, 9.0],
        },
    ];
    let t0 = 1_700_000_000;
    for case in cases {
        let mut f = Fleet::new(Limits::default());
        let n1 = [[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]];
        let n2 = [[2.0, 2.0, 2.0], [1.0, 1.0, 3.0]];
        for w in 0..3u64 {
            for (node, pods, off) in [("n1", &n1, 0), ("n2", &n2, case.offset)] {
                let start = (t0 + off + w * 10) * S;
                let end = start + 10 * S;
                let names = if node == "n1" {
                    ["web-1", "web-2"]
                } else {
                    ["web-3", "web-4"]
                };
                // Saturated seconds: pod 1 of each node 0.5 s in every window, pod 2 none;
                // queue: window w has depth w on pod 1.
                let pw: Vec<PodWindow> = vec![
                    (
                        names[0],
                        pods[0][w as usize],
                        4.0,
                        w as f64,
                        0.5 * (w + 1) as f64,
                    ),
                    (names[1], pods[1][w as usize], 4.0, 0.0, 0.0),
                ];
                let a =
                    f.apply_metrics(&listeners(node, start, end, (t0 - 1) * S, &pw), at(t0 + 40));
                assert_eq!(a.rejected, 0);
            }
        }
        let s = f.snapshot(at(t0 + 40));
        let c = &s.clusters[0];
        assert_eq!(c.workloads.len(), 1, "one Deployment");
        let wl = &c.workloads[0];
        let n = case.sums.len() as f64;
        let mean = case.sums.iter().sum::<f64>() / n;
        assert_eq!(
            (wl.namespace.as_str(), wl.kind.as_str(), wl.name.as_str()),
            ("shop", "Deployment", "web")
        );
        assert_eq!(
            wl.pods,
            ["n1/web-1", "n1/web-2", "n2/web-3", "n2/web-4"],
            "offset {}",
            case.offset
        );
        assert_eq!(wl.workers_per_pod, 4);
        assert_eq!(
            wl.windows as usize,
            case.sums.len(),
            "offset {}",
            case.offset
        );
        assert!(
            (wl.busy_mean - mean).abs() < 1e-9,
            "offset {}: {} vs {mean}",
            case.offset,
            wl.busy_mean
        );
        assert_eq!(wl.busy_p95, aggregate::p95(case.sums));
        assert_eq!(wl.busy_max, 9.0);
        assert_eq!(wl.busy_latest, 9.0);
        assert_eq!(wl.queue_max, 2);
        // Two pods × 1.5 s; the counters started 1 s before the first window, inside the
        // 15 m history, so the first window's 0.5 s counts.
        assert!(
            (wl.saturated_seconds - 3.0).abs() < 1e-9,
            "{}",
            wl.saturated_seconds
        );
        assert_eq!(wl.history_seconds, (30 + case.offset) as f64);
        let l = &c.nodes[0].listeners[0];
        assert_eq!(
            (l.pod.as_str(), l.port, l.workers, l.busy_max),
            ("web-1", Some(8000), 4, 3)
        );
        assert_eq!(l.utilization, 0.75);
        assert_eq!(l.saturated_seconds_total, 1.5);
    }
}

#[test]
fn pods_without_a_workload_are_their_own() {
    let mut f = Fleet::new(Limits::default());
    let t0 = 1_700_000_000;
    let mut req = listeners(
        "n1",
        t0 * S,
        (t0 + 10) * S,
        t0 * S,
        &[("solo", 2.0, 4.0, 0.0, 0.0)],
    );
    for m in &mut req.resource_metrics[0].scope_metrics[0].metrics {
        let points = match &mut m.data {
            Some(metric::Data::Gauge(g)) => &mut g.data_points,
            Some(metric::Data::Sum(s)) => &mut s.data_points,
            _ => unreachable!("the agent sends gauges and sums"),
        };
        for p in points {
            p.attributes.retain(|a| !a.key.starts_with("workload"));
        }
    }
    f.apply_metrics(&req, at(t0 + 11));
    let s = f.snapshot(at(t0 + 11));
    let wl = &s.clusters[0].workloads[0];
    assert_eq!((wl.kind.as_str(), wl.name.as_str()), ("Pod", "solo"));
    assert_eq!(wl.busy_latest, 2.0);
}

/// A window the agent split across requests (agent/src/export/otlp/split.rs: metrics in order,
/// a metric's points in runs) is the same window here: split to the extreme, one data point per
/// request, three windows of two pods give the same fleet as three whole requests.
#[test]
fn a_window_split_across_requests_is_the_same_window() {
    let t0 = 1_700_000_000;
    let pw: Vec<PodWindow> = vec![("web-1", 3.0, 4.0, 1.0, 0.5), ("web-2", 1.0, 4.0, 0.0, 0.0)];
    let mut whole = Fleet::new(Limits::default());
    let mut parts = Fleet::new(Limits::default());
    let mut requests = 0;
    for w in 0..3u64 {
        let start = (t0 + w * 10) * S;
        let req = listeners("n1", start, start + 10 * S, (t0 - 1) * S, &pw);
        assert_eq!(whole.apply_metrics(&req, at(t0 + 40)).rejected, 0);
        let rm = &req.resource_metrics[0];
        let sm = &rm.scope_metrics[0];
        for m in &sm.metrics {
            let points = match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                Some(metric::Data::Sum(s)) => s.data_points.clone(),
                _ => unreachable!("the builder makes gauges and sums"),
            };
            for p in points {
                let data = match &m.data {
                    Some(metric::Data::Gauge(_)) => metric::Data::Gauge(Gauge {
                        data_points: vec![p],
                    }),
                    Some(metric::Data::Sum(s)) => metric::Data::Sum(Sum {
                        data_points: vec![p],
                        ..s.clone()
                    }),
                    _ => unreachable!(),
                };
                let one = ExportMetricsServiceRequest {
                    resource_metrics: vec![ResourceMetrics {
                        resource: rm.resource.clone(),
                        scope_metrics: vec![ScopeMetrics {
                            metrics: vec![Metric {
                                data: Some(data),
                                ..m.clone()
                            }],
                            ..sm.clone()
                        }],
                        ..rm.clone()
                    }],
                };
                assert_eq!(parts.apply_metrics(&one, at(t0 + 40)).rejected, 0);
                requests += 1;
            }
        }
    }
    assert!(requests > 20, "{requests} requests");
    let a = serde_json::to_value(whole.snapshot(at(t0 + 40))).unwrap();
    let b = serde_json::to_value(parts.snapshot(at(t0 + 40))).unwrap();
    assert_eq!(a["clusters"], b["clusters"]);
    let wl = &whole.snapshot(at(t0 + 40)).clusters[0].workloads[0];
    assert_eq!(
        (wl.windows, wl.busy_max),
        (3, 4.0),
        "the whole side is a real fleet"
    );
}

/// A pod as the agent sends it since issue 18 (agent/src/export/figures.rs): Puma on a unix
/// socket (`port` empty, `address` the path; 2 workers × 4 threads, model threaded) behind an
/// nginx event loop on :8080 that sends connections only. The unix listener is keyed by its
/// path, sized by capacity; nginx is a listener, not part of the workload.
#[test]
fn unix_threaded_listener_and_an_event_loop_in_one_pod() {
    let t0 = 1_700_000_000;
    let (start, end) = (t0 * S, (t0 + 10) * S);
    let base = |port: &str, model: &str, process: &str| {
        let mut a = vec![
            kv("namespace", "shop"),
            kv("pod", "puma-1"),
            kv("container", "app"),
            kv("port", port),
            kv("process", process),
            kv("workload_kind", "Deployment"),
            kv("workload", "puma"),
            kv("model", model),
            kv("threads_known", "true"),
        ];
        if port.is_empty() {
            a.push(kv("address", "/run/app/puma.sock"));
        }
        a
    };
    let puma = || base("", "threaded", "puma");
    let nginx = || base("8080", "event_loop", "nginx");
    let g = |name: &str, points: Vec<_>| gauge(name, points);
    let req = request(
        "n1",
        vec![
            g(
                names::LISTENER_CONNECTIONS.otlp,
                vec![
                    point(puma(), start, end, 6.5),
                    point(nginx(), start, end, 40.0),
                ],
            ),
            g(
                names::LISTENER_CONNECTIONS_MAX.otlp,
                vec![
                    point(puma(), start, end, 8.0),
                    point(nginx(), start, end, 57.0),
                ],
            ),
            g(names::WORKERS.otlp, vec![point(puma(), start, end, 2.0)]),
            g(
                names::WORKERS_THREADS.otlp,
                vec![point(puma(), start, end, 4.0)],
            ),
            g(
                names::WORKERS_CAPACITY.otlp,
                vec![point(puma(), start, end, 8.0)],
            ),
            g(
                names::WORKERS_BUSY.otlp,
                vec![point(puma(), start, end, 6.0)],
            ),
            g(
                names::WORKERS_BUSY_MAX.otlp,
                vec![point(puma(), start, end, 8.0)],
            ),
            g(
                names::ACCEPT_QUEUE_DEPTH_MAX.otlp,
                vec![point(puma(), start, end, 0.0)],
            ),
            g(
                names::ACCEPT_QUEUE_BACKLOG.otlp,
                vec![point(puma(), start, end, 0.0)],
            ),
        ],
    );
    let mut f = Fleet::new(Limits::default());
    let a = f.apply_metrics(&req, at(t0 + 11));
    assert_eq!((a.accepted, a.rejected), (11, 0), "{a:?}");
    let s = f.snapshot(at(t0 + 11));
    let c = &s.clusters[0];
    let ls = &c.nodes[0].listeners;
    assert_eq!(ls.len(), 2, "{ls:#?}");
    let p = ls.iter().find(|l| l.port.is_none()).unwrap();
    assert_eq!(p.address, "/run/app/puma.sock");
    assert_eq!(
        (p.model, p.workers, p.threads, p.threads_known, p.capacity),
        (ListenerModel::Threaded, 2, 4, true, 8)
    );
    assert_eq!((p.busy, p.busy_max, p.utilization), (6.0, 8, 1.0));
    assert_eq!((p.connections, p.connections_max), (6.5, 8));
    let n = ls.iter().find(|l| l.port == Some(8080)).unwrap();
    assert_eq!(n.address, "");
    assert_eq!(
        (
            n.model,
            n.workers,
            n.capacity,
            n.connections,
            n.connections_max
        ),
        (ListenerModel::EventLoop, 0, 0, 40.0, 57)
    );
    // One workload, the Puma pool: capacity 8 per pod, the event loop left out.
    assert_eq!(c.workloads.len(), 1, "{:#?}", c.workloads);
    let w = &c.workloads[0];
    assert_eq!(
        (
            w.workers_per_pod,
            w.threads_per_worker,
            w.capacity_per_pod,
            w.model
        ),
        (2, 4, 8, ListenerModel::Threaded)
    );
    assert!(w.threads_known);
    assert_eq!((w.busy_latest, w.pods.len()), (6.0, 1));
    // The API says null for a unix listener's port.
    let json = serde_json::to_value(p).unwrap();
    assert!(
        json["port"].is_null() && json["model"] == "threaded",
        "{json}"
    );

    // An older agent's TCP listener (no threads, model or threads_known): prefork, 1 thread
    // assumed, not known; a port that is not a number is no listener.
    let old = listeners("n2", start, end, start, &[("web-1", 3.0, 4.0, 0.0, 0.0)]);
    let mut bad = listeners("n2", start, end, start, &[("web-2", 3.0, 4.0, 0.0, 0.0)]);
    for m in &mut bad.resource_metrics[0].scope_metrics[0].metrics {
        let points = match &mut m.data {
            Some(metric::Data::Gauge(g)) => &mut g.data_points,
            Some(metric::Data::Sum(s)) => &mut s.data_points,
            _ => unreachable!("the builder makes gauges and sums"),
        };
        for p in points {
            p.attributes.retain(|a| a.key != "port");
            p.attributes.push(kv("port", "80x"));
        }
    }
    assert_eq!(f.apply_metrics(&old, at(t0 + 11)).rejected, 0);
    let refused = f.apply_metrics(&bad, at(t0 + 11));
    assert_eq!((refused.accepted, refused.rejected), (0, 6), "{refused:?}");
    let s = f.snapshot(at(t0 + 11));
    let n2 = s.clusters[0].nodes.iter().find(|n| n.name == "n2").unwrap();
    let l = n2.listeners.iter().find(|l| l.pod == "web-1").unwrap();
    assert_eq!(
        (l.model, l.threads, l.threads_known, l.capacity, l.port),
        (ListenerModel::Prefork, 1, false, 4, Some(8000))
    );
}

/// One pod's accepted connections per second in one window, as the agent sends them on
/// listener `port` (attribute `requests_are_connections` as given).
fn accepts(
    node: &str,
    start: u64,
    end: u64,
    pod: &str,
    port: &str,
    v: f64,
    requests: bool,
) -> ExportMetricsServiceRequest {
    let a = vec![
        kv("namespace", "shop"),
        kv("pod", pod),
        kv("container", "app"),
        kv("port", port),
        kv("process", "gunicorn"),
        kv("workload_kind", "Deployment"),
        kv("workload", "web"),
        kv(
            "requests_are_connections",
            if requests { "true" } else { "false" },
        ),
    ];
    request(
        node,
        vec![
            gauge(
                names::LISTENER_ACCEPTS.otlp,
                vec![point(a.clone(), start, end, v)],
            ),
            gauge(
                names::LISTENER_ACCEPTS_MAX.otlp,
                vec![point(a, start, end, v * 1.5)],
            ),
        ],
    )
}

/// The request rate is summed as busy workers are (each pod's window in effect at every window
/// end; node n2's windows 5 s later), one listener per pod: web-1's second listener carries
/// its namespace's figure again and adds nothing. A window saying connections are not
/// requests makes the workload's `requests_are_connections` false.
#[test]
fn workload_request_rate_sums_over_offset_nodes_once_per_pod() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let rates: [(&str, &str, u64, [f64; 3]); 3] = [
        ("n1", "web-1", 0, [10.0, 20.0, 30.0]),
        ("n1", "web-2", 0, [1.0, 1.0, 1.0]),
        ("n2", "web-3", 5, [100.0, 200.0, 300.0]),
    ];
    for w in 0..3u64 {
        for (node, pod, off, r) in rates {
            let start = (t0 + off + w * 10) * S;
            let end = start + 10 * S;
            let pw: Vec<PodWindow> = vec![(pod, 1.0, 4.0, 0.0, 0.0)];
            f.apply_metrics(&listeners(node, start, end, (t0 - 1) * S, &pw), at(t0 + 40));
            let ports: &[&str] = if pod == "web-1" {
                &["8000", "9000"]
            } else {
                &["8000"]
            };
            for port in ports {
                let req = accepts(node, start, end, pod, port, r[w as usize], true);
                assert_eq!(f.apply_metrics(&req, at(t0 + 40)).rejected, 0);
            }
        }
    }
    let s = f.snapshot(at(t0 + 40));
    let wl = &s.clusters[0].workloads[0];
    // Ends 10: 10+1 + 100; 15: 20+1 + 100; 20: 21 + 200; 25: 31 + 200; 30: 31 + 300 (n2's
    // window to 35 waits for n1's next).
    let sums = [111.0, 121.0, 221.0, 231.0, 331.0];
    assert_eq!(wl.windows, 5);
    assert_eq!(wl.requests_per_second_latest, Some(331.0));
    assert_eq!(
        wl.requests_per_second_mean,
        Some(sums.iter().sum::<f64>() / 5.0)
    );
    assert_eq!(wl.requests_per_second_p95, Some(aggregate::p95(&sums)));
    assert_eq!(wl.requests_per_second_max, Some(331.0));
    assert!(wl.requests_are_connections);
    let l = s.clusters[0].nodes[0]
        .listeners
        .iter()
        .find(|l| l.pod == "web-1" && l.port == Some(8000))
        .unwrap();
    assert_eq!(
        (
            l.accepts_per_second,
            l.accepts_per_second_max,
            l.requests_are_connections
        ),
        (Some(30.0), Some(45.0), true)
    );
    // web-3 says its front keeps connections open in one more window.
    let start = (t0 + 35) * S;
    let req = accepts("n2", start, start + 10 * S, "web-3", "8000", 50.0, false);
    f.apply_metrics(&req, at(t0 + 46));
    let s = f.snapshot(at(t0 + 46));
    assert!(!s.clusters[0].workloads[0].requests_are_connections);
    // Agents that send no accepts: no rate, not zero.
    let mut g = Fleet::new(Limits::default());
    let pw: Vec<PodWindow> = vec![("web-1", 1.0, 4.0, 0.0, 0.0)];
    g.apply_metrics(
        &listeners("n1", t0 * S, (t0 + 10) * S, t0 * S, &pw),
        at(t0 + 11),
    );
    let wl = &g.snapshot(at(t0 + 11)).clusters[0].workloads[0];
    assert_eq!(
        (wl.requests_per_second_latest, wl.requests_per_second_p95),
        (None, None)
    );
}

/// Workloads that are slow to make are made on a thread every `workloads_every`; snapshots
/// and pages between read the last ones made (here every making counts as slow).
#[test]
fn slow_workloads_are_made_on_a_thread_and_read_from_the_last_made() {
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 100;
    let fleet = std::sync::Arc::new(std::sync::Mutex::new(Fleet::new(Limits::default())));
    let cache = super::super::LeanCache::new(fleet.clone(), Duration::from_secs(60))
        .workloads_timing(Duration::ZERO, Duration::from_millis(300));
    let send = |w: u64, busy: f64| {
        let (start, end) = ((t0 + w * 10) * S, (t0 + w * 10 + 10) * S);
        let req = listeners(
            "n1",
            start,
            end,
            (t0 - 1) * S,
            &[("web-1", busy, 4.0, 0.0, 0.0)],
        );
        assert_eq!(
            fleet
                .lock()
                .unwrap()
                .apply_metrics(&req, at(t0 + 40))
                .rejected,
            0
        );
    };
    let busy_latest = |s: &FleetSnapshot| s.clusters[0].workloads[0].busy_latest;
    send(0, 1.0);
    let first = cache.refresh(SystemTime::now());
    assert_eq!(
        busy_latest(&first.snapshot),
        1.0,
        "the first are made at once"
    );
    send(1, 3.0);
    let kept = cache.refresh(SystemTime::now());
    assert_eq!(
        busy_latest(&kept.snapshot),
        1.0,
        "younger than workloads_every: the last made"
    );
    let q = PageQuery {
        node: None,
        cluster: None,
        after: None,
        limit: 10,
        history: false,
    };
    let page = cache.view().page(SystemTime::now(), &q);
    assert_eq!(busy_latest(&page), 1.0, "a page reads them too");
    std::thread::sleep(Duration::from_millis(350));
    let due = cache.refresh(SystemTime::now());
    assert_eq!(
        busy_latest(&due.snapshot),
        1.0,
        "made on a thread, not in the refresh"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = cache.refresh(SystemTime::now());
        if busy_latest(&s.snapshot) == 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the thread never made new workloads"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Quick to make again (as a shrunk fleet is): made in the refresh itself.
    let quick = super::super::LeanCache::new(fleet.clone(), Duration::from_secs(60));
    send(2, 2.0);
    assert_eq!(busy_latest(&quick.refresh(SystemTime::now()).snapshot), 2.0);
}
