//! What counts and what does not: bursts, other DNS servers, other interfaces, TCP, IPv6.
//! Ground truth is dnsperf's own count or `tcpdump -U -w` on the same interface.
//! Needs root; skips with a reason outside CI, fails in CI.

mod common;

use common::*;
use headroom_testbed::bed::{self, Bed};
use std::time::Duration;

/// A one-second burst of 1400 qps on top of a 10 s run at 100 qps: the peak is the burst
/// second (1400 + 100), not the mean.
#[test]
fn burst_shows_as_peak() {
    if !headroom_testbed::require("burst_shows_as_peak", &bed_needs()) {
        return;
    }
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let agent = Once::start(&bed, &["--interface", "eni0", "--duration", "13s"]);
    let mut bg = bed.dnsperf(bed::LINKLOCAL_RESOLVER, 100, 10, None).unwrap();
    let bg = std::thread::spawn(move || bed::run_dnsperf(&mut bg).unwrap());
    std::thread::sleep(Duration::from_secs(4));
    let burst = bed::run_dnsperf(&mut bed.dnsperf(bed::LINKLOCAL_RESOLVER, 1400, 1, None).unwrap())
        .unwrap();
    let bg = bg.join().unwrap();
    let report = agent.report();
    let i = iface(&report, "eni0");
    let (count, peak) = (u(&i["linklocal_packets"]), u(&i["peak_pps"]));
    let expected_peak = burst.sent as f64 + 100.0;
    eprintln!(
        "burst {burst:?} bg {bg:?}: counted {count}, peak {peak}, mean {}",
        i["mean_pps"]
    );
    assert_eq!(count, bg.sent + burst.sent, "every packet counted");
    assert!(
        (peak as f64 - expected_peak).abs() <= expected_peak * 0.03,
        "peak {peak} vs {expected_peak} (±3 %)"
    );
    assert!(
        i["mean_pps"].as_f64().unwrap() < 300.0,
        "the mean stays low"
    );
}

/// Queries to a DNS server that is not a link-local service do not count; the VPC resolver
/// counts once named with --resolver; traffic leaving through a second ENI counts there only.
#[test]
fn counts_per_interface_and_only_link_local() {
    if !headroom_testbed::require("counts_per_interface_and_only_link_local", &bed_needs()) {
        return;
    }
    let mut bed = Bed::new(2).unwrap();
    bed.start_unbound().unwrap();
    let agent = Once::start(
        &bed,
        &[
            "--interface",
            "eni*",
            "--resolver",
            bed::VPC_RESOLVER,
            "--duration",
            "6s",
        ],
    );
    let mut runs = vec![
        bed.dnsperf(bed::OTHER_RESOLVER, 300, 3, None).unwrap(),
        bed.dnsperf(bed::VPC_RESOLVER, 200, 3, None).unwrap(),
        bed.dnsperf(bed::LINKLOCAL_RESOLVER, 250, 3, Some(&bed::node_ip(1)))
            .unwrap(),
    ];
    let handles: Vec<_> = runs
        .drain(..)
        .map(|mut c| std::thread::spawn(move || bed::run_dnsperf(&mut c).unwrap()))
        .collect();
    let sent: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let report = agent.report();
    let (e0, e1) = (iface(&report, "eni0"), iface(&report, "eni1"));
    eprintln!(
        "sent {sent:?}; eni0 {} eni1 {}",
        e0["linklocal_packets"], e1["linklocal_packets"]
    );
    assert!(
        sent[0].completed > 0,
        "the other resolver answered, so its packets flowed"
    );
    assert_eq!(
        u(&e0["linklocal_packets"]),
        sent[1].sent,
        "eni0: VPC resolver only"
    );
    assert_eq!(
        u(&e1["linklocal_packets"]),
        sent[2].sent,
        "eni1: its own traffic only"
    );
    assert_eq!(u(&e1["by_service"]["dns"]["packets"]), sent[2].sent);
}

/// A TCP query costs several packets, and each one counts: equal to tcpdump's count.
/// IPv6 to fd00:ec2::253 counts too.
#[test]
fn tcp_packets_and_ipv6_count() {
    if !headroom_testbed::require("tcp_packets_and_ipv6_count", &bed_needs()) {
        return;
    }
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let dump = bed
        .tcpdump("eni0", "dst host 169.254.169.253 or dst host fd00:ec2::253")
        .unwrap();
    let agent = Once::start(&bed, &["--interface", "eni0", "--duration", "5s"]);
    for n in 0..10 {
        let out = bed
            .node
            .command("dig")
            .args([
                "+tcp",
                "+tries=1",
                "+timeout=2",
                "+short",
                "@169.254.169.253",
            ])
            .arg(format!("svc{n}.{}", bed::ZONE))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("10.1.0.{n}")));
    }
    let v6 = bed::run_dnsperf(
        &mut bed
            .dnsperf(bed::LINKLOCAL_RESOLVER_V6, 200, 2, None)
            .unwrap(),
    )
    .unwrap();
    let report = agent.report();
    std::thread::sleep(Duration::from_millis(300));
    let truth = dump.stop_and_count().unwrap();
    let i = iface(&report, "eni0");
    let counted = u(&i["linklocal_packets"]);
    eprintln!("tcpdump {truth}, agent {counted}, v6 sent {}", v6.sent);
    assert_eq!(counted, truth, "every packet tcpdump saw leave, no more");
    // 10 TCP queries of at least SYN, ACK, query, ACK, FIN (≥ 5 packets each) plus v6 UDP.
    assert!(
        counted >= v6.sent + 50,
        "TCP queries cost several packets each"
    );
}
