//! `headroom-bench-collector [--agents 5000] [--interval 10] [--seconds 60] [--threads 16]
//! [--listeners 5] [--probes 4] [--scrape-every 15] [--sample-every 10] [--csv FILE]
//! [--page-check PREFIX] [--memory-limit SIZE]`:
//! starts `headroom-collector` on 127.0.0.1 (rules on, no Kubernetes, no auth) and simulates
//! that many agents ([`fleet_sim`]: the agent's own OTLP encoding of calm figures with a few
//! hot spots), each POSTing one report window per interval over OTLP/HTTP protobuf with
//! keep-alive connections. Meanwhile a Prometheus-like scraper GETs `/metrics` every
//! `--scrape-every` s (its time, size and the collector's evaluation gauges), and every
//! `--sample-every` s the collector's CPU (utime + stime from /proc/PID/stat) and RSS go to
//! the CSV (`benches/plot-collector.gp` draws it). At the end: one `/metrics` and one
//! `/api/v1/fleet?history=false` timed, the findings held (`/api/v1/findings`, by rule and
//! state, against what the simulation plants), the ingest latency percentiles, and a check
//! that every simulated node is in the fleet. `--page-check PREFIX`: then the status page
//! in headless Chromium (e2e/tests/page_in_browser.py: weight, load and render time,
//! screenshots PREFIX-1280.png and PREFIX-390.png). Traffic goes to 127.0.0.1 only, bounded by `--seconds`.

#[allow(dead_code)] // rss_kib is the other benches'.
mod common;
mod fleet_sim;

use common::{flag, status_kib, text_flag};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A numeric flag's value; a bad one ends the bench with exit 64 and one line.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Sends one request on a keep-alive connection; returns the status.
fn post(conn: &mut BufReader<TcpStream>, host: &str, body: &[u8]) -> std::io::Result<u16> {
    let head = format!(
        "POST /v1/metrics HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    conn.get_mut().write_all(&req)?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut buf = vec![0; len];
    conn.read_exact(&mut buf)?;
    Ok(status)
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// `GET path` on a new connection: the body and how long the whole exchange took.
fn get(addr: &str, path: &str) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    (resp[at..].to_vec(), t.elapsed())
}

/// A gauge's value in a Prometheus text exposition (the first sample of the family).
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One scrape: when (s into the run), how long (ms), bytes, the evaluation gauges (ms).
struct Scrape {
    at: f64,
    ms: f64,
    bytes: usize,
    eval_ms: f64,
    eval_max_ms: f64,
    /// The latest evaluation's thread CPU (ms): beside `eval_ms` it tells work from waiting.
    eval_cpu_ms: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents = flag(&args, "--agents", 5000) as usize;
    let interval = Duration::from_secs(flag(&args, "--interval", 10));
    let seconds = flag(&args, "--seconds", 60);
    let threads = flag(&args, "--threads", 16) as usize;
    let listeners = flag(&args, "--listeners", 5) as usize;
    let probes = flag(&args, "--probes", 4) as usize;
    // Prometheus scraping /metrics meanwhile; 0 = no scrapes.
    let scrape_every = flag(&args, "--scrape-every", 15);
    let sample_every = flag(&args, "--sample-every", 10).max(1);
    let csv = text_flag(&args, "--csv").unwrap_or_else(|| format!("collector-{agents}.csv"));
    let collector = std::env::current_exe()
        .unwrap()
        .with_file_name("headroom-collector");
    if !collector.is_file() {
        eprintln!(
            "no {}: build the collector first (cargo build --release -p headroom-collector)",
            collector.display()
        );
        std::process::exit(64);
    }
    let (g, h, a) = (free_port(), free_port(), free_port());
    let http = format!("127.0.0.1:{h}");
    let api = format!("127.0.0.1:{a}");
    // The rules run (every 10 s, the default); no Kubernetes, so HPAOverScaling is off.
    // Removed with the directory when the bench ends.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    // The collector sheds requests past 90 % of `memory_limit` (default 768MiB): a fleet
    // larger than the default is sized for gives it the deployment's limit.
    let mut settings = "kube = false\n".to_string();
    if let Some(limit) = text_flag(&args, "--memory-limit") {
        settings.push_str(&format!("memory_limit = \"{limit}\"\n"));
    }
    std::fs::write(&config, settings).unwrap();
    let mut child = Command::new(&collector)
        .args(["--config", config.to_str().unwrap(), "--auth", "none"])
        .args(["--otlp-grpc-listen", &format!("127.0.0.1:{g}")])
        .args(["--otlp-http-listen", &http, "--http-listen", &api])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&http).is_err() || TcpStream::connect(&api).is_err() {
        assert!(Instant::now() < deadline, "collector never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let bench_start_ns = now_ns();
    let sample = fleet_sim::body(0, 0, now_ns(), bench_start_ns, listeners, probes);
    println!(
        "{agents} agents ({listeners} listeners, {probes} probes each), one {} B request each per {interval:?}, {seconds} s, {threads} sender threads; /metrics every {scrape_every} s; samples every {sample_every} s to {csv}",
        sample.len()
    );
    let cpu0 = proc_cpu_seconds(pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let http = http.clone();
            std::thread::spawn(move || {
                let mine: Vec<usize> = (t..agents).step_by(threads).collect();
                let connect = || {
                    let s = TcpStream::connect(&http).unwrap();
                    s.set_nodelay(true).unwrap();
                    BufReader::new(s)
                };
                let mut conn = connect();
                let mut lat = Vec::new();
                let mut errors = std::collections::BTreeMap::<String, u64>::new();
                let mut round = 0u32;
                'outer: loop {
                    for &i in &mine {
                        let due =
                            start + interval * round + interval.mul_f64(i as f64 / agents as f64);
                        if due >= end {
                            break 'outer;
                        }
                        if let Some(d) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                        // Every round is a new window (a new end time), as from a real agent.
                        let b = fleet_sim::body(
                            i,
                            round as u64,
                            now_ns(),
                            bench_start_ns,
                            listeners,
                            probes,
                        );
                        let t0 = Instant::now();
                        match post(&mut conn, &http, &b) {
                            Ok(200) => lat.push(t0.elapsed()),
                            Ok(code) => *errors.entry(format!("HTTP {code}")).or_default() += 1,
                            Err(e) => {
                                *errors.entry(format!("{:?}", e.kind())).or_default() += 1;
                                conn = connect();
                            }
                        }
                    }
                    round += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    let scraper = (scrape_every > 0).then(|| {
        let api = api.clone();
        std::thread::spawn(move || {
            let mut took = Vec::new();
            let mut next = start + Duration::from_secs(scrape_every);
            while next < end {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let (body, t) = get(&api, "/metrics");
                let text = String::from_utf8_lossy(&body);
                took.push(Scrape {
                    at: start.elapsed().as_secs_f64(),
                    ms: t.as_secs_f64() * 1000.0,
                    bytes: body.len(),
                    eval_ms: gauge(&text, "headroom_collector_evaluation_seconds")
                        .unwrap_or(f64::NAN)
                        * 1000.0,
                    eval_max_ms: gauge(&text, "headroom_collector_evaluation_seconds_max")
                        .unwrap_or(f64::NAN)
                        * 1000.0,
                    eval_cpu_ms: gauge(&text, "headroom_collector_evaluation_cpu_seconds")
                        .unwrap_or(f64::NAN)
                        * 1000.0,
                });
                next += Duration::from_secs(scrape_every);
            }
            took
        })
    });
    let sampler = {
        let csv = csv.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(&csv).unwrap();
            writeln!(out, "seconds,cpu_seconds,cpu_percent,rss_mib").unwrap();
            let (mut last_t, mut last_cpu) = (0.0, proc_cpu_seconds(pid));
            let mut next = start + Duration::from_secs(sample_every);
            while next <= end {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let t = start.elapsed().as_secs_f64();
                let cpu = proc_cpu_seconds(pid);
                let rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
                writeln!(
                    out,
                    "{t:.1},{:.2},{:.1},{rss:.1}",
                    cpu - cpu0,
                    (cpu - last_cpu) / (t - last_t) * 100.0
                )
                .unwrap();
                (last_t, last_cpu) = (t, cpu);
                next += Duration::from_secs(sample_every);
            }
        })
    };
    let mut lat = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        for (k, n) in e {
            *kinds.entry(k).or_default() += n;
        }
    }
    let errors: u64 = kinds.values().sum();
    if errors > 0 {
        // Told apart: a refusal (429 shedding, 413) is the collector's choice, an I/O error
        // (a connection reset or closed) is not.
        let each: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("errors: {}", each.join(", "));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = proc_cpu_seconds(pid) - cpu0;
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    sampler.join().unwrap();
    let scrapes = scraper.map(|s| s.join().unwrap()).unwrap_or_default();
    if !scrapes.is_empty() {
        let ms: Vec<f64> = scrapes.iter().map(|s| s.ms).collect();
        let max_eval = scrapes.iter().map(|s| s.eval_max_ms).fold(0.0, f64::max);
        let evals: Vec<f64> = scrapes.iter().map(|s| s.eval_ms).collect();
        println!(
            "{} scrapes of /metrics, every {scrape_every} s: {:.0}–{:.0} ms (median {:.0}), {}–{} KiB; evaluation (latest at each scrape) {:.0}–{:.0} ms, slowest since start {max_eval:.0} ms",
            scrapes.len(),
            ms.iter().copied().fold(f64::INFINITY, f64::min),
            ms.iter().copied().fold(0.0, f64::max),
            median(&ms),
            scrapes.iter().map(|s| s.bytes).min().unwrap_or(0) / 1024,
            scrapes.iter().map(|s| s.bytes).max().unwrap_or(0) / 1024,
            evals.iter().copied().fold(f64::INFINITY, f64::min),
            evals.iter().copied().fold(0.0, f64::max),
        );
        let mut by_time: Vec<&Scrape> = scrapes.iter().collect();
        by_time.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let slow: Vec<String> = by_time
            .iter()
            .take(3)
            .map(|s| format!("{:.0} ms at {:.0} s", s.ms, s.at))
            .collect();
        println!("slowest scrapes: {}", slow.join(", "));
        let cpus: Vec<f64> = scrapes.iter().map(|s| s.eval_cpu_ms).collect();
        let slowest = scrapes
            .iter()
            .max_by(|a, b| a.eval_ms.total_cmp(&b.eval_ms))
            .unwrap();
        println!(
            "evaluation CPU (its thread, latest at each scrape) {:.0}–{:.0} ms (median {:.0}); the slowest seen, {:.0} ms, used {:.0} ms of CPU",
            cpus.iter().copied().fold(f64::INFINITY, f64::min),
            cpus.iter().copied().fold(0.0, f64::max),
            median(&cpus),
            slowest.eval_ms,
            slowest.eval_cpu_ms,
        );
        let last = scrapes.last().unwrap();
        println!(
            "last scrape at {:.0} s: {:.0} ms, {} KiB",
            last.at,
            last.ms,
            last.bytes / 1024
        );
    }
    // The fleet knows every node; how long the read side takes at this size.
    let (metrics, metrics_took) = get(&api, "/metrics");
    let (resp, fleet_took) = get(&api, "/api/v1/fleet?history=false");
    let fleet: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
    let workloads: usize = fleet["clusters"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["workloads"].as_array().map_or(0, |w| w.len()))
                .sum()
        })
        .unwrap_or(0);
    println!(
        "GET /metrics: {:.0} ms, {} KiB; GET /api/v1/fleet?history=false: {:.0} ms, {} KiB (first page); {workloads} workloads",
        metrics_took.as_secs_f64() * 1000.0,
        metrics.len() / 1024,
        fleet_took.as_secs_f64() * 1000.0,
        resp.len() / 1024
    );
    if let Some(dir) = text_flag(&args, "--page-check") {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../e2e/tests/page_in_browser.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(format!("http://{api}/"))
            .arg(&dir)
            .output();
        match out {
            Ok(o) => println!(
                "status page in Chromium: {}{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("status page in Chromium: python3 not run: {e}"),
        }
    }
    let (findings, _) = get(&api, "/api/v1/findings");
    let findings: serde_json::Value = serde_json::from_slice(&findings).unwrap_or_default();
    let mut held: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in findings["findings"].as_array().into_iter().flatten() {
        let key = (
            f["rule"].as_str().unwrap_or("?").to_string(),
            f["state"].as_str().unwrap_or("?").to_string(),
        );
        *held.entry(key).or_default() += 1;
    }
    println!(
        "findings held: {} ({}); planted: {}",
        held.values().sum::<usize>(),
        held.iter()
            .map(|((r, s), n)| format!("{r} {s} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        fleet_sim::expected(agents, probes)
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "| agents | run | requests | errors | req/s | collector CPU (% of one core) | RSS end / peak MiB | ingest p50 / p99 / max ms | fleet nodes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {agents} | {seconds} s | {} | {errors} | {:.0} | {:.1} % | {:.0} / {:.0} | {:.2} / {:.2} / {:.2} | {} |",
        lat.len(),
        lat.len() as f64 / wall,
        cpu / wall * 100.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        pct(0.5),
        pct(0.99),
        lat.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
        fleet["nodes"]
    );
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
