//! `headroom-demo`: the README's main command. Builds the bed, drives DNS and IMDS traffic through
//! two ENIs, one of them past the 1024 packets/s limit for one second, and prints the agent's
//! report beside the load tool's own count.

use anyhow::Context;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::proc::Guard;
use std::process::Stdio;
use std::time::Duration;

fn main() {
    if let Err(e) = demo() {
        eprintln!("headroom-demo: {e:#}");
        std::process::exit(1);
    }
}

fn agent_path() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("headroom-agent");
    anyhow::ensure!(
        p.exists(),
        "{} not found; run scripts/demo.sh, which builds it",
        p.display()
    );
    Ok(p)
}

fn demo() -> anyhow::Result<()> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    anyhow::ensure!(
        root,
        "the demo needs root (network namespaces, packet sockets); run it with sudo"
    );
    let agent = agent_path()?;
    println!("Building the bed: node namespace with eni0 and eni1, VPC namespace with unbound on 10.0.0.2 and 169.254.169.253 …");
    let mut bed = Bed::new(2).context("building the bed")?;
    bed.start_unbound().context("starting unbound")?;
    // A stand-in for IMDS on 169.254.169.254:80, so its packets show in their own column.
    let _imds = Guard::spawn(
        "imds stand-in",
        bed.vpc
            .command("python3")
            .args(["-m", "http.server", "--bind", bed::IMDS, "80"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    std::thread::sleep(Duration::from_millis(500));

    println!("Starting headroom-agent once --duration 12s on eni0 and eni1 …");
    let mut cmd = bed.node.command(agent.to_str().unwrap());
    cmd.args(["once", "--duration", "12s", "--format", "table"])
        .args(["--interface", "eni*", "--resolver", bed::VPC_RESOLVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let agent = Guard::spawn("headroom-agent", &mut cmd)?;
    std::thread::sleep(Duration::from_secs(1));

    println!(
        "Load: eni0 700 qps to 10.0.0.2 for 10 s, plus a 1 s burst of 500 qps to 169.254.169.253;"
    );
    println!("      eni1 (a secondary ENI, by policy routing) 150 qps for 10 s; 20 HTTP requests to IMDS.");
    let mut runs = vec![
        bed.dnsperf(bed::VPC_RESOLVER, 700, 10, None)?,
        bed.dnsperf(bed::LINKLOCAL_RESOLVER, 150, 10, Some(&bed::node_ip(1)))?,
    ];
    let handles: Vec<_> = runs
        .drain(..)
        .map(|mut c| std::thread::spawn(move || bed::run_dnsperf(&mut c)))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let burst = bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 500, 1, None)?)?;
    for _ in 0..20 {
        let _ = bed
            .node
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "2",
                "http://169.254.169.254/",
            ])
            .status();
    }
    let sent: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("dnsperf thread"))
        .collect::<Result<_, _>>()?;
    let out = agent.wait(Duration::from_secs(30))?;
    anyhow::ensure!(
        out.status.success(),
        "the agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    println!();
    println!(
        "Ground truth from dnsperf: eni0 {} + {} queries (one UDP packet each), eni1 {}.",
        sent[0].sent, burst.sent, sent[1].sent
    );
    println!(
        "Expected busiest second on eni0: about {} packets/s — over the 1024 limit.",
        700 + burst.sent
    );
    println!();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!();
    println!(
        "PEAK/S is the busiest one-second window (sliding in 10 ms steps), MEAN/S the average: the"
    );
    println!(
        "mean stays far below the limit while the burst second goes over it — on EC2 those packets"
    );
    println!(
        "would have been dropped silently. IMDS packets (TCP, several per request) count too."
    );
    println!("On a node: `headroom-agent watch` for the live view, `headroom-agent run` for the daemon (/metrics).");
    Ok(())
}
