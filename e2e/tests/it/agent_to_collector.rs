//! OTLP export end to end with the real parts: `headroom-agent run` exports to a real
//! `headroom-collector`, which forwards the spans it receives (`--traces-endpoint`) to an
//! OTLP/HTTP receiver this test runs, so every exported `probe` span can be read back with its
//! attributes. The probed app is gunicorn (2 sync workers) in a pod network namespace at the
//! pod IP that the fake API server lists; the test holds both workers busy and the probes time
//! out behind them.
//!
//! The collector binary is taken from beside the agent's (`cargo test --workspace` builds
//! both; `cargo build -p headroom-collector` otherwise). Needs root; skips with a reason
//! outside CI, fails in CI.

use crate::agent_common as common;

use crate::agent_common::*;
use crate::procs::{self, Agent, AGENT_METRICS, API, GRPC, OTLP_HTTP};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::bed::Bed;
use headroom_testbed::http::read_request;
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::in_netns;
use headroom_testbed::proc::Guard;
use headroom_testbed::scrape;
use headroom_testbed::Need;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POD_IP: &str = "10.244.0.5";
const NODE: &str = "node-1";
/// The shop-api pod's uid (a UUID, as the kubelet's cgroup paths carry it).
const SHOP_API_UID: &str = "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a090";

/// `/slow` holds its worker for 6 s; anything else answers at once.
const WSGI: &str = r#"
import time
def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(6)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
"#;

/// gunicorn with 2 sync workers at POD_IP:8080 in the pod namespace, answering.
fn start_gunicorn(bed: &Bed, pod: &Netns) -> Guard {
    common::start_gunicorn(bed, pod, WSGI, POD_IP)
}

/// A pod of the Deployment `shop-api` (through its ReplicaSet, as the API server shows it)
/// with a readiness probe on the named port: timeout 1 s, period 1 s.
fn shop_api_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "shop-api-5f6d7c8b9-q2x7k", "uid": SHOP_API_UID,
            "labels": {"app": "shop-api", "pod-template-hash": "5f6d7c8b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "shop-api-5f6d7c8b9", "uid": "rs-1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "gunicorn", "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                "timeoutSeconds": 1, "periodSeconds": 1, "failureThreshold": 3}}]},
        "status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}
    })
}

/// Spans an OTLP/HTTP receiver got, each with its resource attributes.
pub(crate) type Received = Arc<Mutex<Vec<(Vec<KeyValue>, Span)>>>;

/// A minimal OTLP/HTTP traces receiver (HTTP/1.1 with keep-alive, protobuf bodies) on
/// 127.0.0.1 inside `ns`: what Jaeger or Tempo would be behind the collector.
pub(crate) fn start_receiver(ns: &Netns) -> (SocketAddr, Received) {
    let listener = in_netns(&ns.name, || Ok(TcpListener::bind("127.0.0.1:0")?)).unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let g = g.clone();
            std::thread::spawn(move || serve_otlp(conn, &g));
        }
    });
    (addr, got)
}

fn serve_otlp(conn: TcpStream, got: &Received) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(http) = read_request(&mut r, usize::MAX) {
        let status = match ExportTraceServiceRequest::decode(&http.body[..]) {
            Ok(req) if http.method == "POST" && http.path == "/v1/traces" => {
                let mut g = got.lock().unwrap();
                for rs in req.resource_spans {
                    let res = rs.resource.map(|r| r.attributes).unwrap_or_default();
                    for s in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        g.push((res.clone(), s));
                    }
                }
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// `headroom-collector` in the node namespace forwarding spans to `traces`.
fn start_collector(bed: &Bed, traces: Option<SocketAddr>) -> Guard {
    start_collector_with(bed, traces, &[], &[])
}

/// As [`start_collector`], with more arguments and environment.
fn start_collector_with(
    bed: &Bed,
    traces: Option<SocketAddr>,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) -> Guard {
    let traces = traces.map(|t| format!("http://{t}"));
    let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
    if let Some(t) = &traces {
        all.extend([OsStr::new("--traces-endpoint"), OsStr::new(t)]);
    }
    procs::start_collector(bed, &all, env)
}

fn ns_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub(crate) fn rfc3339_ns(s: &str) -> u64 {
    ns_of(humantime::parse_rfc3339(s).unwrap())
}

pub(crate) fn str_attr<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a str> {
    match attrs
        .iter()
        .find(|a| a.key == k)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], k: &str) -> Option<i64> {
    match attrs
        .iter()
        .find(|a| a.key == k)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::IntValue(v) => Some(*v),
        _ => None,
    }
}

/// One series of the collector's generic latest-value metrics: (metric, attributes, value,
/// time in ns).
type Observation = (String, std::collections::BTreeMap<String, String>, f64, u64);

/// The node's series of `names` in the collector's `/api/v1/fleet`: the latest-value `metrics`,
/// and the structured `listeners` and `probes` the collector builds from the listener and probe
/// metrics (as `headroom.workers`, `headroom.workers.busy.max` and `headroom.probe.attempts`
/// observations with the OTLP attributes; a probe's `attempts` are counter rises over the
/// collector's workload_history, the cumulative counts while the agent ran for less than that).
fn fleet_series(bed: &Bed, names: &[&str]) -> Vec<Observation> {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    if code != 200 {
        return Vec::new();
    }
    let fleet: Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    let nodes = fleet["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["nodes"].as_array().cloned().unwrap_or_default());
    for n in nodes.filter(|n| n["name"] == NODE) {
        let text = |v: &Value, k: &str| (k.to_string(), v[k].as_str().unwrap_or("").to_string());
        for l in n["listeners"].as_array().into_iter().flatten() {
            let mut attrs: std::collections::BTreeMap<String, String> = [
                "namespace",
                "pod",
                "container",
                "process",
                "workload_kind",
                "workload",
            ]
            .iter()
            .map(|k| text(l, k))
            .collect();
            attrs.insert("port".into(), l["port"].to_string());
            let t = rfc3339_ns(l["time"].as_str().unwrap());
            for (name, field) in [
                ("headroom.workers", "workers"),
                ("headroom.workers.busy.max", "busy_max"),
            ] {
                if names.contains(&name) {
                    out.push((
                        name.to_string(),
                        attrs.clone(),
                        l[field].as_f64().unwrap(),
                        t,
                    ));
                }
            }
        }
        for p in n["probes"].as_array().into_iter().flatten() {
            if !names.contains(&"headroom.probe.attempts") {
                break;
            }
            let t = rfc3339_ns(p["time"].as_str().unwrap());
            for (result, v) in p["attempts"].as_object().into_iter().flatten() {
                let mut attrs: std::collections::BTreeMap<String, String> = [
                    "namespace",
                    "pod",
                    "container",
                    "probe",
                    "target",
                    "workload_kind",
                    "workload",
                ]
                .iter()
                .map(|k| text(p, k))
                .collect();
                attrs.insert("result".into(), result.clone());
                out.push((
                    "headroom.probe.attempts".to_string(),
                    attrs,
                    v.as_f64().unwrap(),
                    t,
                ));
            }
        }
        for m in n["metrics"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or("");
            if !names.contains(&name) {
                continue;
            }
            for sr in m["series"].as_array().into_iter().flatten() {
                let attrs = serde_json::from_value(sr["attributes"].clone()).unwrap_or_default();
                out.push((
                    name.to_string(),
                    attrs,
                    sr["value"].as_f64().unwrap(),
                    rfc3339_ns(sr["time"].as_str().unwrap()),
                ));
            }
        }
    }
    out
}

/// End of a report's window, ns.
fn window_end(r: &Value) -> u64 {
    rfc3339_ns(r["window"]["start"].as_str().unwrap())
        + (r["window"]["seconds"].as_f64().unwrap() * 1e9).round() as u64
}

fn listener_8080(r: &Value) -> Option<&Value> {
    r["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["address"] == POD_IP && l["port"] == 8080)
}

fn probe_of(report: &Value) -> Option<&Value> {
    report["probes"]
        .as_array()?
        .iter()
        .find(|p| p["pod"]["name"] == "shop-api-5f6d7c8b9-q2x7k")
}

/// Issue 7 point 4 and issue 8's span forwarding, end to end: both gunicorn workers held busy
/// for 6 s, the readiness probe (timeout 1 s) times out behind them; every slow, timed-out or
/// failed attempt of every report window reaches the receiver behind the collector as a
/// `probe` span — exactly as many as the reports count — at its real start time, timed-out
/// ones lasting exactly their timeout (the agent records a timeout as its full timeout), each
/// showing the pod's 2 of 2 workers busy and a connection waiting in the accept queue.
#[test]
fn probe_spans_reach_the_traces_backend_with_the_pods_saturation() {
    headroom_testbed::require_or_return!(
        "probe_spans_reach_the_traces_backend_with_the_pods_saturation",
        &headroom_testbed::root_and(&["ip", "gunicorn", "curl"])
    );
    let bed = Bed::new(1).unwrap();
    let podns = bed.pod(POD_IP).unwrap();
    let _gunicorn = start_gunicorn(&bed, &podns);
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    api.apply(shop_api_pod());
    let (receiver, spans) = start_receiver(&bed.node);
    let _collector = start_collector(&bed, Some(receiver));
    let agent = Agent::exporting(
        &bed,
        NODE,
        "2s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    // Fast successes first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent
        .reports()
        .iter()
        .filter_map(probe_of)
        .any(|p| p["ok"].as_u64().unwrap_or(0) >= 1)
    {
        assert!(Instant::now() < deadline, "no probe attempts reported");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both workers busy for 6 s.
    // The collector's view, polled while the test goes on (each poll: the latest windows).
    let watched = [
        "headroom.workers",
        "headroom.workers.busy.max",
        "headroom.probe.attempts",
    ];
    let mut seen: Vec<Observation> = Vec::new();
    let poll = |seen: &mut Vec<Observation>| {
        for o in fleet_series(&bed, &watched) {
            if !seen.contains(&o) {
                seen.push(o);
            }
        }
    };
    let hold_start = SystemTime::now();
    let hold = hold_workers(&bed, 2);
    let mut hold = hold;
    while hold
        .iter_mut()
        .any(|h| h.child.as_mut().unwrap().try_wait().unwrap().is_none())
    {
        poll(&mut seen);
        std::thread::sleep(Duration::from_millis(300));
    }
    for h in hold {
        assert!(h.wait(Duration::from_secs(1)).unwrap().status.success());
    }
    let hold_end = SystemTime::now();
    // Two more windows of fast successes, then stop: the agent flushes what it queued.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        poll(&mut seen);
        std::thread::sleep(Duration::from_millis(300));
    }
    let reports = agent.reports();
    let log = agent.log();
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
    assert!(
        !log.iter().any(|l| l.contains("OTLP export failing")),
        "the collector was up all along"
    );
    let windows: Vec<&Value> = reports.iter().filter(|r| probe_of(r).is_some()).collect();
    let count = |k: &str| -> u64 {
        windows
            .iter()
            .map(|r| probe_of(r).unwrap()[k].as_u64().unwrap())
            .sum()
    };
    let (ok, slow, timeouts, errors) = (
        count("ok"),
        count("slow"),
        count("timeouts"),
        count("errors"),
    );
    eprintln!(
        "reports: ok {ok}, slow {slow}, timeouts {timeouts}, errors {errors} in {} windows",
        windows.len()
    );
    // From the hold and the probe's own timing (periodSeconds 1, timeoutSeconds 1): an attempt
    // times out when it starts while both workers are held and at least its timeout before
    // they are let go, so about one per second of (hold − timeout); ±1 for where the period's
    // ticks fall, and the curls' own start-up.
    let held = hold_end.duration_since(hold_start).unwrap().as_secs_f64();
    let (least, most) = ((held - 1.0).floor() - 1.0, held.ceil() + 1.0);
    assert!(
        (least..=most).contains(&(timeouts as f64)),
        "workers held {held:.2} s, probe every 1 s with a 1 s timeout: {timeouts} timeouts, want {least}..={most}"
    );
    assert_eq!(errors, 0);
    let expected = (slow + timeouts + errors) as usize;

    // Every one of them arrives through the collector; no more.
    let probe_spans = || -> Vec<(Vec<KeyValue>, Span)> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == "probe")
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe_spans().len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} probe spans arrived",
            probe_spans().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let got = probe_spans();
    assert_eq!(
        got.len(),
        expected,
        "spans: exactly the reports' slow + timeouts + errors"
    );

    let first_start = windows
        .iter()
        .map(|r| rfc3339_ns(r["window"]["start"].as_str().unwrap()))
        .min()
        .unwrap();
    let last_end = windows
        .iter()
        .map(|r| {
            rfc3339_ns(r["window"]["start"].as_str().unwrap())
                + (r["window"]["seconds"].as_f64().unwrap() * 1e9) as u64
        })
        .max()
        .unwrap();
    let timeout_ns = 1_000_000_000u64;
    let mut timed_out = 0;
    for (res, s) in &got {
        let a = &s.attributes;
        assert_eq!(str_attr(res, "k8s.node.name"), Some(NODE));
        assert_eq!(str_attr(a, "namespace"), Some("shop"));
        assert_eq!(str_attr(a, "pod"), Some("shop-api-5f6d7c8b9-q2x7k"));
        assert_eq!(str_attr(a, "container"), Some("gunicorn"));
        assert_eq!(str_attr(a, "probe"), Some("readiness"));
        assert_eq!(
            str_attr(a, "target"),
            Some("http://10.244.0.5:8080/healthz")
        );
        assert_eq!(str_attr(a, "workload_kind"), Some("Deployment"));
        assert_eq!(str_attr(a, "workload"), Some("shop-api"));
        // Inside the reported windows: an attempt is counted in the window it ended in, so
        // it may have begun up to one timeout before that window.
        assert!(
            s.start_time_unix_nano + timeout_ns >= first_start
                && s.start_time_unix_nano <= last_end,
            "span start {} outside the windows {first_start}..{last_end}",
            s.start_time_unix_nano
        );
        let took = s.end_time_unix_nano - s.start_time_unix_nano;
        if str_attr(a, "probe.outcome") == Some("timeout") {
            timed_out += 1;
            // Timeouts: exactly the timeout (the agent records a timed-out attempt at its
            // full timeout), and only while the workers were held (ground truth: the curls).
            assert_eq!(took, timeout_ns, "timed-out span lasts its timeout");
            assert!(
                s.start_time_unix_nano >= ns_of(hold_start)
                    && s.start_time_unix_nano <= ns_of(hold_end),
                "a timeout outside the hold {:?}..{:?}: {}",
                hold_start,
                hold_end,
                s.start_time_unix_nano
            );
            assert_eq!(s.status.as_ref().unwrap().code, 2, "status ERROR");
            // The sampler's view at that moment: both workers busy, the probe in the queue.
            assert_eq!(int_attr(a, "workers.busy"), Some(2), "{a:?}");
            assert_eq!(int_attr(a, "workers.total"), Some(2), "{a:?}");
            assert!(int_attr(a, "accept_queue.depth").unwrap() >= 1, "{a:?}");
        } else {
            // Slow successes: over half the timeout, within it.
            assert_eq!(str_attr(a, "probe.outcome"), Some("slow"));
            assert!(
                (timeout_ns / 2..=timeout_ns).contains(&took),
                "slow span {took} ns"
            );
        }
    }
    assert_eq!(timed_out as u64, timeouts, "every timeout is a span");

    // Issue 8, the fleet's generic latest-value series: every value the collector showed for
    // the listener and the probe equals the agent's own report for the window that ended at
    // that time (±3 ms: both sides print milliseconds): the listener's workers and busy_max
    // (2 and 2 while held), the probe's attempt counters (cumulative: the sum of the reports'
    // counts up to that window).
    poll(&mut seen);
    let report_at = |t: u64| {
        reports
            .iter()
            .find(|r| window_end(r).abs_diff(t) <= 3_000_000)
            .unwrap_or_else(|| panic!("no report window ends at {t}"))
    };
    let listener_obs: Vec<&Observation> = seen
        .iter()
        .filter(|o| {
            o.0.starts_with("headroom.workers")
                && o.1.get("port").map(String::as_str) == Some("8080")
        })
        .collect();
    let mut busy_max_seen = Vec::new();
    for (name, attrs, v, t) in &listener_obs {
        assert_eq!(
            attrs.get("process").map(String::as_str),
            Some("gunicorn"),
            "{attrs:?}"
        );
        let r = report_at(*t);
        let l = listener_8080(r).unwrap_or_else(|| panic!("no listener in {r}"));
        let want = match name.as_str() {
            "headroom.workers" => l["workers"].as_f64().unwrap(),
            _ => {
                busy_max_seen.push(*v);
                l["busy_max"].as_f64().unwrap()
            }
        };
        assert_eq!(*v, want, "{name} at {t}: fleet {v}, report {l}");
        if name == "headroom.workers" {
            assert_eq!(*v, 2.0, "gunicorn runs 2 workers");
        }
    }
    eprintln!("fleet busy_max values seen: {busy_max_seen:?}");
    assert!(
        busy_max_seen.contains(&2.0),
        "the held window shows 2 of 2 busy: {busy_max_seen:?}"
    );
    let probe_obs: Vec<&Observation> = seen
        .iter()
        .filter(|o| {
            o.0 == "headroom.probe.attempts"
                && o.1.get("pod").map(String::as_str) == Some("shop-api-5f6d7c8b9-q2x7k")
        })
        .collect();
    assert!(
        !probe_obs.is_empty(),
        "no probe attempts in the fleet: {seen:?}"
    );
    for (_, attrs, v, t) in &probe_obs {
        assert_eq!(attrs.get("workload").map(String::as_str), Some("shop-api"));
        let result = attrs.get("result").unwrap();
        let key = match result.as_str() {
            "timeout" => "timeouts",
            "error" => "errors",
            r => r,
        };
        let upto: u64 = windows
            .iter()
            .filter(|r| window_end(r) <= t + 3_000_000)
            .map(|r| probe_of(r).unwrap()[key].as_u64().unwrap())
            .sum();
        assert_eq!(*v as u64, upto, "{result} at {t}");
    }
    // The final values: the whole run's counts.
    let last = probe_obs.iter().map(|o| o.3).max().unwrap();
    let final_timeouts = probe_obs
        .iter()
        .find(|o| o.3 == last && o.1["result"] == "timeout")
        .map(|o| o.2 as u64);
    assert_eq!(final_timeouts, Some(timeouts));
}

/// What the TLS test server received: (path, protocol "http"/"grpc", metrics request).
type TlsReceived = Arc<
    Mutex<
        Vec<(
            String,
            &'static str,
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        )>,
    >,
>;

/// A CA (`NAME-ca.pem`, made here with rcgen), and with `leaf` a server certificate it signs
/// for IP 127.0.0.1 (`server.pem`, `server.key`).
fn make_ca(dir: &std::path::Path, name: &str, leaf: bool) {
    let ca = headroom_testbed::tls::TestCa::new(name);
    ca.write(&dir.join(format!("{name}-ca.pem")));
    if leaf {
        let issued = ca.issue(dir, "server", &["127.0.0.1"], false);
        std::fs::rename(issued.cert_file, dir.join("server.pem")).unwrap();
        std::fs::rename(issued.key_file, dir.join("server.key")).unwrap();
    }
}

/// An OTLP receiver over TLS (tokio-rustls + hyper) on 127.0.0.1 in `ns`: OTLP/HTTP
/// (`POST /v1/metrics`, `/v1/traces`, HTTP/1.1) and OTLP/gRPC (`…/Export` over HTTP/2, chosen
/// by ALPN). Runs on its own runtime until the test ends.
fn start_tls_receiver(ns: &Netns, dir: &std::path::Path) -> (SocketAddr, TlsReceived) {
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Bytes, Frame};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let issued = headroom_testbed::tls::Issued {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(issued.server_config(&[b"h2", b"http/1.1"]));
    let std_listener = in_netns(&ns.name, || Ok(TcpListener::bind("127.0.0.1:0")?)).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let got: TlsReceived = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let (acceptor, g) = (acceptor.clone(), g.clone());
                tokio::spawn(async move {
                    // A client that does not trust us ends here, in the handshake.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let g = g.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let grpc = path.ends_with("/Export");
                                let msg = if grpc {
                                    &body[5.min(body.len())..]
                                } else {
                                    &body[..]
                                };
                                if path.contains("metrics") {
                                    let m = ExportMetricsServiceRequest::decode(msg).unwrap();
                                    g.lock().unwrap().push((
                                        path.clone(),
                                        if grpc { "grpc" } else { "http" },
                                        m,
                                    ));
                                }
                                let resp = if grpc {
                                    let mut trailers = hyper::HeaderMap::new();
                                    trailers.insert("grpc-status", "0".parse().unwrap());
                                    let frames: Vec<
                                        Result<Frame<Bytes>, std::convert::Infallible>,
                                    > = vec![
                                        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                                        Ok(Frame::trailers(trailers)),
                                    ];
                                    hyper::Response::builder()
                                        .header("content-type", "application/grpc")
                                        .body(
                                            StreamBody::new(futures::stream::iter(frames)).boxed(),
                                        )
                                        .unwrap()
                                } else {
                                    hyper::Response::builder()
                                        .header("content-type", "application/x-protobuf")
                                        .body(
                                            Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
                                        )
                                        .unwrap()
                                };
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, svc)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
    });
    (addr, got)
}

/// The eni0 peak in a metrics request: (window end ns, peak).
fn eni0_peak(
    req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> Option<(u64, i64)> {
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let m = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == "headroom.linklocal.pps.peak")?;
    let Some(metric::Data::Gauge(g)) = &m.data else {
        return None;
    };
    let p = g
        .data_points
        .iter()
        .find(|p| str_attr(&p.attributes, "interface") == Some("eni0"))?;
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => Some((p.time_unix_nano, v)),
        _ => None,
    }
}

/// Issue 8's TLS: `https://` endpoints for OTLP/HTTP and gRPC, verified against a CA file
/// (config field `otlp_certificate`, then `OTEL_EXPORTER_OTLP_CERTIFICATE`): the windows
/// arrive over TLS with the same peaks as the agent's reports; with a CA that did not sign the
/// receiver's certificate the agent says so in a clear line, keeps the windows queued and keeps
/// measuring; a CA file that is not one stops it at startup with exit 64 and one line.
#[test]
fn otlp_over_tls_verifies_the_receiver_against_the_configured_ca() {
    headroom_testbed::require_or_return!(
        "otlp_over_tls_verifies_the_receiver_against_the_configured_ca",
        &headroom_testbed::root_and(&["ip", "unbound", "dig"])
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let dir = bed.dir.path().to_path_buf();
    make_ca(&dir, "good", true);
    make_ca(&dir, "wrong", false);
    let (addr, got) = start_tls_receiver(&bed.node, &dir);
    let endpoint = format!("https://{addr}");
    let good_ca = dir.join("good-ca.pem").display().to_string();
    let wrong_ca = dir.join("wrong-ca.pem").display().to_string();

    // A bad CA file: one line, exit 64, before measuring.
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    let out = bed
        .node
        .command(&AGENT)
        .args(NO_IMDS)
        .args(["run", "--interface", "eni0", "--otlp-endpoint", &endpoint])
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", dir.join("garbage.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("invalid otlp_certificate") && stderr.contains("garbage.pem"),
        "{stderr}"
    );

    let dig = |n: usize| {
        for _ in 0..n {
            let _ = bed
                .node
                .command("dig")
                .args(["+short", "+tries=1", "+timeout=1", "@169.254.169.253"])
                .arg(format!("svc1.{}", headroom_testbed::bed::ZONE))
                .output();
        }
    };
    for (protocol, via_env) in [("http/protobuf", false), ("grpc", true)] {
        let config = bed.path("agent.toml");
        let toml = if via_env {
            String::new()
        } else {
            format!("otlp_certificate = \"{good_ca}\"\n")
        };
        std::fs::write(&config, toml).unwrap();
        let env: Vec<(&str, &str)> = if via_env {
            vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", good_ca.as_str())]
        } else {
            vec![]
        };
        let before = got.lock().unwrap().len();
        let more = [
            "--otlp-protocol",
            protocol,
            "--config",
            config.to_str().unwrap(),
        ];
        let agent = Agent::exporting(&bed, NODE, "1s", &endpoint, &more, &env);
        std::thread::sleep(Duration::from_secs(2));
        dig(5);
        let deadline = Instant::now() + Duration::from_secs(15);
        while got.lock().unwrap().len() < before + 4 {
            assert!(
                Instant::now() < deadline,
                "{protocol}: nothing arrived over TLS"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let reports = agent.reports();
        let log = agent.log();
        agent.guard.stop().unwrap();
        let received: Vec<_> = got.lock().unwrap()[before..].to_vec();
        let want = if protocol == "grpc" { "grpc" } else { "http" };
        assert!(received.iter().all(|r| r.1 == want), "{protocol}");
        // Each window's peak as the agent reported it (window end within ±3 ms: the report
        // prints milliseconds).
        let mut matched = 0;
        for (_, _, req) in &received {
            let Some((end, peak)) = eni0_peak(req) else {
                continue;
            };
            if let Some(r) = reports
                .iter()
                .find(|r| window_end(r).abs_diff(end) <= 3_000_000)
            {
                let agent_peak = r["interfaces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["name"] == "eni0")
                    .unwrap()["peak_pps"]
                    .as_i64()
                    .unwrap();
                assert_eq!(peak, agent_peak, "{protocol} window ending {end}");
                matched += 1;
            }
        }
        assert!(matched >= 3, "{protocol}: {matched} windows matched");
        assert!(
            !log.iter().any(|l| l.contains("OTLP export failing")),
            "{protocol}: {log:?}"
        );
    }
    // The queries were seen: some window over TLS carried a non-zero peak.
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .any(|r| eni0_peak(&r.2).is_some_and(|p| p.1 > 0)));

    // A CA that did not sign the receiver's certificate: a clear error, windows stay queued,
    // measurement goes on.
    let before = got.lock().unwrap().len();
    let agent = Agent::exporting(
        &bed,
        NODE,
        "1s",
        &endpoint,
        &[],
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", wrong_ca.as_str())],
    );
    std::thread::sleep(Duration::from_secs(4));
    let (code, text) = scrape::get(&bed.node, &format!("http://{AGENT_METRICS}/metrics"));
    let log = agent.log();
    let reports = agent.reports();
    agent.guard.stop().unwrap();
    assert_eq!(
        got.lock().unwrap().len(),
        before,
        "nothing delivered to an untrusted receiver"
    );
    let line = log
        .iter()
        .find(|l| l.contains("TLS certificate is not trusted"))
        .unwrap_or_else(|| panic!("no clear error in {log:?}"));
    assert!(
        line.contains("otlp_certificate") && line.to_lowercase().contains("unknownissuer"),
        "{line}"
    );
    assert_eq!(code, 200);
    assert!(
        scrape::sample(&text, "headroom_otlp_send_failures_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        scrape::sample(&text, "headroom_otlp_windows_queued").unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        reports.len() >= 2,
        "still measuring: {} reports",
        reports.len()
    );
}

/// eni0's windows in the collector's fleet: (start, peak_pps).
fn fleet_windows(bed: &Bed) -> Vec<(String, u64)> {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    if code != 200 {
        return Vec::new();
    }
    let fleet: Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for c in fleet["clusters"].as_array().into_iter().flatten() {
        for n in c["nodes"].as_array().into_iter().flatten() {
            if n["name"] != NODE {
                continue;
            }
            for i in n["interfaces"].as_array().into_iter().flatten() {
                if i["interface"] != "eni0" {
                    continue;
                }
                for w in i["windows"].as_array().into_iter().flatten() {
                    out.push((
                        w["start"].as_str().unwrap_or("").to_string(),
                        w["peak_pps"].as_u64().unwrap_or(0),
                    ));
                }
            }
        }
    }
    out
}

/// Outage length: 2 minutes (issue 8: "Collector stopped for 2 minutes while the agent
/// measures a burst, then restarted: the burst's peak arrives").
const OUTAGE: Duration = Duration::from_secs(120);

/// The collector goes away for 2 minutes while dnsperf sends a 3 s burst at 700 queries/s to
/// the link-local resolver; after it comes back, the burst's window reaches it with the
/// agent's peak (±1 packet/s), which is tcpdump's busiest second (the agent slides in 10 ms
/// steps, so it may be lower by one step's packets, never higher); every window cut during the
/// outage arrives, none is dropped.
#[test]
fn a_burst_measured_during_a_two_minute_collector_outage_arrives() {
    let mut needs = bed_needs();
    needs.push(Need::Tool("curl"));
    headroom_testbed::require_or_return!(
        "a_burst_measured_during_a_two_minute_collector_outage_arrives",
        &needs
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let collector = start_collector(&bed, None);
    let agent = Agent::exporting(
        &bed,
        NODE,
        "1s",
        &format!("http://{GRPC}"),
        &["--otlp-protocol", "grpc"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while fleet_windows(&bed).is_empty() {
        assert!(Instant::now() < deadline, "no window before the outage");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dump = bed.tcpdump("eni0", "dst host 169.254.169.253").unwrap();
    let before = agent.reports().len();
    let down = Instant::now();
    let out = collector.stop().unwrap();
    assert!(out.status.success(), "collector exit {:?}", out.status);
    let sent = headroom_testbed::bed::run_dnsperf(
        &mut bed
            .dnsperf(headroom_testbed::bed::LINKLOCAL_RESOLVER, 700, 3, None)
            .unwrap(),
    )
    .unwrap();
    assert!(sent.sent >= 1890, "dnsperf sent {}", sent.sent);
    std::thread::sleep(Duration::from_secs(2));
    let truth = headroom_testbed::pcap::busiest_second(&dump.stop_and_timestamps().unwrap());
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    let during: Vec<Value> = agent.reports()[before..].to_vec();
    assert!(
        during.len() >= 110,
        "{} windows during the 120 s outage",
        during.len()
    );
    let _collector = start_collector(&bed, None);
    let outage = down.elapsed();
    let peak_of = |r: &Value| {
        r["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "eni0")
            .unwrap()["peak_pps"]
            .as_u64()
            .unwrap()
    };
    let burst = during.iter().max_by_key(|r| peak_of(r)).unwrap();
    let start = burst["window"]["start"].as_str().unwrap().to_string();
    let peak = peak_of(burst);
    let step = 700u64.div_ceil(100) + 1;
    assert!(
        peak <= truth && peak + step >= truth,
        "agent peak {peak} vs tcpdump's busiest second {truth} (one 10 ms step: {step})"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let fleet_peak = loop {
        if let Some((_, p)) = fleet_windows(&bed).into_iter().find(|w| w.0 == start) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the burst's window {start} never arrived"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "after a {outage:?} outage: window {start}: tcpdump busiest second {truth}/s, agent peak {peak}/s, collector {fleet_peak}/s; {} windows during the outage",
        during.len()
    );
    assert!(
        peak.abs_diff(fleet_peak) <= 1,
        "agent {peak} vs collector {fleet_peak}"
    );
    // Nothing lost: every window cut during the outage reached the new collector.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have: Vec<String> = fleet_windows(&bed).into_iter().map(|w| w.0).collect();
        let lost: Vec<&str> = during
            .iter()
            .map(|r| r["window"]["start"].as_str().unwrap())
            .filter(|s| !have.iter().any(|h| h == s))
            .collect();
        if lost.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "windows lost: {lost:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, m) = scrape::get(&bed.node, &format!("http://{AGENT_METRICS}/metrics"));
    assert_eq!(
        scrape::sample(&m, "headroom_otlp_windows_dropped_total"),
        Some(0.0),
        "{m}"
    );
    assert!(
        scrape::sample(&m, "headroom_otlp_send_failures_total").unwrap_or(0.0) > 0.0,
        "the outage was seen: {m}"
    );
    drop(agent);
}

/// `n` requests to `/slow`, each holding a gunicorn worker for 6 s.
fn hold_workers(bed: &Bed, n: usize) -> Vec<Guard> {
    (0..n)
        .map(|_| {
            let mut c = bed.node.command("curl");
            c.args(["-s", "-o", "/dev/null", "--max-time", "10"])
                .arg(format!("http://{POD_IP}:8080/slow"))
                .stdout(Stdio::null());
            Guard::spawn("curl /slow", &mut c).unwrap()
        })
        .collect()
}

/// The `shop-api` Deployment and its autoscaling/v2 HPA at 12 replicas, scaling on CPU.
fn shop_api_scale(replicas: u32) -> [Value; 2] {
    [
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": "shop", "name": "shop-api", "uid": "d-shop-api"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop-api"}},
                "template": {"metadata": {"labels": {"app": "shop-api"}}, "spec": {"containers": []}}},
            "status": {"replicas": replicas, "readyReplicas": replicas}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "shop-api", "uid": "h-shop-api"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-api"},
                "minReplicas": 4, "maxReplicas": 40,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60}}}]},
            "status": {"currentReplicas": replicas, "desiredReplicas": replicas}}),
    ]
}

/// Issue 9's HPAOverScaling from real worker figures, end to end: gunicorn (2 sync workers)
/// in a pod of Deployment `shop-api`, both workers held busy for 6 s by two slow requests
/// (ground truth: 2 busy, the most there can be); the agent measures them and exports over
/// OTLP; the collector sums them into the workload, reads the Deployment and its HPA (12
/// replicas) from the fake API server through its kube-rs watchers, and reports the HPA
/// over-scaled: needed = ceil(busy p95 2 / (2 workers × 0.7)) = 2, and 12 > 2 × 1.5.
/// The readiness probe that timed out behind the busy workers is a ProbeTimeoutRisk finding.
#[test]
fn hpa_over_scaling_from_a_real_gunicorn_pods_busy_workers() {
    headroom_testbed::require_or_return!(
        "hpa_over_scaling_from_a_real_gunicorn_pods_busy_workers",
        &headroom_testbed::root_and(&["ip", "gunicorn", "curl"])
    );
    let bed = Bed::new(1).unwrap();
    let podns = bed.pod(POD_IP).unwrap();
    // The pod's container cgroup as the kubelet makes it: the agent knows a listener's pod
    // by the uid in its cgroup path. Declared before gunicorn, so it is removed after it.
    let cg = headroom_testbed::cgroup::KubeCgroup::new(SHOP_API_UID, &"c".repeat(64)).unwrap();
    let gunicorn = start_gunicorn(&bed, &podns);
    let master = gunicorn.pid();
    // The second worker may still be forking when the first answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers: Vec<u32> = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap();
        let w: Vec<u32> = children
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        if w.len() == 2 {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "gunicorn --workers 2: {children}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for pid in std::iter::once(master).chain(workers) {
        cg.add(pid).unwrap();
    }
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    api.apply(shop_api_pod());
    for o in shop_api_scale(12) {
        api.apply(o);
    }
    let _collector = procs::start_judging_collector(&bed, &kubeconfig);
    let agent = Agent::exporting(
        &bed,
        NODE,
        "1s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    // The listener is known (idle) before the hold.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.reports().iter().any(|r| listener_8080(r).is_some()) {
        assert!(
            Instant::now() < deadline,
            "the agent never saw gunicorn's listener"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let hold = hold_workers(&bed, 2);
    for h in hold {
        assert!(h.wait(Duration::from_secs(12)).unwrap().status.success());
    }
    // The agent's own figures: windows fully inside the hold show 2 of 2 busy.
    let busiest = agent
        .reports()
        .iter()
        .filter_map(listener_8080)
        .map(|l| l["busy_mean"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(
        busiest, 2.0,
        "a window inside the hold has both workers busy"
    );

    let findings = |bed: &Bed| -> Vec<Value> {
        let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/findings"));
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["findings"].as_array().cloned().unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let hpa = loop {
        let all = findings(&bed);
        if let Some(f) = all
            .iter()
            .find(|f| f["rule"] == "HPAOverScaling" && f["state"] == "firing")
        {
            break f.clone();
        }
        if Instant::now() >= deadline {
            let (_, fleet) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
            let fleet: Value = serde_json::from_str(&fleet).unwrap();
            panic!(
                "no firing HPAOverScaling: {}\nworkloads: {}\nlisteners: {}",
                serde_json::to_string_pretty(&all).unwrap(),
                fleet["clusters"][0]["workloads"],
                fleet["clusters"][0]["nodes"][0]["listeners"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{}", serde_json::to_string_pretty(&hpa).unwrap());
    let e = &hpa["evidence"];
    assert_eq!(hpa["subject"]["namespace"], "shop");
    assert_eq!(hpa["subject"]["workload"], "shop-api");
    assert_eq!(e["hpa"], "shop-api");
    assert_eq!(e["replicas"], 12);
    assert_eq!(e["workers_per_pod"], 2, "gunicorn --workers 2");
    // busy p95 over the history: the hold's full windows (2.0) are more than 5 % of them.
    assert_eq!(e["busy_p95"].as_f64(), Some(2.0), "{e}");
    assert_eq!(e["busy_max"].as_f64(), Some(2.0), "{e}");
    assert_eq!(e["needed_replicas"], 2, "ceil(2 / (2 × 0.7))");
    let fix = hpa["fix"].as_str().unwrap();
    assert!(fix.contains("type: AverageValue"), "{fix}");
    assert!(
        fix.contains("averageValue: \"1400m\""),
        "2 workers × 0.7: {fix}"
    );
    assert!(fix.contains("name: shop-api"), "{fix}");

    // The probe that timed out behind the busy workers.
    let all = findings(&bed);
    let probe = all
        .iter()
        .find(|f| {
            f["rule"] == "ProbeTimeoutRisk" && f["subject"]["pod"] == "shop-api-5f6d7c8b9-q2x7k"
        })
        .unwrap_or_else(|| {
            panic!(
                "no ProbeTimeoutRisk: {}",
                serde_json::to_string_pretty(&all).unwrap()
            )
        });
    eprintln!("{}", serde_json::to_string_pretty(probe).unwrap());
    // Its fix points at the saturation behind it, not at timeoutSeconds.
    let fix = probe["fix"].as_str().unwrap();
    assert!(fix.contains("behind busy workers"), "{fix}");
    assert_eq!(
        probe["evidence"]["workload_busy"]["busy_max"].as_f64(),
        Some(2.0)
    );
    assert!(probe["evidence"]["timeouts"].as_u64().unwrap() >= 1);
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
}
