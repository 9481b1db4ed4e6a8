//! `headroom-bench-capture [--dns] [RATE…]`: sustained packets/s to a link-local address through
//! the bed, counted at the same time by headroom-agent (once on each tap: eBPF, AF_PACKET) and by
//! `tcpdump -w /dev/null` with the same filter. Prints a Markdown table: packets counted, drops,
//! and user+sys CPU of each (from wait4 rusage). `--dns`: real DNS queries to unbound on
//! 169.254.169.253, which the agent decodes and matches to the replies it also captures;
//! otherwise plain UDP to Time Sync (counting only).
//!
//! `headroom-bench-capture --tax [ROUNDS]`: the node tax. 2M small UDP datagrams (asked at
//! 250k/s: as fast as one sender goes here) to an address that is *not* a link-local service
//! (the VPC side of eni0), with nothing watching, with the agent's eBPF tap, with its AF_PACKET
//! tap, and with tcpdump on the interface; the sender's own user+sys CPU per packet, each setup
//! once per round in rotating order, medians over the rounds. Two more setups split the eBPF
//! tap's figure: an empty tcx program (the hook's own cost) and the agent's programs attached
//! and filled by the bench with no agent process (`--hold hook|programs`, run in the node's
//! namespace); each run's CLOCK_MONOTONIC span is printed for `perf report --time`. `--program-time`: also the
//! kernel's accounting of the eBPF program's run time (BPF_ENABLE_STATS during its rounds,
//! which itself costs every BPF run two clock reads).

use anyhow::Context;
use headroom_testbed::bed::{self, Bed};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

const SECONDS: u64 = 30;
const FILTER: &str =
    "dst host 169.254.169.253 or dst host 169.254.169.254 or dst host 169.254.169.123 \
    or dst host fd00:ec2::253 or dst host fd00:ec2::254 or dst host fd00:ec2::123";

/// Waits for `pid` and returns its user+sys CPU seconds.
fn wait_cpu(pid: u32) -> anyhow::Result<f64> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, valid zeroed; wait4 writes it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    anyhow::ensure!(
        rc == pid as i32,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Ok(t(ru.ru_utime) + t(ru.ru_stime))
}

struct Row {
    rate: u64,
    sent: u64,
    agent_count: u64,
    agent_drops: u64,
    agent_cpu: f64,
    /// CPU of the agent's capture thread for eni0 alone (the tap's reader), seconds.
    capture_cpu: f64,
    tcpdump_count: u64,
    tcpdump_drops: u64,
    tcpdump_cpu: f64,
    dns_queries: u64,
    dns_answered: u64,
}

fn one(rate: u64, dns: bool, tap: &str) -> anyhow::Result<Row> {
    let dir = std::env::current_exe()?;
    let agent = dir.with_file_name("headroom-agent");
    let loadgen = dir.with_file_name("headroom-loadgen");
    let mut bed = Bed::new(1)?;
    if dns {
        bed.start_unbound()?;
    }
    let mut tcpdump = bed
        .node
        .command("tcpdump")
        .args(["-i", "eni0", "-Q", "out", "-n", "-w", "/dev/null", FILTER])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("tcpdump")?;
    let mut agent = bed
        .node
        .command(agent.to_str().unwrap())
        .args([
            "once",
            "--format",
            "json",
            "--interface",
            "eni0",
            "--tap",
            tap,
        ])
        .args(["--duration", &format!("{}s", SECONDS + 2)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("headroom-agent")?;
    std::thread::sleep(Duration::from_millis(700));
    let target: Vec<String> = if dns {
        let dst = format!("{}:53", bed::LINKLOCAL_RESOLVER);
        vec![
            "--dst".into(),
            dst,
            "--dns".into(),
            format!("svc1.{}", bed::ZONE),
        ]
    } else {
        vec!["--dst".into(), format!("{}:9", bed::NTP)]
    };
    let out = bed
        .node
        .command(loadgen.to_str().unwrap())
        .args(target)
        .args([
            "--rate",
            &rate.to_string(),
            "--seconds",
            &SECONDS.to_string(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sent: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("loadgen output: {text}"))?;
    // The load is over and the agent still measures (2 s): its capture thread's time so far.
    let capture_cpu = thread_cpu(agent.id(), "capture-eni0").unwrap_or(f64::NAN);
    let mut stdout = String::new();
    agent.stdout.take().unwrap().read_to_string(&mut stdout)?;
    let agent_cpu = wait_cpu(agent.id())?;
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    let i = &report["interfaces"][0];
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(tcpdump.id() as i32, libc::SIGINT) };
    let mut err = String::new();
    tcpdump.stderr.take().unwrap().read_to_string(&mut err)?;
    let tcpdump_cpu = wait_cpu(tcpdump.id())?;
    let field = |suffix: &str| -> u64 {
        err.lines()
            .find(|l| l.ends_with(suffix))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Row {
        rate,
        sent,
        agent_count: i["linklocal_packets"].as_u64().unwrap_or(0),
        agent_drops: i["kernel_drops"].as_u64().unwrap_or(0),
        agent_cpu,
        capture_cpu,
        tcpdump_count: field("packets captured"),
        tcpdump_drops: field("packets dropped by kernel"),
        tcpdump_cpu,
        dns_queries: i["dns"]["queries"].as_u64().unwrap_or(0),
        dns_answered: i["dns"]["answered"].as_u64().unwrap_or(0),
    })
}

/// On-CPU seconds of `pid`'s thread named `name` (schedstat: nanoseconds, not ticks).
fn thread_cpu(pid: u32, name: &str) -> Option<f64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = t.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() == name {
            let s = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            return Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9);
        }
    }
    None
}

/// What watches eni0 while the sender runs.
#[derive(Clone, Copy, Debug)]
enum Watcher {
    Nothing,
    /// An empty tcx egress program held by the bench: the hook's own cost.
    Hook,
    /// The agent's eBPF programs, attached and filled by the bench, no agent process.
    Programs,
    Ebpf,
    AfPacket,
    Tcpdump,
}

impl Watcher {
    fn name(self) -> &'static str {
        match self {
            Watcher::Nothing => "no tap",
            Watcher::Hook => "empty tcx program",
            Watcher::Programs => "agent's programs, no agent",
            Watcher::Ebpf => "agent, eBPF tap",
            Watcher::AfPacket => "agent, AF_PACKET tap",
            Watcher::Tcpdump => "tcpdump (same filter)",
        }
    }
}

/// CLOCK_MONOTONIC in seconds: the clock `perf record -k CLOCK_MONOTONIC` stamps samples with.
fn monotonic() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Starts `w` on eni0 and waits until it watches; returns what to stop afterwards.
fn watch(bed: &Bed, w: Watcher) -> anyhow::Result<Option<std::process::Child>> {
    use std::io::BufRead;
    let agent = std::env::current_exe()?.with_file_name("headroom-agent");
    let (mut cmd, marker) = match w {
        Watcher::Nothing => return Ok(None),
        Watcher::Hook | Watcher::Programs => {
            // A process of its own in the node namespace (as the agent is run there: with that
            // namespace's /sys, which the programs' set-up reads).
            let mut c = bed.node.command(std::env::current_exe()?.to_str().unwrap());
            let what = if matches!(w, Watcher::Hook) {
                "hook"
            } else {
                "programs"
            };
            c.args(["--hold", what]);
            (c, "Holding.")
        }
        Watcher::Ebpf | Watcher::AfPacket => {
            let mut c = bed.node.command(agent.to_str().unwrap());
            let tap = if matches!(w, Watcher::Ebpf) {
                "ebpf"
            } else {
                "af_packet"
            };
            c.args([
                "once",
                "--interface",
                "eni0",
                "--duration",
                "120s",
                "--tap",
                tap,
            ])
            .args(["--imds-endpoint", "http://127.0.0.1:9"])
            .env("RUST_LOG", "info");
            (c, "Capturing.")
        }
        Watcher::Tcpdump => {
            let mut c = bed.node.command("tcpdump");
            c.args(["-i", "eni0", "-Q", "out", "-n", "-w", "/dev/null", FILTER]);
            (c, "listening on")
        }
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| w.name())?;
    let mut r = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line)? > 0 && !line.contains(marker) {
        line.clear();
    }
    anyhow::ensure!(line.contains(marker), "{} did not start", w.name());
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    Ok(Some(child))
}

/// One sender run of `packets` to the VPC side of eni0: (sent, sender CPU seconds, seconds).
fn send(bed: &Bed, packets: u64) -> anyhow::Result<(u64, f64, f64)> {
    let loadgen = std::env::current_exe()?.with_file_name("headroom-loadgen");
    // 250k packets/s asked for: one sender on this machine reaches about 200k, so it sends as
    // fast as it can; loadgen stops by itself 5 s after the planned end in any case.
    const RATE: u64 = 250_000;
    let child = bed
        .node
        .command(loadgen.to_str().unwrap())
        .args(["--dst", "10.0.0.1:9", "--rate", &RATE.to_string()])
        .args(["--seconds", &(packets / RATE).max(1).to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut stdout = String::new();
    child.stdout.unwrap().read_to_string(&mut stdout)?;
    let cpu = wait_cpu(pid)?;
    let mut words = stdout.split_whitespace();
    let sent: u64 = words
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("loadgen output")?;
    let secs: f64 = words
        .nth(3)
        .and_then(|v| v.parse().ok())
        .context("loadgen output")?;
    Ok((sent, cpu, secs))
}

/// The agent's egress program on eni0 (in the bed's node namespace): its mean run time in ns
/// and its run count, as the kernel accounts them while statistics are enabled.
fn program_time(bed: &Bed) -> anyhow::Result<(f64, u64)> {
    use aya::programs::tc::{SchedClassifier, TcAttachType};
    headroom_testbed::netns::in_netns(&bed.node.name, || {
        let (_, progs) = SchedClassifier::query_tcx("eni0", TcAttachType::Egress)?;
        let p = progs
            .iter()
            .find(|p| p.name_as_str() == Some("egress"))
            .context("no egress program on eni0")?;
        let runs = p.run_count();
        anyhow::ensure!(
            runs > 0,
            "no statistics: kernel.bpf_stats_enabled unavailable?"
        );
        Ok((p.run_time().as_nanos() as f64 / runs as f64, runs))
    })?
}

fn tax(rounds: usize, program_stats: bool) -> anyhow::Result<()> {
    const PACKETS: u64 = 2_000_000;
    let watchers = [
        Watcher::Nothing,
        Watcher::Hook,
        Watcher::Programs,
        Watcher::Ebpf,
        Watcher::AfPacket,
        Watcher::Tcpdump,
    ];
    let bed = Bed::new(1)?;
    let mut per_packet: Vec<Vec<f64>> = vec![Vec::new(); watchers.len()];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); watchers.len()];
    let mut prog_ns = Vec::new();
    // A warm-up run (page cache, neighbour entry, CPU frequency) that is not recorded.
    send(&bed, PACKETS / 4)?;
    for round in 0..rounds {
        for k in 0..watchers.len() {
            let i = (k + round) % watchers.len();
            let w = watchers[i];
            let child = watch(&bed, w)?;
            std::thread::sleep(Duration::from_millis(300));
            // The kernel's own accounting of the eBPF program: run time and runs while held.
            // Statistics cost every BPF run two clock reads, so they are on only when asked for.
            let stats = match w {
                Watcher::Ebpf | Watcher::Programs if program_stats => {
                    Some(aya::sys::enable_stats(aya::sys::Stats::RunTime)?)
                }
                _ => None,
            };
            let from = monotonic();
            let (sent, cpu, secs) = send(&bed, PACKETS)?;
            let to = monotonic();
            if stats.is_some() {
                let (ns, runs) = program_time(&bed)?;
                eprintln!("round {round}: the egress program ran {runs} times, {ns:.1} ns each");
                prog_ns.push(ns);
            }
            drop(stats);
            if let Some(mut c) = child {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
                let _ = c.wait();
            }
            eprintln!(
                "round {round}: {:<26} sent {sent} in {secs:.2} s, sender CPU {cpu:.2} s = {:.0} ns/packet (CLOCK_MONOTONIC {from:.3}–{to:.3}, for perf record -k CLOCK_MONOTONIC and perf report --time)",
                w.name(),
                cpu / sent as f64 * 1e9
            );
            per_packet[i].push(cpu / sent as f64 * 1e9);
            rates[i].push(sent as f64 / secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let base = median(&mut per_packet[0].clone());
    if !prog_ns.is_empty() {
        let all: Vec<String> = prog_ns.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "eBPF egress program, kernel run time per packet (BPF_ENABLE_STATS): {} ns; median {:.1} ns\n",
            all.join(", "),
            median(&mut prog_ns)
        );
    }
    println!("| watching eni0 | sender CPU per packet, ns (rounds) | median ns | added vs no tap, ns | added, median of the rounds' own differences, ns | packets/s (median) |");
    println!("|---|---|---|---|---|---|");
    for (i, w) in watchers.iter().enumerate() {
        let all: Vec<String> = per_packet[i].iter().map(|v| format!("{v:.0}")).collect();
        // Paired: each round against that round's own no-tap run, which cancels the drift
        // between rounds (the machine's state moves the whole round by up to ±100 ns).
        let mut paired: Vec<f64> = per_packet[i]
            .iter()
            .zip(&per_packet[0])
            .map(|(a, b)| a - b)
            .collect();
        let m = median(&mut per_packet[i]);
        println!(
            "| {} | {} | {m:.0} | {:+.0} | {:+.0} | {:.0} |",
            w.name(),
            all.join(", "),
            m - base,
            median(&mut paired),
            median(&mut rates[i])
        );
    }
    Ok(())
}

/// `--hold hook|programs`: attaches the empty tcx program, or the agent's programs with its
/// targets, to eni0 of the current namespace, says "Holding." and waits to be killed.
fn hold(what: &str) -> anyhow::Result<()> {
    use headroom_agent::sys::ebpf;
    let held: Box<dyn Send> = match what {
        "hook" => Box::new(ebpf::attach_baseline("eni0")?),
        "programs" => {
            // The agent's own targets without a VPC resolver: the link-local services.
            let targets = headroom_agent::sources::linklocal::Targets::new(&[]).classes();
            Box::new(ebpf::EbpfTap::open("eni0", &targets)?)
        }
        other => anyhow::bail!("--hold hook|programs, not {other}"),
    };
    eprintln!("Holding.");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        let _ = &held;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--hold") {
        return hold(args.get(1).map_or("", |s| s.as_str()));
    }
    if args.first().is_some_and(|a| a == "--tax") {
        let stats = args.iter().any(|a| a == "--program-time");
        let rounds = match args.get(1).filter(|a| *a != "--program-time") {
            Some(r) => r.parse().context("rounds")?,
            None => 5,
        };
        return tax(rounds, stats);
    }
    let dns = args.iter().any(|a| a == "--dns");
    let rates: Vec<u64> = args
        .iter()
        .filter(|a| *a != "--dns")
        .map(|a| a.parse().context("rates are packets/s"))
        .collect::<anyhow::Result<_>>()?;
    let rates = if rates.is_empty() {
        vec![10_000, 50_000, 100_000]
    } else {
        rates
    };
    println!("| packets/s | agent tap | sent | agent counted | DNS queries decoded / answered | agent drops | agent CPU s (% core) | its capture thread s | tcpdump captured | tcpdump drops | tcpdump CPU s (% core) | agent/tcpdump CPU | capture thread/tcpdump |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rates {
        for tap in ["ebpf", "af_packet"] {
            let row = one(r, dns, tap)?;
            let window = (SECONDS + 2) as f64;
            println!(
                "| {} | {tap} | {} | {} | {} / {} | {} | {:.2} ({:.1} %) | {:.3} | {} | {} | {:.2} ({:.1} %) | {:.2} | {:.2} |",
                row.rate,
                row.sent,
                row.agent_count,
                row.dns_queries,
                row.dns_answered,
                row.agent_drops,
                row.agent_cpu,
                row.agent_cpu / window * 100.0,
                row.capture_cpu,
                row.tcpdump_count,
                row.tcpdump_drops,
                row.tcpdump_cpu,
                row.tcpdump_cpu / window * 100.0,
                row.agent_cpu / row.tcpdump_cpu.max(1e-9),
                row.capture_cpu / row.tcpdump_cpu.max(1e-9)
            );
        }
    }
    Ok(())
}
