//! The real agent binary on an EC2-shaped bed with the fake IMDS at 169.254.169.254 in the VPC
//! namespace (so the agent's own IMDS calls leave through eni0 and count, as on EC2): ENI ids by
//! MAC, the VPC resolver without flags, IMDS down/up, a MAC IMDS does not know, an interface that
//! disappears, no IMDS at all, and the ethtool ioctl against `ethtool -S` on veth.
//! Ground truth: tcpdump on each interface, packets classified and placed in the report window
//! by their kernel timestamps. The capture tests run on both taps (eBPF and AF_PACKET). Needs
//! root; skips with a reason outside CI, fails in CI.

use crate::common::*;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::imds::{two_eni_instance, FakeImds};
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

fn needs() -> Vec<Need> {
    let mut n = bed_needs();
    n.push(Need::Tool("ethtool"));
    n
}

fn tap_needs(tap: Tap) -> Vec<Need> {
    tap.needs(needs())
}

/// A running `headroom-agent once --format json`, whose stderr is kept.
struct Agent {
    guard: Guard,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    fn start(bed: &Bed, tap: Tap, args: &[&str]) -> Agent {
        let mut cmd = bed.node.command(&AGENT);
        cmd.args(["once", "--format", "json"])
            .args(args)
            .args(tap.args())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn("headroom-agent", &mut cmd).unwrap();
        let stderr = guard.stderr_until("Capturing.", None);
        Agent { guard, stderr }
    }

    fn report(self) -> (serde_json::Value, String) {
        let out = self.guard.wait(Duration::from_secs(60)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let err = self.stderr.lock().unwrap().clone();
        assert!(
            out.status.success(),
            "agent failed: {:?}\n{err}",
            out.status
        );
        let v = serde_json::from_slice(&out.stdout).expect("agent prints JSON");
        (v, err)
    }
}

fn mac_of(bed: &Bed, iface: &str) -> String {
    let out = bed
        .node
        .command("cat")
        .arg(format!("/sys/class/net/{iface}/address"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The fake IMDS where EC2 has it: 169.254.169.254:80, behind eni0.
fn imds_in_vpc(bed: &Bed, macs: &[String]) -> FakeImds {
    FakeImds::new(
        &two_eni_instance(macs),
        "169.254.169.254:80".parse().unwrap(),
        Some(&bed.vpc.name),
    )
    .unwrap()
}

fn config(bed: &Bed, text: &str) -> String {
    let p = bed.path("agent.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// tcpdump on an interface's egress, all IPv4 ([`Bed::tcpdump`]: a 16 MiB buffer, immediate
/// mode, and no ground truth if it dropped anything); read back as (timestamp ns, destination).
struct Pcap(bed::Tcpdump);

fn tcpdump(bed: &mut Bed, iface: &str) -> Pcap {
    Pcap(bed.tcpdump(iface, "ip").unwrap())
}

impl Pcap {
    fn stop(self) -> Vec<(u64, [u8; 4])> {
        parse_pcap(&self.0.stop_and_read().unwrap())
    }
}

/// Records of an Ethernet pcap: (timestamp ns, IPv4 destination).
fn parse_pcap(b: &[u8]) -> Vec<(u64, [u8; 4])> {
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let ns = match magic {
        0xa1b2c3d4 => false,
        0xa1b23c4d => true,
        m => panic!("unexpected pcap magic {m:#x}"),
    };
    let u = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let incl = u(off + 8) as usize;
        if off + 16 + incl > b.len() {
            break;
        }
        let ts = u(off) * 1_000_000_000 + if ns { u(off + 4) } else { u(off + 4) * 1000 };
        let p = &b[off + 16..off + 16 + incl];
        if p.len() >= 34 && p[12..14] == [0x08, 0x00] {
            out.push((ts, p[30..34].try_into().unwrap()));
        }
        off += 16 + incl;
    }
    out
}

/// The report's window in ns since the epoch (start has millisecond resolution).
fn window(report: &serde_json::Value) -> (u64, u64) {
    let start = humantime::parse_rfc3339(report["window"]["start"].as_str().unwrap()).unwrap();
    let s = start.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let secs = report["window"]["seconds"].as_f64().unwrap();
    (s, s + (secs * 1e9).round() as u64)
}

/// The agent's time step: a window covers whole 10 ms buckets, [start/10ms, end/10ms).
const STEP: u64 = 10_000_000;

/// Packets to `dst` inside the window as the agent cuts it (whole 10 ms buckets; the report's
/// start is exact to the bucket since 10 ms is a whole number of its milliseconds), and how
/// many lie within 1 ms of a bucket edge of the window (the tolerance, for rounding).
fn in_window(pkts: &[(u64, [u8; 4])], dst: [u8; 4], w: (u64, u64)) -> (u64, u64) {
    const EDGE: u64 = 1_000_000;
    let (s, e) = (w.0 / STEP, w.1 / STEP);
    let mut inside = 0;
    let mut edge = 0;
    for &(t, _) in pkts.iter().filter(|(_, d)| *d == dst) {
        if (s..e).contains(&(t / STEP)) {
            inside += 1;
        }
        if t.abs_diff(s * STEP) < EDGE || t.abs_diff(e * STEP) < EDGE {
            edge += 1;
        }
    }
    (inside, edge)
}

const VPC_DNS: [u8; 4] = [10, 0, 0, 2];
const IMDS: [u8; 4] = [169, 254, 169, 254];
const SECONDARY_DNS: [u8; 4] = [100, 64, 0, 2];

fn assert_close(what: &str, got: u64, truth: (u64, u64)) {
    let (want, tol) = truth;
    assert!(
        got.abs_diff(want) <= tol,
        "{what}: agent {got}, tcpdump {want} (tolerance ±{tol}: packets within 1 ms of the window's bucket edges)"
    );
}

fn dnsperf_thread(
    bed: &Bed,
    server: &str,
    qps: u32,
    secs: u32,
    src: Option<&str>,
) -> std::thread::JoinHandle<bed::DnsperfResult> {
    let mut cmd = bed.dnsperf(server, qps, secs, src).unwrap();
    std::thread::spawn(move || {
        let out = cmd.output().unwrap();
        bed::parse_dnsperf(&String::from_utf8_lossy(&out.stdout)).unwrap()
    })
}

fn two_enis_by_mac_and_the_vpc_resolver_without_flags(tap: Tap) {
    headroom_testbed::require_or_return!(
        &format!("two_enis_by_mac_{}", tap.name()),
        &tap_needs(tap)
    );
    let mut bed = Bed::new(2).unwrap();
    bed.start_unbound().unwrap();
    // Base + 2 of the VPC's secondary CIDR (100.64.0.0/16) is not a resolver: make it reachable
    // so the test can show its packets are not counted.
    bed.vpc
        .ip(&["addr", "add", "100.64.0.2/32", "dev", "lo"])
        .unwrap();
    bed.node
        .ip(&[
            "route",
            "add",
            "100.64.0.2/32",
            "via",
            "10.0.0.1",
            "dev",
            "eni0",
        ])
        .unwrap();
    let macs = vec![mac_of(&bed, "eni0"), mac_of(&bed, "eni1")];
    let imds = imds_in_vpc(&bed, &macs);
    let cfg = config(&bed, "imds_refresh_interval = \"2s\"\n");
    let t0 = tcpdump(&mut bed, "eni0");
    let t1 = tcpdump(&mut bed, "eni1");
    let agent = Agent::start(
        &bed,
        tap,
        &["--interface", "eni*", "--duration", "8s", "--config", &cfg],
    );
    let a = dnsperf_thread(&bed, bed::VPC_RESOLVER, 200, 4, None);
    let b = dnsperf_thread(&bed, bed::VPC_RESOLVER, 100, 4, Some(&bed::node_ip(1)));
    let c = dnsperf_thread(&bed, "100.64.0.2", 50, 2, None);
    let (a, b, c) = (a.join().unwrap(), b.join().unwrap(), c.join().unwrap());
    let (report, stderr) = agent.report();
    let (p0, p1) = (t0.stop(), t1.stop());
    let w = window(&report);

    assert!(
        stderr.contains("Counting the VPC resolver") && stderr.contains("10.0.0.2"),
        "{stderr}"
    );
    assert_eq!(report["node"]["instance_id"], "i-0123456789abcdef0");
    assert_eq!(report["node"]["instance_type"], "m5.large");
    assert_eq!(report["node"]["availability_zone"], "us-east-1a");
    let (e0, e1) = (iface(&report, "eni0"), iface(&report, "eni1"));
    tap.check(e0);
    tap.check(e1);
    assert_eq!(e0["mac"], macs[0].as_str());
    assert_eq!(e1["mac"], macs[1].as_str());
    assert_eq!(e0["eni_id"], "eni-0000aaaabbbbcccc0");
    assert_eq!(e1["eni_id"], "eni-0111aaaabbbbcccc1");
    assert_eq!((u(&e0["device_number"]), u(&e1["device_number"])), (0, 1));
    // veth has no ENA allowance counters.
    assert!(e0["allowance"].is_null() && e1["allowance"].is_null());
    assert!(e0["conntrack_allowance_available"].is_null());

    // VPC resolver packets, per ENI: exactly tcpdump's count (all sent well inside the window).
    let dns0 = in_window(&p0, VPC_DNS, w);
    let dns1 = in_window(&p1, VPC_DNS, w);
    eprintln!(
        "dnsperf sent {} + {} (+{} to 100.64.0.2); tcpdump eni0 {dns0:?}, eni1 {dns1:?}; agent eni0 {}, eni1 {}",
        a.sent, b.sent, c.sent, e0["by_service"], e1["by_service"]
    );
    assert_eq!(dns0, (a.sent, 0));
    assert_eq!(dns1, (b.sent, 0));
    assert_eq!(u(&e0["by_service"]["dns"]["packets"]), dns0.0);
    assert_eq!(u(&e1["by_service"]["dns"]["packets"]), dns1.0);
    // The secondary CIDR's base + 2 got packets, and none of them counted.
    assert!(in_window(&p0, SECONDARY_DNS, w).0 >= c.sent);
    // The agent's own IMDS calls (refresh every 2 s) leave through eni0 and count as imds.
    let imds0 = in_window(&p0, IMDS, w);
    let got = u(&e0["by_service"]["imds"]["packets"]);
    eprintln!(
        "IMDS packets in window: tcpdump {imds0:?}, agent {got}; fake saw {:?}",
        imds.counts()
    );
    let rel: Vec<i64> = p0
        .iter()
        .filter(|(_, d)| *d == IMDS)
        .map(|(t, _)| (*t as i64 - w.0 as i64) / 1_000_000)
        .collect();
    eprintln!("IMDS packet times (ms from window start): {rel:?}");
    assert!(imds0.0 > 0, "no IMDS refresh inside the window");
    assert_close("imds packets on eni0", got, imds0);
    assert_eq!(u(&e1["by_service"]["imds"]["packets"]), 0);
    assert_eq!(
        u(&e0["linklocal_packets"]),
        u(&e0["by_service"]["dns"]["packets"]) + got,
        "only the VPC resolver and IMDS were sent to"
    );
    // A few dozen IMDS packets per refresh, not hundreds.
    assert!(got <= 4 * 60, "IMDS cost {got} packets in 8 s");
}

fn imds_down_and_up_loses_no_counts(tap: Tap) {
    headroom_testbed::require_or_return!(
        &format!("imds_down_and_up_{}", tap.name()),
        &tap_needs(tap)
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let macs = vec![mac_of(&bed, "eni0")];
    let mut imds = imds_in_vpc(&bed, &macs);
    let cfg = config(&bed, "imds_refresh_interval = \"1s\"\n");
    let t0 = tcpdump(&mut bed, "eni0");
    let agent = Agent::start(
        &bed,
        tap,
        &["--interface", "eni0", "--duration", "10s", "--config", &cfg],
    );
    let load = dnsperf_thread(&bed, bed::VPC_RESOLVER, 300, 8, None);
    std::thread::sleep(Duration::from_secs(2));
    imds.stop();
    std::thread::sleep(Duration::from_secs(4));
    imds.start().unwrap();
    let sent = load.join().unwrap();
    let (report, stderr) = agent.report();
    let p0 = t0.stop();
    let w = window(&report);
    let e0 = iface(&report, "eni0");
    tap.check(e0);
    eprintln!("{stderr}");
    assert_eq!(e0["eni_id"], "eni-0000aaaabbbbcccc0", "last good map kept");
    assert_eq!(report["node"]["instance_id"], "i-0123456789abcdef0");
    assert_eq!(
        stderr.matches("IMDS stopped answering").count(),
        1,
        "one warning per outage: {stderr}"
    );
    assert_eq!(stderr.matches("IMDS answers again").count(), 1, "{stderr}");
    let dns = in_window(&p0, VPC_DNS, w);
    assert_eq!(dns, (sent.sent, 0));
    assert_eq!(u(&e0["by_service"]["dns"]["packets"]), dns.0);
    // Retries during the outage (SYNs to a closed port) count too.
    let imds0 = in_window(&p0, IMDS, w);
    let got = u(&e0["by_service"]["imds"]["packets"]);
    let rel: Vec<i64> = p0
        .iter()
        .filter(|(_, d)| *d == IMDS)
        .map(|(t, _)| (*t as i64 - w.0 as i64) / 1_000_000)
        .collect();
    eprintln!("dnsperf {sent:?}; IMDS packets: tcpdump {imds0:?}, agent {got}; times (ms) {rel:?}");
    assert_close("imds packets", got, imds0);
    assert_eq!(u(&e0["kernel_drops"]), 0);
}

fn missing_mac_and_vanishing_interface_give_warnings_and_a_sane_report(tap: Tap) {
    headroom_testbed::require_or_return!(
        &format!("missing_mac_vanishing_interface_{}", tap.name()),
        &tap_needs(tap)
    );
    let mut bed = Bed::new(2).unwrap();
    bed.start_unbound().unwrap();
    // IMDS knows only eni0's MAC.
    let imds = imds_in_vpc(&bed, &[mac_of(&bed, "eni0")]);
    let t0 = tcpdump(&mut bed, "eni0");
    let agent = Agent::start(&bed, tap, &["--interface", "eni*", "--duration", "6s"]);
    let load = dnsperf_thread(&bed, bed::VPC_RESOLVER, 200, 4, None);
    std::thread::sleep(Duration::from_secs(2));
    bed.node.ip(&["link", "del", "eni1"]).unwrap();
    let sent = load.join().unwrap();
    let (report, stderr) = agent.report();
    let p0 = t0.stop();
    let w = window(&report);
    assert_eq!(
        stderr.matches("MAC is not in IMDS").count(),
        1,
        "one warning for eni1: {stderr}"
    );
    assert!(stderr.contains("Capture stopped on interface"), "{stderr}");
    let e0 = iface(&report, "eni0");
    let e1 = iface(&report, "eni1");
    tap.check(e0);
    tap.check(e1);
    assert_eq!(e0["eni_id"], "eni-0000aaaabbbbcccc0");
    assert!(e1["eni_id"].is_null() && e1["device_number"].is_null());
    assert_eq!(e1["capturing"], false);
    assert!(e1["allowance"].is_null());
    let dns = in_window(&p0, VPC_DNS, w);
    assert_eq!(dns, (sent.sent, 0));
    assert_eq!(u(&e0["by_service"]["dns"]["packets"]), dns.0);
    // One identity fetch at start (token + 16 GETs would be 2 ENIs; here 1: 3 + 1 + 6).
    assert_eq!(imds.counts().gets, 10, "{:?}", imds.counts());
}

fn without_imds_once_says_so_once_and_measures(tap: Tap) {
    headroom_testbed::require_or_return!(&format!("without_imds_{}", tap.name()), &tap_needs(tap));
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let t0 = tcpdump(&mut bed, "eni0");
    // Nothing listens at 169.254.169.254:80: every attempt is a SYN answered by a RST.
    let agent = Agent::start(&bed, tap, &["--interface", "eni0", "--duration", "5s"]);
    let load = dnsperf_thread(&bed, bed::LINKLOCAL_RESOLVER, 100, 3, None);
    let sent = load.join().unwrap();
    let (report, stderr) = agent.report();
    let p0 = t0.stop();
    let w = window(&report);
    assert_eq!(
        stderr.matches("IMDS is not reachable").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("VPC resolver unknown"), "{stderr}");
    assert!(report["node"]["instance_id"].is_null());
    let e0 = iface(&report, "eni0");
    tap.check(e0);
    assert!(e0["eni_id"].is_null());
    let dns = in_window(&p0, [169, 254, 169, 253], w);
    assert_eq!(dns, (sent.sent, 0));
    assert_eq!(u(&e0["by_service"]["dns"]["packets"]), dns.0);
    // The retries (backoff 1 s, 2 s) are link-local packets too.
    let imds0 = in_window(&p0, IMDS, w);
    let got = u(&e0["by_service"]["imds"]["packets"]);
    eprintln!("retries: tcpdump {imds0:?}, agent {got}");
    assert_close("imds retry packets", got, imds0);
    assert!(got <= 4, "backoff keeps retries few: {got}");
}

crate::each_tap!(
    two_enis_by_mac_and_the_vpc_resolver_without_flags,
    imds_down_and_up_loses_no_counts,
    missing_mac_and_vanishing_interface_give_warnings_and_a_sane_report,
    without_imds_once_says_so_once_and_measures,
);

/// The SIOCETHTOOL path against `ethtool -S` on a veth, read in the same namespace.
#[test]
fn ethtool_ioctl_equals_ethtool_dash_s_on_veth() {
    headroom_testbed::require_or_return!("ethtool_ioctl_on_veth", &needs());
    let bed = Bed::new(1).unwrap();
    let ns = bed.node.name.clone();
    let ours = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns(2) moves only this thread into the namespace the test created.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        headroom_agent::sources::ena::read_stats("eni0").unwrap()
    })
    .join()
    .unwrap();
    let out = bed
        .node
        .command("ethtool")
        .args(["-S", "eni0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let theirs: Vec<(String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1) // "NIC statistics:"
        .filter_map(|l| {
            let (k, v) = l.trim().rsplit_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    eprintln!("{} counters, first {:?}", ours.len(), ours.first());
    assert!(!ours.is_empty());
    assert!(
        ours.iter().any(|(k, v)| k == "peer_ifindex" && *v > 0),
        "{ours:?}"
    );
    assert_eq!(ours, theirs);
    assert_eq!(headroom_agent::sources::ena::allowances(&ours), None);
}

/// `ip link del` takes an interface down (the only error its packet socket is told of) and
/// unregisters it a moment later; here the two steps are a second apart, so the capture must
/// notice the interface is gone after it saw it merely down.
fn an_interface_taken_down_then_deleted_stops_its_capture(tap: Tap) {
    headroom_testbed::require_or_return!(
        &format!("down_then_deleted_{}", tap.name()),
        &tap_needs(tap)
    );
    let bed = Bed::new(2).unwrap();
    let agent = Agent::start(
        &bed,
        tap,
        &[
            "--interface",
            "eni*",
            "--duration",
            "5s",
            NO_IMDS[0],
            NO_IMDS[1],
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    bed.node.ip(&["link", "set", "eni1", "down"]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    bed.node.ip(&["link", "del", "eni1"]).unwrap();
    let (report, stderr) = agent.report();
    assert_eq!(
        stderr.matches("Capture stopped on interface").count(),
        1,
        "{stderr}"
    );
    assert_eq!(iface(&report, "eni1")["capturing"], false);
    assert_eq!(iface(&report, "eni0")["capturing"], true);
    tap.check(iface(&report, "eni0"));
}

crate::each_tap!(an_interface_taken_down_then_deleted_stops_its_capture);
