//! Runs the real collector binary and talks HTTP/1.1 to it with a plain socket.
#![allow(dead_code)]

pub mod agent_otlp;

use headroom_testbed::proc::Guard;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The collector binary: cargo's own path in the collector's tests, else built through cargo
/// (e2e).
pub static COLLECTOR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    option_env!("CARGO_BIN_EXE_headroom-collector")
        .map(String::from)
        .unwrap_or_else(|| {
            headroom_testbed::bins::path("headroom-collector")
                .display()
                .to_string()
        })
});

/// Runs the collector with `args` (its listeners on ephemeral ports) where a usage error is
/// expected: asserts exit 64 within 20 s with one line on stderr, and returns that line.
pub fn usage_error(args: &[&str]) -> String {
    let mut cmd = Command::new(COLLECTOR.as_str());
    cmd.args(["--http-listen", "127.0.0.1:0"])
        .args(["--otlp-grpc-listen", "127.0.0.1:0"])
        .args(["--otlp-http-listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = Guard::spawn("headroom-collector", &mut cmd)
        .unwrap()
        .wait(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    err
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running collector on 127.0.0.1 with its three addresses.
pub struct Collector {
    pub guard: Guard,
    pub grpc: String,
    pub otlp_http: String,
    pub api: String,
}

impl Collector {
    /// Starts the collector on free ports and waits until /readyz answers.
    pub fn start() -> Collector {
        Self::start_with(&[])
    }

    /// Starts the collector with extra flags on three distinct free ports; tries again on new
    /// ports if one was taken in between (another test's ephemeral port).
    pub fn start_with(args: &[&str]) -> Collector {
        Self::start_with_env(args, &[])
    }

    /// As [`Collector::start_with`], with extra environment for the process. Without `--auth`
    /// in `args` it runs with `--auth none` (tests not about authentication).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Collector {
        let auth: &[&str] = if args.contains(&"--auth") {
            &[]
        } else {
            &["--auth", "none"]
        };
        for _ in 0..5 {
            let held: Vec<TcpListener> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            let addr = |i: usize| held[i].local_addr().unwrap().to_string();
            let (grpc, otlp_http, api) = (addr(0), addr(1), addr(2));
            drop(held);
            let mut cmd = Command::new(COLLECTOR.as_str());
            cmd.args(["--otlp-grpc-listen", &grpc])
                .args(["--otlp-http-listen", &otlp_http])
                .args(["--http-listen", &api])
                .args(auth)
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            let mut guard = Guard::spawn("headroom-collector", &mut cmd).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if request(&api, "GET", "/readyz", &[], &[]).map(|r| r.0) == Some(200) {
                    return Collector {
                        guard,
                        grpc,
                        otlp_http,
                        api,
                    };
                }
                let exited = guard.child.as_mut().unwrap().try_wait().unwrap();
                if exited.is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "collector never ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("collector could not start on free ports five times");
    }

    pub fn fleet(&self) -> serde_json::Value {
        let (code, body) = request(&self.api, "GET", "/api/v1/fleet", &[], &[]).unwrap();
        assert_eq!(code, 200);
        serde_json::from_slice(&body).unwrap()
    }

    /// Resident memory of the collector process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.guard.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

/// One HTTP/1.1 request (`Connection: close`); the body is written from another thread so a
/// server that answers early (413) is still heard. None when the connection fails.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    request_head(addr, method, path, headers, body).map(|(code, _, body)| (code, body))
}

/// As [`request`], with the response's head (status line and headers, lowercased) too.
pub fn request_head(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).ok()?;
    let mut w = s.try_clone().ok()?;
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let _ = writer.join();
    let text_end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..text_end]).to_ascii_lowercase();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = resp[text_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Some((code, head, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// The node named `name` in a fleet snapshot, if present.
pub fn node<'a>(fleet: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    fleet["clusters"]
        .as_array()?
        .iter()
        .flat_map(|c| c["nodes"].as_array().into_iter().flatten())
        .find(|n| n["name"] == name)
}

/// A current-thread runtime for a test's async client (gRPC).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a command to completion and fails the test, with `what` and its output, unless it
/// succeeded.
pub fn run_ok(what: &str, cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// python3 can import `modules` (the OpenTelemetry SDK and exporters: scripts/setup.sh
/// installs them); without them the test skips, and under CI=true fails.
pub fn python_sdk_present(test: &str, modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let reason = format!(
            "{test}: needs python3 with opentelemetry-sdk and opentelemetry-exporter-otlp (scripts/setup.sh installs them)"
        );
        assert!(
            !headroom_testbed::in_ci(),
            "CI=true but this test cannot run: {reason}"
        );
        eprintln!("SKIP {reason}");
    }
    ok
}
