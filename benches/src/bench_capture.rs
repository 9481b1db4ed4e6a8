//! `headroom-bench-capture [--dns] [RATE…]`: sustained packets/s to a link-local address through
//! the bed, counted at the same time by headroom-agent and by `tcpdump -w /dev/null` with the same
//! filter. Prints a Markdown table: packets counted, drops, and user+sys CPU of each (from wait4
//! rusage). `--dns`: real DNS queries to unbound on 169.254.169.253, which the agent decodes and
//! matches to the replies it also captures; otherwise plain UDP to Time Sync (counting only).

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
    tcpdump_count: u64,
    tcpdump_drops: u64,
    tcpdump_cpu: f64,
    dns_queries: u64,
    dns_answered: u64,
}

fn one(rate: u64, dns: bool) -> anyhow::Result<Row> {
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
        .args(["once", "--format", "json", "--interface", "eni0"])
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
        tcpdump_count: field("packets captured"),
        tcpdump_drops: field("packets dropped by kernel"),
        tcpdump_cpu,
        dns_queries: i["dns"]["queries"].as_u64().unwrap_or(0),
        dns_answered: i["dns"]["answered"].as_u64().unwrap_or(0),
    })
}

fn main() -> anyhow::Result<()> {
    let dns = std::env::args().any(|a| a == "--dns");
    let rates: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| a != "--dns")
        .map(|a| a.parse().context("rates are packets/s"))
        .collect::<anyhow::Result<_>>()?;
    let rates = if rates.is_empty() {
        vec![10_000, 50_000, 100_000]
    } else {
        rates
    };
    println!("| packets/s | sent | agent counted | DNS queries decoded / answered | agent drops | agent CPU s (% core) | tcpdump captured | tcpdump drops | tcpdump CPU s (% core) | agent/tcpdump CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rates {
        let row = one(r, dns)?;
        let window = (SECONDS + 2) as f64;
        println!(
            "| {} | {} | {} | {} / {} | {} | {:.2} ({:.1} %) | {} | {} | {:.2} ({:.1} %) | {:.2} |",
            row.rate,
            row.sent,
            row.agent_count,
            row.dns_queries,
            row.dns_answered,
            row.agent_drops,
            row.agent_cpu,
            row.agent_cpu / window * 100.0,
            row.tcpdump_count,
            row.tcpdump_drops,
            row.tcpdump_cpu,
            row.tcpdump_cpu / window * 100.0,
            row.agent_cpu / row.tcpdump_cpu.max(1e-9)
        );
    }
    Ok(())
}
