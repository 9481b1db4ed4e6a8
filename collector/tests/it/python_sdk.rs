//! The official OpenTelemetry Python SDK exports metrics and spans to the collector over gRPC
//! and over HTTP/protobuf (gzip); both are accepted and appear in the fleet. And a hand-written
//! OTLP/JSON export, the third encoding.

use crate::common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
proto, endpoint, node = sys.argv[1:4]
if proto == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    me = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    se = OTLPSpanExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    me = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", compression=Compression.Gzip)
    se = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", compression=Compression.Gzip)
res = Resource.create({"service.name": "py-app", "k8s.node.name": node, "k8s.cluster.name": "py"})
mp = MeterProvider(resource=res, metric_readers=[PeriodicExportingMetricReader(me, export_interval_millis=60000)])
meter = mp.get_meter("headroom-test")
meter.create_counter("py.requests", unit="{request}").add(7, {"route": "/a"})
meter.create_histogram("py.latency", unit="ms").record(12.5)
tp = TracerProvider(resource=res)
tp.add_span_processor(BatchSpanProcessor(se))
tracer = tp.get_tracer("headroom-test")
for i in range(3):
    with tracer.start_as_current_span("check-%d" % i):
        pass
assert mp.force_flush(10000), "metrics flush"
assert tp.force_flush(10000), "spans flush"
mp.shutdown()
tp.shutdown()
print("exported")
"#;

/// What these tests import: the SDK with both OTLP exporters.
const SDK: &str = "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http";

fn wait_for_node(
    c: &Collector,
    name: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fleet = c.fleet();
        if let Some(n) = node(&fleet, name) {
            if ok(n) {
                return n.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {name} never complete in {fleet:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric<'a>(n: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    n["metrics"].as_array()?.iter().find(|m| m["name"] == name)
}

#[test]
fn python_sdk_exports_over_grpc_and_http() {
    if !python_sdk_present("python_sdk_exports_over_grpc_and_http", SDK) {
        return;
    }
    let c = Collector::start();
    for (proto, endpoint, node_name) in [
        ("grpc", format!("http://{}", c.grpc), "py-grpc"),
        ("http", format!("http://{}", c.otlp_http), "py-http"),
    ] {
        run_ok(
            &format!("{proto}: "),
            Command::new("python3").args(["-c", SCRIPT, proto, &endpoint, node_name]),
        );
        let n = wait_for_node(&c, node_name, |n| {
            n["spans_received"].as_u64() == Some(3) && metric(n, "py.latency").is_some()
        });
        assert_eq!(n["service_name"], "py-app");
        let req = metric(&n, "py.requests").unwrap_or_else(|| panic!("{n:#}"));
        assert_eq!(req["kind"], "sum");
        assert_eq!(req["series"][0]["value"], 7.0);
        assert_eq!(req["series"][0]["attributes"]["route"], "/a");
        assert_eq!(metric(&n, "py.latency").unwrap()["kind"], "histogram");
    }
    let fleet = c.fleet();
    assert_eq!(fleet["clusters"][0]["name"], "py");
    assert_eq!(fleet["ingest"]["spans_received"], 6);
}

/// Raw gRPC calls with bytes that are not an export request: INVALID_ARGUMENT, and the
/// collector keeps serving.
const GRPC_GARBAGE: &str = r#"
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
for method in ["/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
               "/opentelemetry.proto.collector.trace.v1.TraceService/Export"]:
    call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(b"\xff" * 64, timeout=5)
        print("accepted")
    except grpc.RpcError as e:
        print(e.code().name)
"#;

#[test]
fn garbage_over_grpc_is_invalid_argument() {
    if !python_sdk_present("garbage_over_grpc_is_invalid_argument", SDK) {
        return;
    }
    let c = Collector::start();
    let out = Command::new("python3")
        .args(["-c", GRPC_GARBAGE, &c.grpc])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["INVALID_ARGUMENT", "INVALID_ARGUMENT"],
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _) = request(&c.api, "GET", "/healthz", &[], &[]).unwrap();
    assert_eq!(code, 200);
}

#[test]
fn otlp_json_export_is_accepted() {
    let c = Collector::start();
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"k8s.node.name","value":{"stringValue":"json-node"}},
        {"key":"service.name","value":{"stringValue":"headroom-agent"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"headroom.linklocal.pps.peak","unit":"{packet}/s","gauge":{"dataPoints":[
          {"attributes":[{"key":"interface","value":{"stringValue":"eth0"}},{"key":"eni","value":{"stringValue":"eni-0abc"}}],
           "startTimeUnixNano":"START","timeUnixNano":"END","asInt":"777"}]}},
        {"name":"app.temperature","gauge":{"dataPoints":[{"timeUnixNano":"END","asDouble":21.5}]}}]}]}]}"#;
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let body = body
        .replace("START", &(end - 10_000_000_000).to_string())
        .replace("END", &end.to_string());
    let (code, resp) = request(
        &c.otlp_http,
        "POST",
        "/v1/metrics",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    let fleet = c.fleet();
    let n = node(&fleet, "json-node").unwrap();
    let eni = &n["interfaces"][0];
    assert_eq!(eni["interface"], "eth0");
    assert_eq!(eni["eni_id"], "eni-0abc");
    assert_eq!(eni["latest"]["peak_pps"], 777);
    assert_eq!(eni["latest"]["seconds"], 10.0);
    assert_eq!(
        metric(n, "app.temperature").unwrap()["series"][0]["value"],
        21.5
    );
    // The status page ranks it, with a sparkline.
    let (code, page) = request(&c.api, "GET", "/", &[], &[]).unwrap();
    let page = String::from_utf8(page).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("json-node") && page.contains("eni-0abc") && page.contains("<svg"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
}
