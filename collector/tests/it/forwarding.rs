//! Traces onward: spans a collector receives reach the OTLP receiver behind
//! `--traces-endpoint` (here a second collector instance); when that receiver is gone, the
//! spans are counted as dropped and ingest goes on.

use crate::common;

use common::*;
use std::time::{Duration, Instant};

/// An OTLP/JSON traces export of `n` spans from node `node`.
fn spans_json(node: &str, n: usize) -> String {
    let spans: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b17{i}","name":"probe-{i}","kind":1,
                    "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k8s.node.name","value":{{"stringValue":"{node}"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"t"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn ingest(c: &Collector) -> serde_json::Value {
    c.fleet()["ingest"].clone()
}

#[test]
fn spans_go_on_to_the_traces_endpoint() {
    let downstream = Collector::start();
    let url = format!("http://{}", downstream.otlp_http);
    let c = Collector::start_with(&["--traces-endpoint", &url]);
    let (code, body) = request(
        &c.otlp_http,
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        spans_json("fwd-node", 4).as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fleet = downstream.fleet();
        if node(&fleet, "fwd-node").is_some_and(|n| n["spans_received"] == 4) {
            break;
        }
        assert!(Instant::now() < deadline, "spans never arrived: {fleet:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ingest(&c)["spans_forwarded"], 4);

    // The downstream goes away: spans are dropped after the retries and counted.
    drop(downstream);
    let (code, _) = request(
        &c.otlp_http,
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        spans_json("fwd-node", 2).as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "ingest does not wait for the downstream");
    let deadline = Instant::now() + Duration::from_secs(15);
    while ingest(&c)["spans_forward_dropped"] != 2 {
        assert!(Instant::now() < deadline, "{}", ingest(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ingest(&c)["spans_received"], 6);
}

#[test]
fn spans_go_on_over_grpc() {
    let downstream = Collector::start();
    let url = format!("http://{}", downstream.grpc);
    let c = Collector::start_with(&["--traces-endpoint", &url, "--traces-protocol", "grpc"]);
    // Two exports: 5 and 3 spans, from two nodes; the downstream must count exactly 8.
    for (node_name, n) in [("grpc-a", 5), ("grpc-b", 3)] {
        let (code, body) = request(
            &c.otlp_http,
            "POST",
            "/v1/traces",
            &[("content-type", "application/json")],
            spans_json(node_name, n).as_bytes(),
        )
        .unwrap();
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let received = ingest(&downstream)["spans_received"].as_u64().unwrap();
        if received == 8 {
            break;
        }
        assert!(received < 8, "more spans than sent: {received}");
        assert!(Instant::now() < deadline, "downstream got {received} of 8");
        std::thread::sleep(Duration::from_millis(100));
    }
    let fleet = downstream.fleet();
    assert_eq!(node(&fleet, "grpc-a").unwrap()["spans_received"], 5);
    assert_eq!(node(&fleet, "grpc-b").unwrap()["spans_received"], 3);
    assert_eq!(ingest(&c)["spans_forwarded"], 8);
    assert_eq!(ingest(&c)["spans_forward_dropped"], 0);
    // Nothing more arrives later (no duplicate sends).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ingest(&downstream)["spans_received"], 8);
}
