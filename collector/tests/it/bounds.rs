//! The collector under a hostile load, against the real binary with `memory_limit = 128MiB`:
//! 100 000 node names, an empty-points gzip bomb, a 16 MiB gRPC message, parallel large
//! requests and 64 parallel `/api/v1/fleet` GETs. Its resident set (VmHWM, the peak) stays
//! under the limit, it sheds with 429 / RESOURCE_EXHAUSTED, and a well-behaved sender that
//! honours Retry-After gets every window in.

use crate::common;

use common::agent_otlp::{kv, now_ns, Window};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PB: (&str, &str) = ("content-type", "application/x-protobuf");
const LIMIT_MIB: u64 = 128;

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn vm(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A length-delimited protobuf field.
fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    let varint = |mut v: u64, out: &mut Vec<u8>| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    varint(u64::from(tag << 3 | 2), &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// An export of one gauge with `n` empty data points, encoded by hand (2 bytes a point; the
/// test would otherwise build the very structs the collector must not).
fn empty_points(n: usize) -> Vec<u8> {
    let points: Vec<u8> = [0x0a, 0x00].repeat(n);
    let metric = [ld(1, b"bomb"), ld(5, &points)].concat();
    let resource = ld(
        1,
        &ld(1, b"k8s.node.name")
            .into_iter()
            .chain(ld(2, &ld(1, b"bomb")))
            .collect::<Vec<_>>(),
    );
    ld(1, &[ld(1, &resource), ld(2, &ld(2, &metric))].concat())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One request naming `n` nodes `{prefix}-{i}`, one current point each.
fn node_flood(prefix: &str, n: usize) -> Vec<u8> {
    let t = now_ns();
    ExportMetricsServiceRequest {
        resource_metrics: (0..n)
            .map(|i| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("k8s.node.name", &format!("{prefix}-{i}"))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "app.up".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: t,
                                value: Some(number_data_point::Value::AsInt(1)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn metric_value(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_load_is_shed_and_memory_stays_under_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!("memory_limit = \"{LIMIT_MIB}MiB\"\nmax_concurrent_requests = 8\nkube = false\n"),
    )
    .unwrap();
    let c = Collector::start_with(&["--config", cfg.to_str().unwrap()]);
    let pid = c.guard.pid();
    let start_rss = vm(pid, "VmRSS");

    // The well-behaved sender: a window every 100 ms, retried after Retry-After when shed.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, shed_seen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let good = {
        let (addr, stop, sent, shed_seen) = (
            c.otlp_http.clone(),
            stop.clone(),
            sent.clone(),
            shed_seen.clone(),
        );
        std::thread::spawn(move || {
            let t0 = now_ns() - 3_000_000_000;
            for i in 0..600u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (s, e) = (t0 + i * 100_000_000, t0 + (i + 1) * 100_000_000);
                let mut w = Window::new("good", s, e, t0 - 60_000_000_000);
                w.interface("eth0", "eni-good", 10 + i, 0);
                let body = w.request().encode_to_vec();
                let mut delivered = false;
                for _ in 0..30 {
                    match request(&addr, "POST", "/v1/metrics", &[PB], &body).map(|r| r.0) {
                        Some(200) => {
                            delivered = true;
                            break;
                        }
                        Some(429) => {
                            shed_seen.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        other => panic!("good sender got {other:?}"),
                    }
                }
                assert!(delivered, "window {i} never delivered");
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    while sent.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }

    // 1. An empty-points gzip bomb: 8 MB of protobuf (4 000 000 points) in a few KiB.
    let bomb_plain = empty_points(4_000_000);
    let bomb = gzip(&bomb_plain);
    eprintln!(
        "gzip bomb: {} bytes on the wire, {} decompressed",
        bomb.len(),
        bomb_plain.len()
    );
    assert!(bomb.len() < 64 << 10 && bomb_plain.len() < 8 << 20);
    let gz = [PB, ("content-encoding", "gzip")];
    for _ in 0..4 {
        let (code, _) = request(&c.otlp_http, "POST", "/v1/metrics", &gz, &bomb).unwrap();
        assert_eq!(code, 413, "decoded size over a quarter of memory_limit");
    }

    // 2. A 16 MiB gRPC message: refused from its length prefix.
    let rt = runtime();
    rt.block_on(async {
        let mut client = crate::metrics_client(&c).await;
        let huge = ExportMetricsServiceRequest::decode(&empty_points(8 << 20)[..]).unwrap();
        assert!(huge.encoded_len() >= 16 << 20);
        let err = client.export(huge).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    });

    // 3. 100 000 node names in 100 requests of 1 000.
    for r in 0..100 {
        let body = node_flood(&format!("flood{r}"), 1000);
        let (code, _) = request(&c.otlp_http, "POST", "/v1/metrics", &[PB], &body).unwrap();
        assert!(code == 200 || code == 429, "flood request got {code}");
    }

    // 4. 16 senders of 100 000 empty points each (≈19 MB decoded) at once: more than the
    // 8 slots, more than the memory left.
    let big = empty_points(100_000);
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let (addr, big) = (&c.otlp_http, &big);
                s.spawn(move || {
                    (0..5)
                        .map(|_| request(addr, "POST", "/v1/metrics", &[PB], big).unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let shed = codes.iter().filter(|&&c| c == 429).count();
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
    assert!(
        shed > 0,
        "16 parallel large requests, 8 slots: some shed: {codes:?}"
    );

    // 4b. The same over gRPC: 32 concurrent exports, RESOURCE_EXHAUSTED when shed.
    let grpc_codes: Vec<tonic::Code> = rt.block_on(async {
        use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
        let req = ExportMetricsServiceRequest::decode(&big[..]).unwrap();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (addr, req) = (format!("http://{}", c.grpc), req.clone());
            set.spawn(async move {
                let mut client = MetricsServiceClient::connect(addr).await.unwrap();
                let mut codes = Vec::new();
                for _ in 0..3 {
                    codes.push(match client.export(req.clone()).await {
                        Ok(_) => tonic::Code::Ok,
                        Err(s) => s.code(),
                    });
                }
                codes
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    let grpc_shed = grpc_codes
        .iter()
        .filter(|&&c| c == tonic::Code::ResourceExhausted)
        .count();
    assert!(
        grpc_codes
            .iter()
            .all(|&c| c == tonic::Code::Ok || c == tonic::Code::ResourceExhausted),
        "{grpc_codes:?}"
    );
    assert!(
        grpc_shed > 0,
        "32 concurrent gRPC exports, 8 slots: some shed"
    );

    // 5. 64 parallel GETs of the fleet (10 000 nodes).
    let fleet_codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..64)
            .map(|_| s.spawn(|| request(&c.api, "GET", "/api/v1/fleet", &[], &[]).unwrap().0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        fleet_codes.iter().all(|&c| c == 200 || c == 429),
        "{fleet_codes:?}"
    );
    assert!(fleet_codes.contains(&200));

    let hwm = vm(pid, "VmHWM");
    eprintln!(
        "collector RSS {start_rss} KiB at start, peak {hwm} KiB (limit {} KiB); \
         large requests shed {shed}/{} (gRPC {grpc_shed}/{}); fleet GETs shed {}/64; good sender shed {} times",
        LIMIT_MIB << 10,
        codes.len(),
        grpc_codes.len(),
        fleet_codes.iter().filter(|&&c| c == 429).count(),
        shed_seen.load(Ordering::Relaxed)
    );
    assert!(
        hwm < LIMIT_MIB << 10,
        "peak RSS {hwm} KiB over memory_limit"
    );

    // The well-behaved sender's windows all arrived.
    stop.store(true, Ordering::Relaxed);
    good.join().unwrap();
    let n = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let fleet = loop {
        if let Some((200, body)) = request(&c.api, "GET", "/api/v1/fleet?node=good", &[], &[]) {
            break serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(200));
    };
    let good = node(&fleet, "good").expect("the good node is in the fleet");
    let windows = good["interfaces"][0]["windows"].as_array().unwrap().len() as u64;
    assert_eq!(
        windows, n,
        "every window the good sender sent is in the fleet"
    );
    let nodes = fleet["nodes"].as_u64().unwrap();
    assert!(nodes <= 10_000, "{nodes}");
    // A page of the 10 000 nodes holds the default 1000 and the cursor to the next.
    let (code, body) = request(&c.api, "GET", "/api/v1/fleet?history=false", &[], &[]).unwrap();
    assert_eq!(code, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let in_page: usize = page["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["nodes"].as_array().unwrap().len())
        .sum();
    assert_eq!(in_page, 1000);
    assert!(page["next"].is_string(), "{}", page["next"]);
    let (_, metrics) = request(&c.api, "GET", "/metrics", &[], &[]).unwrap();
    let m = String::from_utf8(metrics).unwrap();
    let refused = metric_value(&m, "headroom_collector_nodes_refused_per_request_total")
        + metric_value(&m, "headroom_collector_nodes_refused_max_nodes_total");
    assert!(refused >= 90_000, "{refused}");
    assert!(
        metric_value(
            &m,
            "headroom_collector_requests_rejected_total{reason=\"decoded_too_large\"}"
        ) >= 4
    );
    let shed_counted = metric_value(
        &m,
        "headroom_collector_requests_rejected_total{reason=\"shed_memory\"}",
    ) + metric_value(
        &m,
        "headroom_collector_requests_rejected_total{reason=\"shed_concurrency\"}",
    );
    assert!(
        shed_counted >= (shed + grpc_shed) as u64,
        "{shed_counted} < {shed} + {grpc_shed}"
    );
    eprintln!("{nodes} nodes in the fleet, {refused} new nodes refused, {n} good windows");
}
