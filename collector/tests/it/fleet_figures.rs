//! Workloads, listeners, probes, DNS top talkers and ENA allowance rises through a real
//! headroom-collector: exports shaped exactly as the agent sends them (OTLP/HTTP protobuf for
//! one node, OTLP/gRPC for the other), and a foreign sender (the OpenTelemetry Python SDK).
//! Every expected figure is worked out by hand from the windows sent.

use crate::common;

use common::agent_otlp::{now_ns, Window, S};
use common::*;
use headroom_testbed::scrape::{promtool_check, sample};
use headroom_testbed::{require, Need};
use prost::Message;
use std::process::Command;
use std::time::{Duration, Instant};

const PB: (&str, &str) = ("content-type", "application/x-protobuf");

fn post(c: &Collector, w: &Window) {
    let (code, body) = request(
        &c.otlp_http,
        "POST",
        "/v1/metrics",
        &[PB],
        &w.request().encode_to_vec(),
    )
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
}

fn export_grpc(c: &Collector, windows: &[Window]) {
    let rt = runtime();
    rt.block_on(async {
        let mut client = crate::metrics_client(c).await;
        for w in windows {
            let resp = client.export(w.request()).await.unwrap().into_inner();
            assert!(resp.partial_success.is_none(), "{resp:?}");
        }
    });
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Two nodes × two pods of Deployment shop/web, three 10 s windows each, node n2's windows
/// 5 s after n1's. Busy per window: n1 pods web-1 [1,2,3], web-2 [0,1,1] (node sums 1,3,4);
/// n2 pods web-3 [2,2,2], web-4 [1,1,3] (sums 3,3,5). The workload's sum at each window end
/// takes every pod's window in effect then: t=10: 1+3, 15: 3+3, 20: 3+3, 25: 4+3, 30: 4+5
/// (n2's window to 35 waits for n1's next) → [4, 6, 6, 7, 9]: mean 6.4, p95 (nearest rank
/// of 5 = the 5th) 9, max 9, latest 9. n1 also sends its interface (allowance counters, DNS)
/// and a readiness probe.
#[test]
fn workloads_probes_dns_and_allowances_from_agent_exports() {
    let c = Collector::start();
    let t0 = (now_ns() / S - 120) * S;
    let counter_start = t0 - S;
    let n1_busy = [[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]];
    let n2_busy = [[2.0, 2.0, 2.0], [1.0, 1.0, 3.0]];
    let probe_attempts = [
        [("ok", 10), ("slow", 0), ("timeout", 0), ("error", 0)],
        [("ok", 20), ("slow", 0), ("timeout", 1), ("error", 0)],
        [("ok", 30), ("slow", 2), ("timeout", 1), ("error", 0)],
    ];
    let p99 = [(0.2, 0.3), (1.0, 1.0), (0.25, 0.4)];
    let linklocal = [1, 3, 8];
    let pps = [7, 7, 7];
    let queries = [100, 250, 450];
    let unanswered = [0, 2, 5];
    let mut n2_windows = Vec::new();
    for w in 0..3usize {
        let start = t0 + 10 * S * w as u64;
        let mut n1 = Window::new("n1", start, start + 10 * S, counter_start);
        // web-1 is saturated 0.5 s every window; its queue reaches w.
        let sat = 0.5 * (w + 1) as f64;
        n1.listener("shop", "web-1", "web", 4, n1_busy[0][w], 4, w as u32, sat)
            .listener("shop", "web-2", "web", 4, n1_busy[1][w], 2, 0, 0.0)
            .interface("eth0", "eni-1", 600 + w as u64, 550)
            .allowance("eth0", "eni-1", "linklocal", linklocal[w])
            .allowance("eth0", "eni-1", "pps", pps[w])
            .dns(
                "eth0",
                "eni-1",
                0.8,
                &[
                    ("db.example.com.shop.svc.cluster.local", 400),
                    ("db.example.com", 100),
                ],
                ("10.0.1.5", "shop", "web-1", "web", 500, 400),
                queries[w],
                unanswered[w],
            )
            .savings(
                "eth0",
                "eni-1",
                (0.25, 12.5, 40.0 + w as f64, 8.0, 40.0),
                ("10.0.1.5", "shop", "web-1", "web", 12.5),
            )
            .probe(
                "shop",
                "web-1",
                probe_attempts[w],
                u64::from(w == 2),
                1.0,
                Some(p99[w]),
            );
        post(&c, &n1);
        let start2 = start + 5 * S;
        let mut n2 = Window::new("n2", start2, start2 + 10 * S, counter_start);
        n2.listener("shop", "web-3", "web", 4, n2_busy[0][w], 4, 0, sat)
            .listener("shop", "web-4", "web", 4, n2_busy[1][w], 4, 0, 0.0);
        n2_windows.push(n2);
    }
    export_grpc(&c, &n2_windows);

    let fleet = c.fleet();
    let cluster = &fleet["clusters"][0];
    assert_eq!(cluster["name"], "prod");
    let wl = &cluster["workloads"][0];
    assert_eq!(cluster["workloads"].as_array().unwrap().len(), 1, "{wl:#}");
    assert_eq!(
        (&wl["namespace"], &wl["kind"], &wl["name"]),
        (&"shop".into(), &"Deployment".into(), &"web".into())
    );
    assert_eq!(
        wl["pods"],
        serde_json::json!(["n1/web-1", "n1/web-2", "n2/web-3", "n2/web-4"])
    );
    assert_eq!(wl["workers_per_pod"], 4);
    assert_eq!(wl["windows"], 5, "{wl:#}");
    assert!(close(&wl["busy_mean"], 6.4), "{wl:#}");
    assert!(close(&wl["busy_p95"], 9.0), "{wl:#}");
    assert!(close(&wl["busy_max"], 9.0), "{wl:#}");
    assert!(close(&wl["busy_latest"], 9.0), "{wl:#}");
    assert_eq!(wl["queue_max"], 2);
    // web-1 and web-3: 1.5 s each; the counters began 1 s before the first window.
    assert!(close(&wl["saturated_seconds"], 3.0), "{wl:#}");
    assert!(close(&wl["history_seconds"], 35.0), "{wl:#}");

    let n1 = node(&fleet, "n1").unwrap();
    let l = &n1["listeners"][0];
    assert_eq!(
        (&l["pod"], &l["port"], &l["workers"]),
        (&"web-1".into(), &8000.into(), &4.into())
    );
    assert!(
        close(&l["busy"], 3.0) && close(&l["utilization"], 1.0),
        "{l:#}"
    );
    assert!(close(&l["saturated_seconds_total"], 1.5), "{l:#}");

    // Probe: 30 ok, 2 slow, 1 timeout over the history (the counters are fresh); headroom
    // = timeout 1 s / latest p99 0.25 s.
    let p = &n1["probes"][0];
    assert_eq!(
        p["attempts"],
        serde_json::json!({"ok": 30, "slow": 2, "timeout": 1, "error": 0})
    );
    assert_eq!(p["predicted_removals"], 1);
    assert!(
        close(&p["history_seconds"], 30.0),
        "three 10 s windows: {p:#}"
    );
    assert!(close(&p["headroom"], 4.0), "{p:#}");
    assert!(close(&p["latency_p99_seconds"], 0.25) && close(&p["latency_max_seconds"], 0.4));
    assert!(close(&p["timeout_seconds"], 1.0));
    assert_eq!(p["probe"], "readiness");

    // Interface: linklocal allowance rose 3 → 8 in the latest window, pps stayed at 7.
    let i = &n1["interfaces"][0];
    assert_eq!(
        i["allowance_exceeded_latest"],
        serde_json::json!({"linklocal_allowance_exceeded": 5, "pps_allowance_exceeded": 0})
    );
    assert_eq!(i["latest"]["dns_peak_pps"], 550);
    assert_eq!(i["latest"]["peak_pps"], 602);
    let d = &i["dns"];
    assert!(close(&d["search_expansion_share"], 0.8));
    assert_eq!(
        d["top_qnames"][0]["qname"],
        "db.example.com.shop.svc.cluster.local"
    );
    assert_eq!(d["top_qnames"][0]["queries"], 400);
    assert_eq!(d["top_qnames"][1]["queries"], 100);
    assert_eq!(
        d["top_sources"][0],
        serde_json::json!({"source": "10.0.1.5", "namespace": "shop", "pod": "web-1",
            "workload_kind": "Deployment", "workload": "web", "queries": 500,
            "search_expansion_packets": 400, "cache_savings_pps": 12.5})
    );
    // The agent's measured fix savings, the latest window's.
    assert_eq!(
        d["measured"],
        serde_json::json!({"cacheable_share": 0.25, "cache_pps": 12.5, "cache_peak_pps": 42.0,
            "ndots2_pps": 8.0, "fqdn_pps": 40.0})
    );
    assert_eq!(
        (
            &d["unanswered_latest"],
            &d["unanswered_previous"],
            &d["queries_latest"]
        ),
        (&3.into(), &2.into(), &200.into())
    );
    assert_eq!(fleet["ingest"]["points_rejected"], 0);

    // /metrics carries the same figures and passes promtool.
    let (code, text) = request(&c.api, "GET", "/metrics", &[], &[]).unwrap();
    assert_eq!(code, 200);
    let text = String::from_utf8(text).unwrap();
    let wl_labels = r#"{cluster="prod",namespace="shop",kind="Deployment",workload="web"}"#;
    assert_eq!(
        sample(
            &text,
            &format!("headroom_fleet_workload_busy_p95{wl_labels}")
        ),
        Some(9.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("headroom_fleet_workload_busy_mean{wl_labels}")
        ),
        Some(6.4)
    );
    assert_eq!(
        sample(
            &text,
            &format!("headroom_fleet_workload_workers{wl_labels}")
        ),
        Some(16.0)
    );
    let probe_labels = r#"{cluster="prod",node="n1",namespace="shop",pod="web-1",container="app",probe="readiness"}"#;
    assert_eq!(
        sample(
            &text,
            &format!("headroom_fleet_probe_headroom{probe_labels}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"headroom_fleet_ena_allowance_exceeded{cluster="prod",node="n1",interface="eth0",eni="eni-1",allowance="linklocal"}"#
        ),
        Some(5.0)
    );
    if require(
        "promtool check of the fleet's /metrics",
        &[Need::Tool("promtool")],
    ) {
        promtool_check(&text);
    }

    // The status page shows the three tables.
    let (_, page) = request(&c.api, "GET", "/", &[], &[]).unwrap();
    let page = String::from_utf8(page).unwrap();
    for want in [
        "Top DNS names",
        "db.example.com.shop.svc.cluster.local",
        "Most saturated workloads",
        "shop/web",
        "Probes closest to their timeout",
        "web-1",
    ] {
        assert!(page.contains(want), "{want} missing from the page");
    }
}

/// A foreign sender (the OpenTelemetry Python SDK, over OTLP/HTTP) using the contract's names:
/// an observable gauge of busy workers, a probe attempts counter and a probe duration
/// histogram. The listener and its workload appear; the histogram lands among the node's other
/// metrics.
const PY_SENDER: &str = r#"
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.metrics import Observation
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
endpoint, node = sys.argv[1:3]
res = Resource.create({"service.name": "py-agent", "k8s.node.name": node, "k8s.cluster.name": "py"})
mp = MeterProvider(resource=res, metric_readers=[PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"), export_interval_millis=60000)])
meter = mp.get_meter("py-sender")
listener = {"namespace": "py", "pod": "py-web-1", "container": "app", "port": "8080",
            "process": "gunicorn", "workload_kind": "Deployment", "workload": "py-web"}
meter.create_observable_gauge("headroom.workers.busy", callbacks=[lambda o: [Observation(2.5, listener)]])
meter.create_observable_gauge("headroom.workers", callbacks=[lambda o: [Observation(8, listener)]])
probe = {"namespace": "py", "pod": "py-web-1", "container": "app", "probe": "liveness",
         "workload_kind": "Deployment", "workload": "py-web"}
meter.create_counter("headroom.probe.attempts").add(7, dict(probe, result="ok"))
meter.create_counter("headroom.probe.attempts").add(2, dict(probe, result="timeout"))
h = meter.create_histogram("headroom.probe.duration.seconds", unit="s")
for v in [0.01, 0.02, 0.5]:
    h.record(v, probe)
assert mp.force_flush(10000), "flush"
mp.shutdown()
print("exported")
"#;

#[test]
fn python_sdk_listener_probe_and_histogram() {
    if !python_sdk_present(
        "python_sdk_listener_probe_and_histogram",
        "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
    ) {
        return;
    }
    let c = Collector::start();
    run_ok(
        "",
        Command::new("python3").args([
            "-c",
            PY_SENDER,
            &format!("http://{}", c.otlp_http),
            "py-node",
        ]),
    );
    let fleet = c.fleet();
    let n = node(&fleet, "py-node").unwrap_or_else(|| panic!("{fleet:#}"));
    let l = &n["listeners"][0];
    assert_eq!(
        (&l["pod"], &l["port"], &l["workers"]),
        (&"py-web-1".into(), &8080.into(), &8.into())
    );
    assert!(close(&l["busy"], 2.5), "{l:#}");
    let wl = &fleet["clusters"][0]["workloads"][0];
    assert_eq!(wl["name"], "py-web");
    assert!(close(&wl["busy_latest"], 2.5), "{wl:#}");
    assert_eq!(wl["workers_per_pod"], 8);
    // An SDK (or an agent before threads were sent) says nothing of threads: one per worker,
    // and not known.
    assert_eq!(
        (&wl["capacity_per_pod"], &wl["threads_known"], &wl["model"]),
        (&8.into(), &false.into(), &"prefork".into()),
        "{wl:#}"
    );
    assert_eq!((&l["threads"], &l["capacity"]), (&1.into(), &8.into()));
    // The SDK's counters started when the script did: inside the history, so all of it counts.
    let p = &n["probes"][0];
    assert_eq!(p["probe"], "liveness");
    assert_eq!(
        p["attempts"],
        serde_json::json!({"ok": 7, "timeout": 2}),
        "{p:#}"
    );
    assert!(p["headroom"].is_null(), "no p99 sent, no headroom");
    let hist = n["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "headroom.probe.duration.seconds")
        .unwrap_or_else(|| panic!("{n:#}"));
    assert_eq!(hist["kind"], "histogram");
    assert_eq!(hist["series"][0]["value"], 3.0, "the histogram's count");
}

/// With node_expiry 15s, a pod's listener and probe leave while its node keeps reporting its
/// interface, not before those 15 s (the collector sweeps every 10 s: an expiry shorter than
/// the sweep could not show leaving too early); the node stays.
#[test]
fn listeners_and_probes_of_a_gone_pod_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(&cfg, "node_expiry = \"15s\"\n").unwrap();
    let c = Collector::start_with(&["--config", cfg.to_str().unwrap()]);
    let t = now_ns();
    let mut w = Window::new("n-exp", t - 10 * S, t, t - 11 * S);
    w.listener("shop", "gone-1", "gone", 2, 1.0, 1, 0, 0.0)
        .probe(
            "shop",
            "gone-1",
            [("ok", 1), ("slow", 0), ("timeout", 0), ("error", 0)],
            0,
            1.0,
            Some((0.1, 0.1)),
        )
        .interface("eth0", "eni-1", 10, 5);
    let posted = Instant::now();
    post(&c, &w);
    let n = node(&c.fleet(), "n-exp").unwrap().clone();
    assert_eq!(n["listeners"].as_array().unwrap().len(), 1);
    assert_eq!(n["probes"].as_array().unwrap().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let t = now_ns();
        let mut w = Window::new("n-exp", t - 2 * S, t, t - 11 * S);
        w.interface("eth0", "eni-1", 10, 5);
        post(&c, &w);
        let fleet = c.fleet();
        let n = node(&fleet, "n-exp").expect("the node keeps reporting");
        if n["listeners"].as_array().unwrap().is_empty() {
            // Not before node_expiry (15 s after its window ended, just before it was posted;
            // 0.5 s for that and the clocks).
            let gone = posted.elapsed();
            assert!(
                gone >= Duration::from_millis(14_500),
                "the listener left {gone:?} after its last window, before node_expiry (15 s)"
            );
            assert!(n["probes"].as_array().unwrap().is_empty());
            assert!(fleet["clusters"][0]["workloads"]
                .as_array()
                .unwrap()
                .is_empty());
            assert_eq!(fleet["ingest"]["listeners_probes_expired"], 2);
            assert_eq!(fleet["ingest"]["nodes_expired"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "listener never expired: {n:#}");
    }
}
