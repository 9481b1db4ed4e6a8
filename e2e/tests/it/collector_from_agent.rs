//! Agent → collector in the netns bed: `headroom-agent run --otlp-endpoint` exports every
//! report window; the collector's fleet shows the same peak as the agent's report for the same
//! window, and a burst measured while the collector was down arrives after it comes back.
//!
//! Both run in the bed's node namespace; the agent exports to the collector on 127.0.0.1, over
//! OTLP/HTTP in the first test and over gRPC in the outage test.

use crate::collector_common as common;
use crate::procs::{self, Agent, API, GRPC, OTLP_HTTP};

use headroom_testbed::bed::{self, Bed};
use headroom_testbed::proc::Guard;
use headroom_testbed::scrape;
use headroom_testbed::Need;
use std::time::{Duration, Instant};

pub(crate) const NODE: &str = "bed-node";

fn needs() -> Vec<Need> {
    headroom_testbed::root_and(&["ip", "unbound", "dnsperf", "dig", "curl"])
}

fn start_collector(bed: &Bed) -> Guard {
    procs::start_collector(bed, &[], &[])
}

/// `headroom-agent run` exporting to the collector: `protocol` `http/protobuf` (to the
/// OTLP/HTTP port) or `grpc` (to the gRPC port); `config`: TOML for `--config`.
fn start_agent(bed: &Bed, interval: &str, protocol: &str, config: &str) -> Agent {
    let config_path = bed.path("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let endpoint = match protocol {
        "grpc" => format!("http://{GRPC}"),
        _ => format!("http://{OTLP_HTTP}"),
    };
    let more = [
        "--config",
        config_path.to_str().unwrap(),
        "--otlp-protocol",
        protocol,
    ];
    Agent::exporting(bed, NODE, interval, &endpoint, &more, &[])
}

/// eni0's figures in an agent report.
fn eni0(report: &serde_json::Value) -> &serde_json::Value {
    report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eni0")
        .unwrap()
}

/// eni0's windows in the collector's fleet, by window start.
pub(crate) fn fleet_windows(bed: &Bed) -> Vec<serde_json::Value> {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    if code != 200 {
        return Vec::new();
    }
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    common::node(&fleet, NODE)
        .and_then(|n| n["interfaces"].as_array().cloned())
        .and_then(|i| i.into_iter().find(|i| i["interface"] == "eni0"))
        .and_then(|i| i["windows"].as_array().cloned())
        .unwrap_or_default()
}

/// Waits until the collector has the window that starts at `start`.
fn wait_window(bed: &Bed, start: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(w) = fleet_windows(bed).into_iter().find(|w| w["start"] == start) {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "window {start} never reached the collector; it has {:?}",
            fleet_windows(bed)
                .iter()
                .map(|w| w["start"].clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent's report with the highest eni0 peak.
fn busiest(reports: &[serde_json::Value]) -> serde_json::Value {
    reports
        .iter()
        .max_by_key(|r| eni0(r)["peak_pps"].as_u64().unwrap())
        .unwrap()
        .clone()
}

#[test]
fn collector_shows_the_agents_peak_for_the_same_window() {
    headroom_testbed::require_or_return!(
        "collector_shows_the_agents_peak_for_the_same_window",
        &needs()
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let _collector = start_collector(&bed);
    let agent = start_agent(&bed, "2s", "http/protobuf", "");
    std::thread::sleep(Duration::from_secs(3));
    let sent =
        bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 500, 4, None).unwrap()).unwrap();
    // dnsperf may fall a little behind on a loaded machine; the comparison that matters is
    // agent against collector.
    assert!(sent.sent >= 1800, "dnsperf sent {}", sent.sent);
    std::thread::sleep(Duration::from_secs(3));
    let report = busiest(&agent.reports());
    let start = report["window"]["start"].as_str().unwrap().to_string();
    let peak = eni0(&report)["peak_pps"].as_u64().unwrap();
    assert!(
        (450..=550).contains(&peak),
        "agent peak {peak} vs 500/s sent"
    );
    let w = wait_window(&bed, &start, Duration::from_secs(10));
    let fleet_peak = w["peak_pps"].as_u64().unwrap();
    eprintln!("window {start}: agent peak {peak}/s, collector {fleet_peak}/s");
    assert!(
        peak.abs_diff(fleet_peak) <= 1,
        "agent {peak} vs collector {w}"
    );
    assert_eq!(w["seconds"], report["window"]["seconds"]);
    assert_eq!(w["mean_pps"], eni0(&report)["mean_pps"]);
    assert_eq!(w["limit_pps"], 1024);
    // Every window the agent cut so far is in the fleet too.
    std::thread::sleep(Duration::from_secs(1));
    let have: Vec<_> = fleet_windows(&bed)
        .iter()
        .map(|w| w["start"].clone())
        .collect();
    for r in agent.reports().iter().take(agent.reports().len() - 1) {
        assert!(
            have.contains(&r["window"]["start"]),
            "missing {}",
            r["window"]["start"]
        );
    }
    // The page ranks the node's interface; /metrics has the fleet's figure.
    let (code, page) = scrape::get(&bed.node, &format!("http://{API}/"));
    assert_eq!(code, 200);
    assert!(page.contains(NODE) && page.contains("<svg"));
    let (_, metrics) = scrape::get(&bed.node, &format!("http://{API}/metrics"));
    assert!(
        metrics.contains(&format!(
            "headroom_fleet_linklocal_pps_peak_last_hour{{cluster=\"default\",node=\"{NODE}\",interface=\"eni0\",eni=\"\"}} {peak}"
        )),
        "{metrics}"
    );
    if headroom_testbed::require("collector /metrics promtool", &[Need::Tool("promtool")]) {
        scrape::promtool_check(&metrics);
    }
}

/// Outage length in this test: 20 s (the queue holds 15 minutes of windows; the sender
/// retries every ≤ 5 s, so a longer outage only means more windows to replay).
const OUTAGE: Duration = Duration::from_secs(20);

#[test]
fn a_burst_measured_while_the_collector_is_down_arrives_after() {
    headroom_testbed::require_or_return!(
        "a_burst_measured_while_the_collector_is_down_arrives_after",
        &needs()
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let collector = start_collector(&bed);
    // Resolver checks every 5 s become dns.resolve spans, which must survive the outage too.
    let checks = format!(
        "resolver_check_names = [\"svc1.{}\"]\nresolver_check_interval = \"5s\"\n",
        bed::ZONE
    );
    let agent = start_agent(&bed, "1s", "grpc", &checks);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet_windows(&bed).is_empty() {
        assert!(Instant::now() < deadline, "no window before the outage");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = agent.reports().len();
    let down = Instant::now();
    let out = collector.stop().unwrap();
    assert!(out.status.success(), "collector exit {:?}", out.status);
    let sent =
        bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 700, 3, None).unwrap()).unwrap();
    assert!(sent.sent >= 1890, "dnsperf sent {}", sent.sent);
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    let during: Vec<_> = agent.reports()[before..].to_vec();
    assert!(
        during.len() >= 15,
        "{} windows during the outage",
        during.len()
    );
    let _collector = start_collector(&bed);
    let report = busiest(&during);
    let start = report["window"]["start"].as_str().unwrap().to_string();
    let peak = eni0(&report)["peak_pps"].as_u64().unwrap();
    assert!(
        (630..=770).contains(&peak),
        "agent peak {peak} vs 700/s sent"
    );
    let w = wait_window(&bed, &start, Duration::from_secs(30));
    let fleet_peak = w["peak_pps"].as_u64().unwrap();
    eprintln!(
        "after a {:?} outage: window {start} agent peak {peak}/s, collector {fleet_peak}/s",
        down.elapsed()
    );
    assert!(
        peak.abs_diff(fleet_peak) <= 1,
        "agent {peak} vs collector {w}"
    );
    // Nothing lost: every window cut during the outage reached the new collector.
    std::thread::sleep(Duration::from_secs(2));
    let have: Vec<_> = fleet_windows(&bed)
        .iter()
        .map(|w| w["start"].clone())
        .collect();
    let lost: Vec<_> = during
        .iter()
        .map(|r| r["window"]["start"].clone())
        .filter(|s| !have.contains(s))
        .collect();
    assert!(lost.is_empty(), "windows lost: {lost:?}");
    // So did the spans of the resolver checks made during the outage.
    let checks_during: usize = during
        .iter()
        .map(|r| r["resolver_checks"].as_array().map_or(0, |c| c.len()))
        .sum();
    assert!(
        checks_during >= 3,
        "{checks_during} checks during the outage"
    );
    let (_, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    let spans = common::node(&fleet, NODE).unwrap()["spans_received"]
        .as_u64()
        .unwrap();
    assert!(
        spans as usize >= checks_during,
        "{spans} spans received, {checks_during} checks made during the outage"
    );
    let (_, m) = scrape::get(&bed.node, "http://127.0.0.1:19465/metrics");
    assert!(m.contains("headroom_otlp_windows_dropped_total 0"), "{m}");
    let failures = m
        .lines()
        .find(|l| l.starts_with("headroom_otlp_send_failures_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failures > 0, "the outage was seen: {m}");
}
