//! Which ENI is which: the instance's identity and its ENIs from IMDSv2, matched to local
//! interfaces by MAC, and the VPC resolver (primary VPC CIDR base + 2) derived from them.
//!
//! A background thread keeps the map fresh (every `refresh`, and at once when an interface with
//! an unknown MAC appears); when IMDS fails it keeps the last good map, warns once per outage and
//! retries with backoff.

pub mod imds;

use crate::interfaces::{self, Selection};
use crate::report::Report;
use headroom_service::backoff::Backoff;
use imds::{ImdsClient, ImdsError};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One ENI as IMDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniInfo {
    pub interface_id: String,
    pub device_number: u32,
    pub subnet: Option<(Ipv4Addr, u8)>,
    /// The VPC's primary IPv4 CIDR (`vpc-ipv4-cidr-block`).
    pub vpc_primary: Option<(Ipv4Addr, u8)>,
    /// Every IPv4 CIDR of the VPC (`vpc-ipv4-cidr-blocks`), primary first.
    pub vpc_cidrs: Vec<(Ipv4Addr, u8)>,
    pub local_ipv4s: Vec<Ipv4Addr>,
}

/// The instance and its ENIs by MAC (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub enis: BTreeMap<String, EniInfo>,
}

/// `a.b.c.d/n` → (address, prefix length).
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let t = text.trim();
    let (a, n) = t
        .split_once('/')
        .ok_or_else(|| format!("{:?} is not a CIDR block", short(t)))?;
    let a: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{:?} is not an IPv4 address", short(a)))?;
    let n: u8 = n
        .parse()
        .ok()
        .filter(|n| *n <= 32)
        .ok_or_else(|| format!("{:?} is not a prefix length", short(n)))?;
    Ok((a, n))
}

/// The Route 53 Resolver of a VPC: the base of its primary IPv4 CIDR plus two. Pure.
pub fn resolver_of(cidr: (Ipv4Addr, u8)) -> Option<Ipv4Addr> {
    let (a, n) = cidr;
    if n > 30 {
        return None; // no room for base + 2 (VPC CIDRs are /16 to /28)
    }
    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    Some(Ipv4Addr::from((u32::from(a) & mask) + 2))
}

/// The VPC resolver from `vpc-ipv4-cidr-block` (the primary), else the first line of
/// `vpc-ipv4-cidr-blocks`. Secondary CIDRs never give a resolver. Pure.
pub fn vpc_resolver(primary: &str, blocks: &str) -> Result<Ipv4Addr, String> {
    let cidr = match parse_cidr(primary) {
        Ok(c) => c,
        Err(_) => parse_cidr(
            blocks
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .ok_or("no VPC CIDR block")?,
        )?,
    };
    resolver_of(cidr).ok_or_else(|| format!("CIDR /{} has no base + 2", cidr.1))
}

/// `network/interfaces/macs/`: one `02:..:..:..:..:01/` per line → lower-case MACs.
pub fn parse_mac_listing(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mac = line.trim_end_matches('/').to_ascii_lowercase();
        if !is_mac(&mac) {
            return Err(format!("{:?} is not a MAC address", short(line)));
        }
        out.push(mac);
    }
    Ok(out)
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

impl EniInfo {
    /// From the text of each field. interface-id and device-number must be valid; CIDRs and
    /// addresses that do not parse are an error too (the whole ENI is then left out).
    pub fn parse(
        interface_id: &str,
        device_number: &str,
        subnet: &str,
        vpc_primary: &str,
        vpc_blocks: &str,
        local_ipv4s: &str,
    ) -> Result<EniInfo, String> {
        let id = interface_id.trim();
        if !id.starts_with("eni-") || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("interface-id {:?} is not an ENI id", short(id)));
        }
        let device_number = device_number
            .trim()
            .parse()
            .map_err(|_| format!("device-number {:?} is not a number", short(device_number)))?;
        let lines = |t: &str| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let vpc_cidrs = lines(vpc_blocks)
            .iter()
            .map(|l| parse_cidr(l))
            .collect::<Result<Vec<_>, _>>()?;
        let local_ipv4s = lines(local_ipv4s)
            .iter()
            .map(|l| {
                l.parse()
                    .map_err(|_| format!("local-ipv4s line {:?} is not an address", short(l)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EniInfo {
            interface_id: id.to_string(),
            device_number,
            subnet: Some(parse_cidr(subnet)?),
            vpc_primary: parse_cidr(vpc_primary).ok().or(vpc_cidrs.first().copied()),
            vpc_cidrs,
            local_ipv4s,
        })
    }
}

impl Identity {
    /// The VPC resolver, from the ENI with the lowest device number (all share one VPC).
    pub fn vpc_resolver(&self) -> Option<Ipv4Addr> {
        self.enis
            .values()
            .min_by_key(|e| e.device_number)
            .and_then(|e| e.vpc_primary)
            .and_then(resolver_of)
    }
}

/// Writes the node identity and each interface's ENI into a report. Pure. Interfaces whose MAC
/// IMDS does not list keep `eni_id: null`.
pub fn annotate(report: &mut Report, identity: &Identity) {
    report.node.instance_id = Some(identity.instance_id.clone());
    report.node.instance_type = Some(identity.instance_type.clone());
    report.node.availability_zone = Some(identity.availability_zone.clone());
    for i in &mut report.interfaces {
        let eni = i
            .mac
            .as_ref()
            .and_then(|m| identity.enis.get(&m.to_ascii_lowercase()));
        // A sidecar's eth0 is a veth on an EC2 node (its MAC is not the ENI's): the ENI
        // holding the pod's IP among its addresses.
        let pod_ip = report
            .node
            .pod
            .as_ref()
            .and_then(|p| p.ip.as_deref()?.parse::<Ipv4Addr>().ok());
        let eni = eni.or_else(|| {
            let ip = pod_ip?;
            identity.enis.values().find(|e| e.local_ipv4s.contains(&ip))
        });
        i.eni_id = eni.map(|e| e.interface_id.clone());
        i.device_number = eni.map(|e| e.device_number);
    }
}

/// How the ENI source runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: String,
    /// How often to refresh the map when all is well.
    pub refresh: Duration,
    /// Which local interfaces to map (a new MAC among them triggers a refresh).
    pub selection: Selection,
}

#[derive(Debug, Default)]
struct State {
    identity: Option<Identity>,
    attempted: bool,
}

/// The background IMDS poller. Dropping it stops the thread (without waiting for it).
pub struct EniSource {
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Drop for EniSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl EniSource {
    pub fn start(opts: Options) -> EniSource {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::Builder::new()
            .name("eni-imds".into())
            .spawn(move || poll_loop(opts, s, st))
            .expect("spawning a thread");
        EniSource { state, stop }
    }

    /// A source that never asks IMDS (the command is about to fail anyway).
    pub fn disabled() -> EniSource {
        let state = State {
            identity: None,
            attempted: true,
        };
        EniSource {
            state: Arc::new((Mutex::new(state), Condvar::new())),
            stop: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Waits until the first attempt ended (at most `timeout`) and returns the identity if any.
    pub fn wait_first(&self, timeout: Duration) -> Option<Identity> {
        let (m, cv) = &*self.state;
        let g = m.lock().unwrap();
        let (g, _) = cv.wait_timeout_while(g, timeout, |s| !s.attempted).unwrap();
        g.identity.clone()
    }

    /// The last good identity.
    pub fn identity(&self) -> Option<Identity> {
        self.state.0.lock().unwrap().identity.clone()
    }

    /// Fills the report's node and ENI fields from the last good identity, if any.
    pub fn annotate(&self, report: &mut Report) {
        if let Some(id) = self.identity() {
            annotate(report, &id);
        }
    }
}

/// Retry waits after failures in a row: 1 s, 2 s, 4 s … up to `cap` (at least 1 s), each
/// drawn from the upper half of that ceiling so a fleet does not retry in lockstep.
pub fn backoff(cap: Duration) -> Backoff {
    Backoff::new(Duration::from_secs(1), cap.max(Duration::from_secs(1)))
}

fn local_macs(selection: &Selection) -> BTreeMap<String, String> {
    interfaces::select(selection, &interfaces::list())
        .into_iter()
        .filter_map(|n| interfaces::mac(&n).map(|m| (m.to_ascii_lowercase(), n)))
        .collect()
}

fn poll_loop(opts: Options, state: Arc<(Mutex<State>, Condvar)>, stop: Arc<AtomicBool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::warn!(message = "Cannot start the IMDS client; ENI ids stay unknown.", %error);
            let (m, cv) = &*state;
            m.lock().unwrap().attempted = true;
            cv.notify_all();
            return;
        }
    };
    let mut client = ImdsClient::new(&opts.endpoint);
    let mut failures = 0u32;
    let mut retry = backoff(opts.refresh.min(Duration::from_secs(60)));
    let mut ever_ok = false;
    let mut next = Instant::now();
    let mut asked_for: BTreeSet<String> = BTreeSet::new();
    let mut warned_missing: BTreeSet<String> = BTreeSet::new();
    let mut last_scan = Instant::now();
    let mut scan_now = false;
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            // MACs present now are covered by this fetch; only later ones trigger another.
            asked_for.extend(local_macs(&opts.selection).into_keys());
            let result = rt.block_on(client.identity());
            let (m, cv) = &*state;
            match result {
                Ok(id) => {
                    if failures > 0 && ever_ok {
                        tracing::info!(message = "IMDS answers again.", endpoint = %opts.endpoint);
                    }
                    if !ever_ok || m.lock().unwrap().identity.as_ref() != Some(&id) {
                        tracing::info!(
                            message = "ENI map from IMDS.",
                            instance_id = %id.instance_id,
                            enis = id.enis.len(),
                            vpc_resolver = %id.vpc_resolver().map(|r| r.to_string()).unwrap_or_else(|| "-".into())
                        );
                    }
                    failures = 0;
                    retry.reset();
                    ever_ok = true;
                    m.lock().unwrap().identity = Some(id);
                    next = Instant::now() + opts.refresh;
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 {
                        warn_failure(&error, ever_ok, &opts.endpoint);
                    } else {
                        tracing::debug!(message = "IMDS still failing.", %error, failures);
                    }
                    next = Instant::now() + retry.next_delay();
                }
            }
            let mut g = m.lock().unwrap();
            g.attempted = true;
            cv.notify_all();
            drop(g);
            scan_now = true;
        }
        // Every 2 s: a local MAC IMDS has not listed → refresh now (once per MAC), else warn once.
        if scan_now || last_scan.elapsed() >= Duration::from_secs(2) {
            last_scan = Instant::now();
            scan_now = false;
            let known = state.0.lock().unwrap().identity.clone();
            if let Some(id) = known {
                for (mac, name) in local_macs(&opts.selection) {
                    if id.enis.contains_key(&mac) {
                        continue;
                    }
                    if asked_for.insert(mac.clone()) {
                        if failures == 0 {
                            next = Instant::now();
                        }
                    } else if warned_missing.insert(mac.clone()) {
                        tracing::warn!(message = "Interface's MAC is not in IMDS; its eni_id stays null.", interface = %name, %mac);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn warn_failure(error: &ImdsError, ever_ok: bool, endpoint: &str) {
    if ever_ok {
        tracing::warn!(message = "IMDS stopped answering; keeping the last ENI map and retrying with backoff.", %error);
    } else if error.unreachable() {
        tracing::warn!(
            message = "IMDS is not reachable: not on EC2, or IMDS is disabled or beyond the hop limit. eni_id stays null and the VPC resolver (base + 2) is not counted unless given with --resolver; retrying with backoff.",
            %endpoint, %error
        );
    } else {
        tracing::warn!(message = "IMDS refused the agent's requests; eni_id stays null; retrying with backoff. Check the instance's metadata options (IMDSv2, hop limit).", %error);
    }
}

impl crate::sources::Source for EniSource {
    fn name(&self) -> &'static str {
        "eni"
    }

    /// Node identity and each interface's ENI, from IMDS.
    fn fill(&mut self, _window: crate::sources::Window, report: &mut Report) {
        self.annotate(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_is_primary_base_plus_two() {
        let table: &[(&str, &str, Result<&str, ()>)] = &[
            ("10.0.0.0/16", "10.0.0.0/16\n100.64.0.0/16", Ok("10.0.0.2")),
            ("172.31.0.0/16", "172.31.0.0/16", Ok("172.31.0.2")),
            ("10.1.128.0/17", "", Ok("10.1.128.2")),
            ("192.168.7.99/24", "", Ok("192.168.7.2")), // not normalised: base first
            ("10.0.0.0/28", "", Ok("10.0.0.2")),
            // The primary is missing: the first of the list (IMDS lists the primary first).
            ("", "10.2.0.0/16\n100.64.0.0/16\n", Ok("10.2.0.2")),
            ("", "", Err(())),
            ("10.0.0.0/31", "", Err(())),
            ("10.0.0.0/33", "", Err(())),
            ("garbage", "also garbage", Err(())),
            ("10.0.0/16", "", Err(())),
        ];
        for (primary, blocks, want) in table {
            let got = vpc_resolver(primary, blocks);
            match want {
                Ok(w) => assert_eq!(
                    got.as_ref().map(|a| a.to_string()).as_deref(),
                    Ok(*w),
                    "{primary:?} {blocks:?}"
                ),
                Err(()) => assert!(got.is_err(), "{primary:?} {blocks:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn identity_resolver_ignores_secondary_cidr_and_secondary_enis() {
        let eni = |id: &str, dev: &str, primary: &str| {
            EniInfo::parse(
                id,
                dev,
                "10.0.0.0/24",
                primary,
                "10.0.0.0/16\n100.64.0.0/16",
                "10.0.0.10\n10.0.0.11\n",
            )
            .unwrap()
        };
        let id = Identity {
            instance_id: "i-0".into(),
            instance_type: "m5.large".into(),
            availability_zone: "us-east-1a".into(),
            enis: BTreeMap::from([
                (
                    "02:00:00:00:00:02".into(),
                    eni("eni-b", "1", "100.64.0.0/16"),
                ),
                ("02:00:00:00:00:01".into(), eni("eni-a", "0", "10.0.0.0/16")),
            ]),
        };
        assert_eq!(id.vpc_resolver(), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(id.enis["02:00:00:00:00:01"].local_ipv4s.len(), 2);
    }

    /// A sidecar on an EC2 node: its eth0 (a veth, MAC unknown to IMDS) is the ENI holding
    /// the pod's IP; an interface matching by MAC keeps its own ENI; no pod IP, no guess.
    #[test]
    fn sidecar_interfaces_take_the_eni_of_the_pod_ip() {
        use crate::sources::linklocal::meter::InterfaceWindow;
        let eni = |id: &str, dev: &str, ips: &str| {
            EniInfo::parse(id, dev, "10.0.0.0/24", "10.0.0.0/16", "10.0.0.0/16", ips).unwrap()
        };
        let id = Identity {
            instance_id: "i-0".into(),
            instance_type: "m5.large".into(),
            availability_zone: "us-east-1a".into(),
            enis: BTreeMap::from([
                ("02:00:00:00:00:01".into(), eni("eni-a", "0", "10.0.0.10\n")),
                (
                    "02:00:00:00:00:02".into(),
                    eni("eni-b", "1", "10.0.0.20\n10.0.0.57\n"),
                ),
            ]),
        };
        let w = |name: &str, mac: &str| InterfaceWindow {
            mac: Some(mac.into()),
            ..InterfaceWindow::capturing(name, [0, 0, 0], 0, [0, 0, 0], [0, 0, 0], 0)
        };
        let windows = [
            w("eth0", "aa:bb:cc:00:00:01"),
            w("eth1", "02:00:00:00:00:01"),
        ];
        let mut r = Report::new(crate::report::Node::default(), 0, 1, &windows);
        annotate(&mut r, &id);
        assert_eq!(r.interfaces[0].eni_id, None, "node mode: no pod IP");
        r.node.pod = Some(crate::mode::OwnPod {
            ip: Some("10.0.0.57".into()),
            ..Default::default()
        });
        annotate(&mut r, &id);
        assert_eq!(r.interfaces[0].eni_id.as_deref(), Some("eni-b"));
        assert_eq!(r.interfaces[0].device_number, Some(1));
        assert_eq!(
            r.interfaces[1].eni_id.as_deref(),
            Some("eni-a"),
            "by MAC first"
        );
    }

    #[test]
    fn mac_listings() {
        assert_eq!(
            parse_mac_listing("02:AB:00:00:00:01/\n02:ab:00:00:00:02/").unwrap(),
            ["02:ab:00:00:00:01", "02:ab:00:00:00:02"]
        );
        assert_eq!(parse_mac_listing("").unwrap(), Vec::<String>::new());
        assert!(parse_mac_listing("{\"macs\": []}").is_err());
        assert!(parse_mac_listing("02:ab:00:00:00/").is_err());
    }

    #[test]
    fn malformed_eni_fields_are_errors_not_panics() {
        let ok = (
            "eni-0abc",
            "0",
            "10.0.0.0/24",
            "10.0.0.0/16",
            "10.0.0.0/16",
            "10.0.0.10",
        );
        assert!(EniInfo::parse(ok.0, ok.1, ok.2, ok.3, ok.4, ok.5).is_ok());
        assert!(EniInfo::parse("{\"id\":1}", ok.1, ok.2, ok.3, ok.4, ok.5).is_err());
        assert!(EniInfo::parse(ok.0, "zero", ok.2, ok.3, ok.4, ok.5).is_err());
        assert!(EniInfo::parse(ok.0, ok.1, "nope", ok.3, ok.4, ok.5).is_err());
        assert!(EniInfo::parse(ok.0, ok.1, ok.2, ok.3, "10.0.0.0/16\n[1,2]", ok.5).is_err());
        assert!(EniInfo::parse(ok.0, ok.1, ok.2, ok.3, ok.4, "10.0.0.300").is_err());
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let cap = Duration::from_secs(60);
        let mut b = backoff(cap);
        let got: Vec<u64> = (1..=9)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
                c.as_secs()
            })
            .collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let mut b = backoff(Duration::from_millis(10));
        b.next_delay();
        b.next_delay();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(a in ".*", b in ".*", c in ".*") {
            let _ = parse_cidr(&a);
            let _ = vpc_resolver(&a, &b);
            let _ = parse_mac_listing(&c);
            let _ = EniInfo::parse(&a, &b, &c, &a, &b, &c);
        }
    }
}
