//! Agent → collector in the netns bed: `headroom-agent run --otlp-endpoint` exports every
//! report window; the collector's fleet shows the same peak as the agent's report for the same
//! window, and a burst measured while the collector was down arrives after it comes back.
//!
//! Both run in the bed's node namespace; the agent exports to the collector on 127.0.0.1, over
//! OTLP/HTTP in the first test and over gRPC in the outage test.

use crate::agent_to_collector::{rfc3339_ns, start_receiver, str_attr};
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

/// tcpdump on eni0 for every packet that counts toward the link-local allowance here: ground
/// truth for the agent's peak.
fn linklocal_dump(bed: &mut Bed) -> bed::Tcpdump {
    bed.tcpdump(
        "eni0",
        "dst host 169.254.169.253 or dst host 169.254.169.254 or dst host 169.254.169.123 or dst host 10.0.0.2",
    )
    .unwrap()
}

/// The agent's busiest peak against tcpdump's busiest second: the peak slides in 10 ms steps
/// across window ends, so it is never above the truth and below it by at most one step.
fn assert_peak_is_the_busiest_second(peak: u64, dump: bed::Tcpdump, qps: u64) {
    let truth = headroom_testbed::pcap::busiest_second(&dump.stop_and_timestamps().unwrap());
    let step = qps.div_ceil(100) + 1;
    eprintln!("agent peak {peak}/s; tcpdump's busiest second {truth}");
    assert!(
        peak <= truth && truth <= peak + step,
        "agent peak {peak} vs tcpdump's busiest second {truth} (one 10 ms step: {step})"
    );
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
    let dump = linklocal_dump(&mut bed);
    let agent = start_agent(&bed, "2s", "http/protobuf", "");
    std::thread::sleep(Duration::from_secs(3));
    let sent =
        bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 500, 4, None).unwrap()).unwrap();
    // dnsperf may fall a little behind on a loaded machine; the peak is judged against
    // tcpdump, not the nominal rate.
    assert!(sent.sent >= 1800, "dnsperf sent {}", sent.sent);
    std::thread::sleep(Duration::from_secs(3));
    let report = busiest(&agent.reports());
    let start = report["window"]["start"].as_str().unwrap().to_string();
    let peak = eni0(&report)["peak_pps"].as_u64().unwrap();
    assert_peak_is_the_busiest_second(peak, dump, 500);
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
    let dump = linklocal_dump(&mut bed);
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
    // The new collector forwards the spans it gets to a receiver here, so each can be read.
    let (traces, spans) = start_receiver(&bed.node);
    let traces = format!("http://{traces}");
    let _collector =
        procs::start_collector(&bed, &["--traces-endpoint".as_ref(), traces.as_ref()], &[]);
    let report = busiest(&during);
    let start = report["window"]["start"].as_str().unwrap().to_string();
    let peak = eni0(&report)["peak_pps"].as_u64().unwrap();
    assert_peak_is_the_busiest_second(peak, dump, 700);
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
    // So did the spans of the resolver checks made during the outage: each check (by its
    // start, name and resolver) is exactly one `dns.resolve` span behind the collector.
    let checks: Vec<serde_json::Value> = during
        .iter()
        .flat_map(|r| r["resolver_checks"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        checks.len() >= 3,
        "{} checks during the outage",
        checks.len()
    );
    let matching = |c: &serde_json::Value| {
        let at = rfc3339_ns(c["at"].as_str().unwrap());
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| {
                s.name == "dns.resolve"
                    && s.start_time_unix_nano == at
                    && str_attr(&s.attributes, "dns.question.name") == c["qname"].as_str()
                    && str_attr(&s.attributes, "dns.resolver") == c["resolver"].as_str()
            })
            .count()
    };
    headroom_testbed::wait_for(
        "a span for every check made during the outage",
        Duration::from_secs(20),
        || checks.iter().all(|c| matching(c) >= 1).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    for c in &checks {
        assert_eq!(matching(c), 1, "spans for the check {c}");
    }
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
