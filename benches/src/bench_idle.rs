//! `headroom-bench-idle [--agent PATH] [--seconds N] [--processes N] [--listeners N]
//! [--compare PATH]`: what `headroom-agent run` costs on an idle node. Needs root.
//!
//! The "node" is a network namespace of its own with one veth pair (the measured interface,
//! no traffic) and a pid namespace with its own /proc, so the figures are the agent's alone and
//! not the shared machine's other processes or connections. In it: N `sleep` processes, N
//! listener processes (each one TCP listener on 127.0.0.1) and the agent, started with no IMDS
//! and no Kubernetes. CPU = utime + stime from `/proc/PID/stat` over the measured span (after
//! a warm-up in which the first sample reads every process's fds); RSS from
//! `/proc/PID/status`. Each is scraped every 15 s during the span, as Prometheus would (the
//! agent's work does not depend on scrapes; node_exporter's does). The run also checks, from the agent's own /metrics, that every listener
//! is reported. `--compare PATH` measures a second program the same way: node_exporter, started with
//! `--web.listen-address=127.0.0.1:19100` and its default collectors.
//! Every process it starts dies with the pid namespace; the namespace is deleted at the end.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NETNS: &str = "hrbench-idle";
const IFACE: &str = "hrb0";
const METRICS: &str = "127.0.0.1:19465";

struct Args {
    agent: String,
    seconds: u64,
    processes: u32,
    listeners: u32,
    compare: Option<String>,
}

fn args(v: &[String]) -> Result<Args> {
    let mut a = Args {
        agent: "target/release/headroom-agent".into(),
        seconds: 60,
        processes: 300,
        listeners: 50,
        compare: None,
    };
    let mut it = v.iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().cloned().context("a flag without its value");
        match k.as_str() {
            "--agent" => a.agent = val()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--processes" => a.processes = val()?.parse()?,
            "--listeners" => a.listeners = val()?.parse()?,
            "--compare" => a.compare = Some(val()?),
            other => bail!("unknown argument {other}; see the doc comment of bench_idle.rs"),
        }
    }
    if a.seconds > 600 || a.processes > 2000 || a.listeners > 500 {
        bail!("bounded sizes only: --seconds ≤ 600, --processes ≤ 2000, --listeners ≤ 500");
    }
    Ok(a)
}

fn ip(a: &[&str]) -> Result<()> {
    let st = Command::new("ip").args(a).status()?;
    if !st.success() {
        bail!("ip {} failed", a.join(" "));
    }
    Ok(())
}

/// Child mode: one listener; holds it until stdin closes.
fn listen() -> ! {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", l.local_addr().unwrap().port());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// utime + stime in seconds, and VmRSS / VmHWM in KiB.
fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let f: Vec<&str> = stat[stat.rfind(')').context("stat")? + 2..]
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks as f64 / hz, kib("VmRSS:"), kib("VmHWM:")))
}

/// Runs `cmd` for warm-up + `seconds`, scraping `scrape_at` every 15 s as Prometheus would;
/// returns (CPU % of a core, RSS KiB, peak KiB).
fn measure(
    name: &str,
    cmd: &mut Command,
    seconds: u64,
    scrape_at: &str,
) -> Result<(Child, f64, u64, u64)> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    std::thread::sleep(Duration::from_secs(5));
    let (c0, t0) = (usage(child.id())?.0, Instant::now());
    while t0.elapsed() < Duration::from_secs(seconds) {
        let _ = scrape(scrape_at);
        let left = Duration::from_secs(seconds).saturating_sub(t0.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(15)));
    }
    let (c1, rss, hwm) = usage(child.id())?;
    let pct = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    Ok((child, pct, rss, hwm))
}

fn scrape(addr: &str) -> Result<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.take(64 << 20).read_to_string(&mut out)?;
    Ok(out)
}

/// Inside the namespaces: start the processes, measure, report.
fn inner(a: &Args) -> Result<()> {
    let me = std::env::current_exe()?;
    let mut kids: Vec<Child> = Vec::new();
    for _ in 0..a.processes {
        kids.push(Command::new("sleep").arg("3600").spawn()?);
    }
    let mut ports = Vec::new();
    for _ in 0..a.listeners {
        let mut c = Command::new(&me)
            .arg("listen")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let mut out = c.stdout.take().unwrap();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0] as char);
        }
        ports.push(line.trim().parse::<u16>()?);
        kids.push(c);
    }
    let procs = std::fs::read_dir("/proc")?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    let mut agent_cmd = Command::new(&a.agent);
    agent_cmd.args([
        "run",
        "--interface",
        IFACE,
        "--metrics-listen",
        METRICS,
        "--imds-endpoint",
        "http://127.0.0.1:9",
    ]);
    agent_cmd.env_remove("KUBERNETES_SERVICE_HOST");
    let (mut agent, pct, rss, hwm) = measure("the agent", &mut agent_cmd, a.seconds, METRICS)?;
    let text = scrape(METRICS).unwrap_or_default();
    let found = ports
        .iter()
        .filter(|p| {
            text.lines()
                .any(|l| l.starts_with("headroom_workers{") && l.contains(&format!("port=\"{p}\"")))
        })
        .count();
    let _ = agent.kill();
    let _ = agent.wait();
    println!(
        "{} processes in the node ({} sleep, {} listeners, the bench); agent {}: CPU {pct:.2} % of one core over {} s, RSS {} KiB ({:.1} MiB), peak {} KiB; listeners reported {found}/{}",
        procs + 1,
        a.processes,
        a.listeners,
        a.agent,
        a.seconds,
        rss,
        rss as f64 / 1024.0,
        hwm,
        ports.len()
    );
    if let Some(other) = &a.compare {
        let mut cmd = Command::new(other);
        cmd.arg("--web.listen-address=127.0.0.1:19100");
        let (mut c, pct, rss, hwm) = measure(other, &mut cmd, a.seconds, "127.0.0.1:19100")?;
        let _ = c.kill();
        let _ = c.wait();
        println!(
            "{other}: CPU {pct:.2} % of one core over {} s, RSS {rss} KiB ({:.1} MiB), peak {hwm} KiB",
            a.seconds,
            rss as f64 / 1024.0
        );
    }
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    if found != ports.len() {
        bail!("the agent reported {found} of {} listeners", ports.len());
    }
    Ok(())
}

fn main() -> Result<()> {
    let v: Vec<String> = std::env::args().collect();
    match v.get(1).map(String::as_str) {
        Some("listen") => listen(),
        Some("inner") => return inner(&args(&v[2..])?),
        _ => {}
    }
    let a = args(&v[1..])?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network and pid namespaces)");
    }
    let agent = std::fs::canonicalize(&a.agent).with_context(|| {
        format!(
            "no agent at {}; build it with cargo build --release -p headroom-agent",
            a.agent
        )
    })?;
    let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    ip(&["netns", "add", NETNS])?;
    let run = (|| {
        ip(&[
            "-n", NETNS, "link", "add", IFACE, "type", "veth", "peer", "name", "hrb1",
        ])?;
        ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        ip(&["-n", NETNS, "link", "set", IFACE, "up"])?;
        ip(&["-n", NETNS, "link", "set", "hrb1", "up"])?;
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            NETNS,
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .arg(std::env::current_exe()?)
        .arg("inner")
        .args(["--agent", &agent.to_string_lossy()])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--processes", &a.processes.to_string()])
        .args(["--listeners", &a.listeners.to_string()]);
        if let Some(c) = &a.compare {
            cmd.args(["--compare", c]);
        }
        let st = cmd.status()?;
        if !st.success() {
            bail!("the bench failed inside its namespaces");
        }
        Ok(())
    })();
    let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    run
}
