//! `headroom-bench-collector [--agents 5000] [--interval 10] [--seconds 60] [--threads 16]`:
//! starts `headroom-collector` on 127.0.0.1 and simulates that many agents, each POSTing one
//! report window (the agent's own OTLP encoding, two interfaces) per interval over OTLP/HTTP
//! protobuf with keep-alive connections. Prints the collector's CPU (user + sys from
//! /proc/PID/stat over the run), peak and final RSS, the ingest latency percentiles, and a
//! check that every simulated node is in the fleet. Traffic goes to 127.0.0.1 only, bounded
//! by --seconds.

use headroom_agent::linklocal::series::Figures;
use headroom_agent::meter::InterfaceWindow;
use headroom_agent::otlp::encode;
use headroom_agent::report::{Node, Report};
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

/// One agent's report window ending at `now` (ns) as the agent encodes it.
fn body(agent: usize, window: u64, now: u64) -> Vec<u8> {
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
    let r = Report::new(node, now - 10_000_000_000, now, &windows);
    encode::request(&r, encode::resource(&r, &[]), 1).encode_to_vec()
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
    let sample = body(0, 0, now_ns());
    println!(
        "{agents} agents, one {} B request each per {interval:?}, {seconds} s, {threads} sender threads",
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
                        let b = body(i, round as u64, now_ns());
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
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = proc_cpu_seconds(pid) - cpu0;
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    // The fleet knows every node.
    let mut s = TcpStream::connect(&api).unwrap();
    write!(
        s,
        "GET /api/v1/fleet?history=false HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let json_at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let fleet: serde_json::Value = serde_json::from_slice(&resp[json_at..]).unwrap_or_default();
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
