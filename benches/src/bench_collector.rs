//! `headroom-bench-collector [--agents 5000] [--interval 10] [--seconds 60] [--threads 16]
//! [--listeners 5] [--probes 4]`: starts `headroom-collector` on 127.0.0.1 and simulates that
//! many agents, each POSTing one report window (the agent's own OTLP encoding, two interfaces,
//! plus listeners and probes with the contract's names and attributes) per interval over
//! OTLP/HTTP protobuf with keep-alive connections. Listeners: one of a DaemonSet on every node
//! (a workload with as many pods as agents) and the rest pods of 50 Deployments; probes:
//! readiness probes with cumulative attempts by result, removals, timeout, p99 and max. At the
//! end it times `GET /metrics` and `GET /api/v1/fleet?history=false` (every workload computed). Prints the collector's CPU (user + sys from
//! /proc/PID/stat over the run), peak and final RSS, the ingest latency percentiles, and a
//! check that every simulated node is in the fleet. Traffic goes to 127.0.0.1 only, bounded
//! by --seconds.

use headroom_agent::export::otlp::encode;
use headroom_agent::report::{Node, Report};
use headroom_agent::sources::linklocal::meter::InterfaceWindow;
use headroom_agent::sources::linklocal::series::Figures;
use headroom_signals::{attr, metric as desc};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
};
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("invalid {name} '{v}'")))
        .unwrap_or(default)
}

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

/// Listener and probe metrics of one agent's window, named and shaped as the contract in
/// headroom-signals says (gauges from the window's start, counters from the agent's start).
/// The agent's encoder in this tree does not encode listeners and probes yet; this adds them
/// the same way.
fn workload_metrics(
    agent: usize,
    window: u64,
    start: u64,
    end: u64,
    listeners: usize,
    probes: usize,
) -> Vec<Metric> {
    let kv = encode::kv;
    let mut metrics: Vec<Metric> = Vec::new();
    let mut add = |name: &str, sum: bool, a: &[KeyValue], from: u64, v: f64| {
        let p = NumberDataPoint {
            attributes: a.to_vec(),
            start_time_unix_nano: from,
            time_unix_nano: end,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        if let Some(m) = metrics.iter_mut().find(|m| m.name == name) {
            match &mut m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.push(p),
                Some(metric::Data::Sum(s)) => s.data_points.push(p),
                _ => {}
            }
            return;
        }
        let data = if sum {
            metric::Data::Sum(Sum {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })
        } else {
            metric::Data::Gauge(Gauge {
                data_points: vec![p],
            })
        };
        metrics.push(Metric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        });
    };
    let w = window as f64;
    for k in 0..listeners {
        let (kind, workload, pod) = if k == 0 {
            (
                "DaemonSet",
                "edge-proxy".to_string(),
                format!("edge-proxy-{agent:05}"),
            )
        } else {
            let d = (agent * listeners + k) % 50;
            (
                "Deployment",
                format!("svc-{d:02}"),
                format!("svc-{d:02}-{agent:05}-{k}"),
            )
        };
        let a = [
            kv(attr::NAMESPACE, "bench"),
            kv(attr::POD, &pod),
            kv(attr::CONTAINER, "app"),
            kv(attr::PORT, "8000"),
            kv(attr::PROCESS, "gunicorn"),
            kv(attr::WORKLOAD_KIND, kind),
            kv(attr::WORKLOAD, &workload),
        ];
        let busy = ((agent + k + window as usize) % 9) as f64 / 2.0;
        add(desc::WORKERS.otlp, false, &a, start, 4.0);
        add(desc::WORKERS_BUSY.otlp, false, &a, start, busy);
        add(
            desc::WORKERS_BUSY_MAX.otlp,
            false,
            &a,
            start,
            busy.ceil().min(4.0),
        );
        add(
            desc::ACCEPT_QUEUE_DEPTH_MAX.otlp,
            false,
            &a,
            start,
            (busy >= 4.0) as u8 as f64,
        );
        add(desc::ACCEPT_QUEUE_BACKLOG.otlp, false, &a, start, 128.0);
        add(desc::WORKERS_SATURATED_SECONDS.otlp, true, &a, 1, w * 0.1);
    }
    for k in 0..probes {
        let a = [
            kv(attr::NAMESPACE, "bench"),
            kv(attr::POD, &format!("svc-{agent:05}-{k}")),
            kv(attr::CONTAINER, "app"),
            kv(attr::PROBE, "readiness"),
            kv(attr::TARGET, "http://10.0.0.1:8000/healthz"),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, &format!("svc-{:02}", (agent + k) % 50)),
        ];
        for (result, n) in [
            ("ok", w * 10.0),
            ("slow", w),
            ("timeout", (w / 5.0).floor()),
            ("error", 0.0),
        ] {
            let mut ra = a.to_vec();
            ra.push(kv(attr::RESULT, result));
            add(desc::PROBE_ATTEMPTS.otlp, true, &ra, 1, n);
        }
        add(
            desc::PROBE_PREDICTED_REMOVALS.otlp,
            true,
            &a,
            1,
            (w / 30.0).floor(),
        );
        add(desc::PROBE_TIMEOUT.otlp, false, &a, start, 1.0);
        add(
            desc::PROBE_LATENCY_P99.otlp,
            false,
            &a,
            start,
            0.05 + (agent % 20) as f64 * 0.04,
        );
        add(desc::PROBE_LATENCY_MAX.otlp, false, &a, start, 0.9);
    }
    metrics
}

/// One agent's report window ending at `now` (ns) as the agent encodes it, with `listeners`
/// listeners and `probes` probes.
fn body(agent: usize, window: u64, now: u64, listeners: usize, probes: usize) -> Vec<u8> {
    let windows: Vec<InterfaceWindow> = ["eth0", "eth1"]
        .iter()
        .enumerate()
        .map(|(k, name)| InterfaceWindow {
            name: name.to_string(),
            mac: None,
            figures: Figures {
                packets: [1000 + agent as u64, 10, 5],
                peak: ((agent * 7 + k * 13 + window as usize * 3) % 1100) as u64,
                peak_by_service: [100, 2, 1],
            },
            kernel_drops: 0,
            packets_total: [window * 1000, window * 10, window * 5],
            drops_total: 0,
            capturing: true,
            dns: None,
            dns_totals: Default::default(),
        })
        .collect();
    let node = Node {
        name: format!("node-{agent:05}"),
        instance_id: Some(format!("i-{agent:017x}")),
        instance_type: Some("m6i.large".into()),
        availability_zone: Some("eu-west-1a".into()),
    };
    let start = now - 10_000_000_000;
    let r = Report::new(node, start, now, &windows);
    let mut req = encode::request(&r, encode::resource(&r, &[]), 1);
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .extend(workload_metrics(
            agent, window, start, now, listeners, probes,
        ));
    req.encode_to_vec()
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

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents = flag(&args, "--agents", 5000) as usize;
    let interval = Duration::from_secs(flag(&args, "--interval", 10));
    let seconds = flag(&args, "--seconds", 60);
    let threads = flag(&args, "--threads", 16) as usize;
    let listeners = flag(&args, "--listeners", 5) as usize;
    let probes = flag(&args, "--probes", 4) as usize;
    // Prometheus scraping /metrics meanwhile (each scrape builds a snapshot under the fleet's
    // lock, so ingest latency includes it); 0 = no scrapes.
    let scrape_every = flag(&args, "--scrape-every", 15);
    let collector = std::env::current_exe()
        .unwrap()
        .with_file_name("headroom-collector");
    assert!(
        collector.is_file(),
        "build the collector first: cargo build --release -p headroom-collector"
    );
    let (g, h, a) = (free_port(), free_port(), free_port());
    let http = format!("127.0.0.1:{h}");
    let api = format!("127.0.0.1:{a}");
    let mut child = Command::new(&collector)
        .args(["--otlp-grpc-listen", &format!("127.0.0.1:{g}")])
        .args(["--otlp-http-listen", &http, "--http-listen", &api])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < deadline, "collector never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sample = body(0, 0, now_ns(), listeners, probes);
    println!(
        "{agents} agents ({listeners} listeners, {probes} probes each), one {} B request each per {interval:?}, {seconds} s, {threads} sender threads",
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
                let mut errors = 0u64;
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
                        let b = body(i, round as u64, now_ns(), listeners, probes);
                        let t0 = Instant::now();
                        match post(&mut conn, &http, &b) {
                            Ok(200) => lat.push(t0.elapsed()),
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
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
                let t = Instant::now();
                let mut s = TcpStream::connect(&api).unwrap();
                write!(
                    s,
                    "GET /metrics HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n"
                )
                .unwrap();
                let mut resp = Vec::new();
                s.read_to_end(&mut resp).unwrap();
                took.push(t.elapsed().as_secs_f64() * 1000.0);
                next += Duration::from_secs(scrape_every);
            }
            took
        })
    });
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    if let Some(s) = scraper {
        let took = s.join().unwrap();
        println!(
            "{} scrapes of /metrics during the run, every {scrape_every} s: {:?} ms",
            took.len(),
            took.iter().map(|t| t.round() as u64).collect::<Vec<_>>()
        );
    }
    let cpu = proc_cpu_seconds(pid) - cpu0;
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    // The fleet knows every node; how long the read side takes at this size.
    let get = |path: &str| {
        let t = Instant::now();
        let mut s = TcpStream::connect(&api).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        (resp[at..].to_vec(), t.elapsed())
    };
    let (metrics, metrics_took) = get("/metrics");
    let (resp, fleet_took) = get("/api/v1/fleet?history=false");
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
        "GET /metrics: {:.0} ms, {} KiB; GET /api/v1/fleet?history=false: {:.0} ms, {} KiB; {workloads} workloads",
        metrics_took.as_secs_f64() * 1000.0,
        metrics.len() / 1024,
        fleet_took.as_secs_f64() * 1000.0,
        resp.len() / 1024
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "| agents | requests | errors | req/s | collector CPU (% of one core) | RSS end / peak MiB | latency p50 / p99 / max ms | fleet nodes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {agents} | {} | {errors} | {:.0} | {:.1} % | {:.0} / {:.0} | {:.2} / {:.2} / {:.2} | {} |",
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
