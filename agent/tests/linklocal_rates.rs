//! The agent's packet counts and peaks against dnsperf's own count at fixed rates, through a
//! real namespace bed with unbound. Needs root; skips with a reason outside CI, fails in CI.

mod common;

use common::*;
use headroom_testbed::bed::{self, Bed};

fn rate_run(qps: u32, seconds: u32) {
    let name = format!("rate_{qps}");
    if !headroom_testbed::require(&name, &bed_needs()) {
        return;
    }
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let agent = Once::start(
        &bed,
        &[
            "--interface",
            "eni0",
            "--duration",
            &format!("{}s", seconds + 3),
        ],
    );
    let sent = bed::run_dnsperf(
        &mut bed
            .dnsperf(bed::LINKLOCAL_RESOLVER, qps, seconds, None)
            .unwrap(),
    )
    .unwrap();
    let report = agent.report();
    let i = iface(&report, "eni0");
    let counted = u(&i["linklocal_packets"]);
    let peak = u(&i["peak_pps"]);
    eprintln!("{qps} qps: dnsperf sent {sent:?}; agent counted {counted}, peak {peak}");
    // Count: within ±0.5 % of what dnsperf sent (UDP: one packet per query).
    let tol = (sent.sent as f64 * 0.005).max(0.0);
    assert!(
        (counted as f64 - sent.sent as f64).abs() <= tol,
        "counted {counted} vs sent {} (±0.5 %)",
        sent.sent
    );
    assert_eq!(u(&i["kernel_drops"]), 0, "capture drops");
    assert_eq!(u(&i["by_service"]["dns"]["packets"]), counted);
    // Peak: within ±2 % of the rate.
    let tol = (qps as f64 * 0.02).max(2.0);
    assert!(
        (peak as f64 - qps as f64).abs() <= tol,
        "peak {peak} vs rate {qps} (±2 %)"
    );
    assert_eq!(u(&i["limit_pps"]), 1024);
    let util = i["utilization"].as_f64().unwrap();
    assert!((util - peak as f64 / 1024.0).abs() < 0.001);
}

#[test]
fn rate_100_qps() {
    rate_run(100, 5);
}

#[test]
fn rate_900_qps() {
    rate_run(900, 5);
}

#[test]
fn rate_5000_qps() {
    rate_run(5000, 5);
}
