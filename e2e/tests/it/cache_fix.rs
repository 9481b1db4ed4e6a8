//! DNSThrottleRisk's fix quotes what the agent measured a node-local cache would save, not the
//! whole peak: the real agent measures dnsperf at 900 queries/s against unbound, half of them
//! one name with TTL 60 (all but the first a cache hit) and half names never asked twice; the
//! collector's finding carries the agent's figure for that window (cacheable share ≈ 0.5, the
//! busiest second's savings, the peak left) in its evidence and fix text.

use crate::collector_from_agent::{fleet_windows, NODE};
use crate::procs::{self, Agent, API, OTLP_HTTP};
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::scrape;
use serde_json::Value;
use std::time::{Duration, Instant};

fn findings(bed: &Bed) -> Vec<Value> {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/findings"));
    if code != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body).unwrap()["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn throttle_fix_quotes_the_measured_cache_savings() {
    headroom_testbed::require_or_return!(
        "throttle_fix_quotes_the_measured_cache_savings",
        &headroom_testbed::root_and(&["ip", "unbound", "dnsperf", "dig", "curl"])
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound_with(
        "  local-zone: \"cache.test.\" static\n  \
         local-data: \"hot.cache.test. 60 IN A 10.3.0.9\"\n  \
         local-zone: \"distinct.test.\" redirect\n  \
         local-data: \"distinct.test. 60 IN A 10.4.0.1\"\n",
    )
    .unwrap();
    let cfg = bed.path("collector.toml");
    std::fs::write(
        &cfg,
        "kube = false\n[rules]\nevaluation_interval = \"200ms\"\ndns_for = \"0s\"\nstartup_grace = \"0s\"\n",
    )
    .unwrap();
    let _collector = procs::start_collector(&bed, &["--config".as_ref(), cfg.as_os_str()], &[]);
    let agent = Agent::exporting(&bed, NODE, "2s", &format!("http://{OTLP_HTTP}"), &[], &[]);
    std::thread::sleep(Duration::from_secs(3));
    // Hot name and distinct names in turn: 12 000 lines, more than 10 s at 900/s send.
    let file = bed.path("half.txt");
    let lines: String = (0..6000)
        .map(|i| format!("hot.cache.test A\nd{i}.distinct.test A\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let mut perf = bed.node.command("dnsperf");
    perf.args(["-s", bed::LINKLOCAL_RESOLVER, "-Q", "900", "-l", "10"])
        .args(["-q", "500", "-t", "2", "-c", "1", "-T", "1", "-d"])
        .arg(&file);
    let load = std::thread::spawn(move || bed::run_dnsperf(&mut perf).unwrap());
    // Every DNSThrottleRisk finding seen while the load runs (one per window).
    let mut seen: Vec<Value> = Vec::new();
    let started = Instant::now();
    while !load.is_finished() || started.elapsed() < Duration::from_secs(11) {
        for f in findings(&bed) {
            if f["rule"] == "DNSThrottleRisk"
                && !seen
                    .iter()
                    .any(|s| s["evidence"]["window_end"] == f["evidence"]["window_end"])
            {
                seen.push(f);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = load.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // The window with the highest DNS peak (a whole window of load).
    let f = seen
        .iter()
        .max_by_key(|f| f["evidence"]["dns_peak_pps"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no DNSThrottleRisk while dnsperf sent {sent:?}"));
    eprintln!("dnsperf {sent:?}; finding {f}");
    let e = &f["evidence"];
    let s = &e["savings_pps"];
    let peak = e["dns_peak_pps"].as_u64().unwrap();
    let cache = s["nodelocal_dnscache"].as_u64().unwrap();
    assert_eq!(s["nodelocal_dnscache_measured"], true, "{s}");
    let share = s["cacheable_share"].as_f64().unwrap();
    assert!((share - 0.5).abs() <= 0.03, "cacheable share {share}");
    // The figure is the agent's own for that window: its busiest second's cacheable queries.
    let start = fleet_windows(&bed)
        .into_iter()
        .find(|w| w["end"] == e["window_end"])
        .map(|w| w["start"].clone())
        .expect("the finding's window is in the fleet");
    let report = agent
        .reports()
        .into_iter()
        .find(|r| r["window"]["start"] == start)
        .expect("the agent reported that window");
    let d = &report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eni0")
        .unwrap()["dns"];
    let measured = d["cache_savings_peak_pps"].as_f64().unwrap().round() as u64;
    assert_eq!(cache, measured.min(peak), "agent {d}");
    assert!(
        cache as f64 >= 0.4 * peak as f64 && cache as f64 <= 0.6 * peak as f64,
        "about half of the {peak}/s peak is cacheable: {cache}"
    );
    assert_eq!(e["peak_after_pps"]["nodelocal_dnscache"], peak - cache);
    let fix = f["fix"].as_str().unwrap();
    for part in [
        format!(
            "{:.0}% of queries would have been cache hits",
            share * 100.0
        ),
        format!("saves ≈ {cache}/s in the busiest second"),
        format!("the DNS peak would become ≈ {}/s of {peak}/s", peak - cache),
    ] {
        assert!(fix.contains(&part), "{part} not in: {fix}");
    }
    assert!(!fix.contains("at most"), "{fix}");
    // The page lists the measured savings too.
    let (code, page) = scrape::get(&bed.node, &format!("http://{API}/"));
    assert_eq!(code, 200);
    assert!(page.contains("DNS fix savings (measured)"), "{page}");
}
