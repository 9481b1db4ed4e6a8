//! `run` and `watch` in the bed: /metrics carries the measured counts and passes
//! `promtool check metrics`; /healthz and /readyz answer; SIGTERM stops the daemon cleanly.

use crate::common::*;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::proc::Guard;
use headroom_testbed::scrape;
use headroom_testbed::Need;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn run_serves_metrics_that_promtool_accepts() {
    let mut needs = bed_needs();
    needs.extend([Need::Tool("promtool"), Need::Tool("curl")]);
    headroom_testbed::require_or_return!("run_serves_metrics_that_promtool_accepts", &needs);
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let mut cmd = bed.node.command(&AGENT);
    cmd.args(["run", "--interface", "eni0", "--report-interval", "1s"])
        .args(NO_IMDS)
        .args(["--metrics-listen", "127.0.0.1:19465"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let daemon = Guard::spawn("headroom-agent run", &mut cmd).unwrap();
    let ready = "http://127.0.0.1:19465/readyz";
    scrape::wait_ok(&bed.node, ready, "agent", Duration::from_secs(10));
    assert_eq!(
        scrape::get(&bed.node, "http://127.0.0.1:19465/healthz").0,
        200
    );
    let sent =
        bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 400, 3, None).unwrap()).unwrap();
    // Every packet reaches the counters at a report window's end (1 s): poll until the
    // counter stops short of dnsperf's count no longer, instead of sleeping for a guess; then
    // it must equal it exactly.
    let counter = r#"headroom_linklocal_packets_total{interface="eni0",eni="",service="dns"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = scrape::get(&bed.node, "http://127.0.0.1:19465/metrics");
        assert_eq!(code, 200);
        let counted = scrape::sample(&text, counter).unwrap_or(0.0) as u64;
        if counted >= sent.sent || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let counted =
        scrape::sample(&text, counter).unwrap_or_else(|| panic!("no packets counter in:\n{text}"));
    assert_eq!(counted as u64, sent.sent, "counter equals dnsperf's count");
    assert_eq!(
        scrape::sample(&text, r#"headroom_linklocal_pps_limit{interface="eni0""#),
        Some(1024.0)
    );
    assert_eq!(
        scrape::sample(&text, r#"headroom_capture_drops_total{interface="eni0"}"#),
        Some(0.0)
    );
    scrape::promtool_check(&text);
    // Graceful stop on SIGTERM: exit 0 within a few seconds.
    let t = Instant::now();
    let out = daemon.stop().unwrap();
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn watch_shows_the_live_rate() {
    headroom_testbed::require_or_return!("watch_shows_the_live_rate", &bed_needs());
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let mut cmd = bed.node.command(&AGENT);
    cmd.args(["watch", "--interface", "eni0", "--count", "7"])
        .args(NO_IMDS)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let dump = bed.tcpdump("eni0", "dst host 169.254.169.253").unwrap();
    let watch = Guard::spawn("headroom-agent watch", &mut cmd).unwrap();
    let sent =
        bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 600, 4, None).unwrap()).unwrap();
    // dnsperf paces 600/s for 4 s (-l 4); on a loaded machine its time limit ends it short
    // (seen: 2 399, 2 388). The pace the "now" check below relies on is held to the same -3 %;
    // the agent itself is held to exactly what tcpdump saw leave.
    assert!(
        (2328..=2400).contains(&sent.sent),
        "dnsperf sent {} of 2400",
        sent.sent
    );
    let out = watch.wait(Duration::from_secs(20)).unwrap();
    assert!(out.status.success());
    // Ground truth for the peak: the busiest second of tcpdump's own kernel timestamps. dnsperf
    // paces at 600/s but on a loaded machine catches up in bursts, so the rate alone is not it.
    let ts = dump.stop_and_timestamps().unwrap();
    assert_eq!(ts.len() as u64, sent.sent);
    let truth = headroom_testbed::pcap::busiest_second(&ts);
    let text = String::from_utf8_lossy(&out.stdout);
    // Rows: "eni0  NOW  PEAK  [bar]  UTIL% DROPS".
    let rows: Vec<(u64, u64)> = text
        .lines()
        .filter(|l| l.starts_with("eni0"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 7, "{text}");
    let best_now = rows.iter().map(|r| r.0).max().unwrap();
    let last_peak = rows.last().unwrap().1;
    eprintln!("watch: best now {best_now}, peak {last_peak}; tcpdump busiest second {truth}");
    // The agent's windows slide in 10 ms steps: never above the continuous busiest second, and
    // below it by at most one step's packets (6 at 600/s). "Now" is a whole second too.
    assert!(
        last_peak <= truth && last_peak + 7 >= truth,
        "peak {last_peak} vs busiest second {truth}\n{text}"
    );
    assert!(
        best_now <= truth && best_now >= 582,
        "now {best_now} vs busiest second {truth}, rate 600 (-3 %)\n{text}"
    );
}

/// A capture thread that stops reading (the `HEADROOM_TEST_STALL_CAPTURE_AFTER` hook: alive,
/// no reads, no heartbeat) fails /readyz within 2 report intervals, naming the interface,
/// where the daemon used to stay ready while nothing was counted; /healthz fails after 3.
#[test]
fn a_stuck_capture_thread_fails_readiness_within_two_intervals() {
    let mut needs = bed_needs();
    needs.push(Need::Tool("curl"));
    if !headroom_testbed::require(
        "a_stuck_capture_thread_fails_readiness_within_two_intervals",
        &needs,
    ) {
        return;
    }
    const STALL: Duration = Duration::from_secs(4);
    const INTERVAL: Duration = Duration::from_secs(1);
    let bed = Bed::new(1).unwrap();
    let mut cmd = bed.node.command(&AGENT);
    cmd.args(["run", "--interface", "eni0", "--report-interval", "1s"])
        .args(NO_IMDS)
        .args(["--metrics-listen", "127.0.0.1:19466"])
        .env("HEADROOM_TEST_STALL_CAPTURE_AFTER", "4s")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let _daemon = Guard::spawn("headroom-agent run", &mut cmd).unwrap();
    let url = "http://127.0.0.1:19466/readyz";
    let deadline = t0 + Duration::from_secs(10);
    while scrape::get(&bed.node, url).0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = Instant::now();
    let (failed, body) = loop {
        let (code, body) = scrape::get(&bed.node, url);
        if code != 200 {
            break (Instant::now(), body);
        }
        assert!(
            Instant::now() < ready + STALL + 5 * INTERVAL,
            "still ready {:?} after the capture thread stalled",
            Instant::now() - ready - STALL
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "ready {:?} after start, not ready {:?} after that: {body}",
        ready - t0,
        failed - ready
    );
    // The thread stalls STALL after it starts, between t0 and `ready`; its last heartbeat
    // came up to one 200 ms poll before that.
    assert!(
        failed + Duration::from_millis(250) >= t0 + STALL + INTERVAL,
        "failed before the stall"
    );
    assert!(
        failed <= ready + STALL + 2 * INTERVAL,
        "not ready only {:?} after the stall",
        failed - ready - STALL
    );
    assert!(body.contains("capture stuck on eni0"), "{body}");
    // Liveness later: still live when readiness fails, not live once silent 3 intervals.
    let health = "http://127.0.0.1:19466/healthz";
    assert_eq!(scrape::get(&bed.node, health).0, 200);
    let dead = loop {
        let (code, body) = scrape::get(&bed.node, health);
        if code != 200 {
            assert!(body.contains("capture stuck on eni0"), "{body}");
            break Instant::now();
        }
        assert!(
            Instant::now() < ready + STALL + 6 * INTERVAL,
            "still live {:?} after the stall",
            Instant::now() - ready - STALL
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("not live {:?} after not ready", dead - failed);
    assert!(dead + Duration::from_millis(250) >= t0 + STALL + 3 * INTERVAL);
    assert!(dead <= ready + STALL + 4 * INTERVAL);
}

/// The listener sampler and the OTLP exporter beat too (issue 17 point 5): an exporter that
/// fails to send (nothing listens on its endpoint) is alive and the daemon stays ready; once
/// both loops stop (the `HEADROOM_TEST_STALL_{LISTENERS,EXPORTER}_AFTER` hooks: no work, no
/// beats) /readyz fails within 2 report intervals naming both, and /healthz within 4.
#[test]
fn a_stuck_sampler_or_exporter_fails_readiness_and_a_failing_exporter_does_not() {
    let mut needs = bed_needs();
    needs.push(Need::Tool("curl"));
    headroom_testbed::require_or_return!(
        "a_stuck_sampler_or_exporter_fails_readiness_and_a_failing_exporter_does_not",
        &needs
    );
    const STALL: Duration = Duration::from_secs(6);
    const INTERVAL: Duration = Duration::from_secs(1);
    // Both loops beat at least every 0.5 s (the exporter's BEAT; samples every 200 ms).
    const BEAT: Duration = Duration::from_millis(500);
    // The loops' threads start (and their stall clocks with them) after the process, the
    // exporter's up to a second after the sampler's: slack for that on the upper bounds.
    const START: Duration = Duration::from_secs(2);
    let bed = Bed::new(1).unwrap();
    let mut cmd = bed.node.command(&AGENT);
    cmd.args(["run", "--interface", "eni0", "--report-interval", "1s"])
        .args(NO_IMDS)
        .args(["--metrics-listen", "127.0.0.1:19467"])
        .args(["--otlp-endpoint", "http://127.0.0.1:9"])
        .env("HEADROOM_TEST_STALL_LISTENERS_AFTER", "6s")
        .env("HEADROOM_TEST_STALL_EXPORTER_AFTER", "6s")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let _daemon = Guard::spawn("headroom-agent run", &mut cmd).unwrap();
    let base = "http://127.0.0.1:19467";
    let ready = format!("{base}/readyz");
    let health = format!("{base}/healthz");
    scrape::wait_ok(&bed.node, &ready, "agent", Duration::from_secs(5));
    // Until the stall: ready and live every time, while the exporter keeps failing.
    while Instant::now() < t0 + STALL - Duration::from_millis(300) {
        let (code, body) = scrape::get(&bed.node, &ready);
        assert_eq!(code, 200, "not ready before any loop stalled: {body}");
        assert_eq!(scrape::get(&bed.node, &health).0, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, text) = scrape::get(&bed.node, &format!("{base}/metrics"));
    let failures = scrape::sample(&text, "headroom_otlp_send_failures_total").unwrap_or(0.0);
    assert!(
        failures >= 2.0,
        "the exporter was not failing: {failures}\n{text}"
    );
    // Not ready once both have been silent for 2 intervals, naming both.
    let (failed, body) = loop {
        let (code, body) = scrape::get(&bed.node, &ready);
        if code != 200 && body.contains("exporter stuck") && body.contains("listeners stuck") {
            break (Instant::now(), body);
        }
        assert!(
            Instant::now() < t0 + STALL + 2 * INTERVAL + START,
            "still ready {:?} after the loops stalled: {code} {body}",
            Instant::now() - t0 - STALL
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "not ready {:?} after the stall: {body}",
        failed - t0 - STALL
    );
    assert!(
        failed >= t0 + STALL + 2 * INTERVAL - BEAT,
        "failed too early"
    );
    // Not live once silent for 4 intervals, naming both.
    let dead = loop {
        let (code, body) = scrape::get(&bed.node, &health);
        if code != 200 && body.contains("exporter stuck") && body.contains("listeners stuck") {
            break Instant::now();
        }
        assert!(
            Instant::now() < t0 + STALL + 4 * INTERVAL + START,
            "still live {:?} after the loops stalled",
            Instant::now() - t0 - STALL
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("not live {:?} after the stall", dead - t0 - STALL);
    assert!(
        dead >= t0 + STALL + 4 * INTERVAL - BEAT,
        "not live too early"
    );
}

/// The gauge window start of each metrics request in `body` (every gauge point of a window
/// starts at the window's start).
fn window_start(body: &[u8]) -> Option<u64> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prost::Message;
    let req = ExportMetricsServiceRequest::decode(body).ok()?;
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find_map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.first().map(|p| p.start_time_unix_nano),
            _ => None,
        })
}

/// Issue 17 point 6: `kill -9` of the agent during a collector outage loses nothing. The first
/// run queues its windows (nothing listens on the endpoint) in `otlp_queue_dir` and is killed;
/// the files it left are the ground truth of what it measured. A second run starts with the
/// receiver still down, then the receiver comes up: it gets every window of the first run,
/// oldest first, and no window twice.
#[test]
fn kill_9_during_an_outage_loses_no_window() {
    use std::collections::BTreeMap;
    use std::io::{BufReader, Write};
    headroom_testbed::require_or_return!("kill_9_during_an_outage_loses_no_window", &[Need::Root]);
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("otlp_queue_dir = {:?}\n", queue.to_str().unwrap()),
    )
    .unwrap();
    let port = headroom_testbed::prefork::free_port();
    let start = |metrics: u16| {
        let mut cmd = std::process::Command::new(AGENT.as_str());
        cmd.args(["run", "--interface", "lo", "--report-interval", "1s"])
            .args(NO_IMDS)
            .arg("--config")
            .arg(&config)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Guard::spawn("headroom-agent run", &mut cmd).unwrap()
    };
    let queued = || -> BTreeMap<u64, String> {
        std::fs::read_dir(&queue)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".m"))
                    .filter_map(|e| {
                        let s = window_start(&std::fs::read(e.path()).ok()?)?;
                        Some((s, e.file_name().to_string_lossy().into_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = start(19468);
    let t = Instant::now();
    while queued().len() < 4 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the first run never queued 4 windows"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.signal(libc::SIGKILL);
    drop(first);
    let measured = queued();
    eprintln!("the killed run left {} windows on disk", measured.len());
    let second = start(19469);
    std::thread::sleep(Duration::from_secs(2));
    // The receiver comes back: every metrics request's window start, in arrival order.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                while let Some(req) = headroom_testbed::http::read_request(&mut r, 16 << 20) {
                    if req.path == "/v1/metrics" {
                        if let Some(s) = window_start(&req.body) {
                            g.lock().unwrap().push(s);
                        }
                    }
                    let _ = w.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    let t = Instant::now();
    let last = *measured.keys().last().unwrap();
    loop {
        let g = got.lock().unwrap().clone();
        if measured.keys().all(|s| g.contains(s)) && g.iter().any(|&s| s > last) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "after 20 s the receiver had {g:?}, the killed run measured {:?}",
            measured.keys()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(second);
    let g = got.lock().unwrap().clone();
    eprintln!("received {} windows: {g:?}", g.len());
    let mut seen = std::collections::HashSet::new();
    assert!(
        g.iter().all(|s| seen.insert(*s)),
        "a window arrived twice: {g:?}"
    );
    let oldest: Vec<u64> = g.iter().copied().take(measured.len()).collect();
    assert_eq!(
        oldest,
        measured.keys().copied().collect::<Vec<_>>(),
        "the killed run's windows first, oldest first"
    );
}
