//! The simulated agents of `headroom-bench-collector`: each agent's report window built as a
//! `headroom_agent::report::Report` and encoded by the agent's own OTLP encoder, so the bench
//! sends exactly what agents send (names, attributes, gauges from the window's start,
//! cumulative sums from the agent's start, the probe histogram).
//!
//! The figures are calm with a few hot spots, as a real fleet is, so the findings loop works
//! on a realistic load rather than on a finding per probe:
//! - link-local peaks of 30–229 packets/s, but on [`HOT_DNS_EVERY`]th node eth0 runs at
//!   850–999/s (above DNSThrottleRisk's default warning share of 0.8 of 1024/s);
//! - probes answer in 10–89 ms (1 s timeout), but probe 0 of every [`SLOW_PROBE_EVERY`]th
//!   node has a p99 of 0.6–0.9 s, and of every [`TIMEOUT_PROBE_EVERY`]th node times out every
//!   third window and is predicted out of its Service every sixth;
//! - listeners keep 0–1.5 of 4 workers busy, but the pods of [`SATURATED`] Deployments keep
//!   3.6–4 busy with a queue and saturated seconds rising.

use headroom_agent::pod::Workload;
use headroom_agent::report::{Node, Report};
use headroom_agent::sources::dns::tracker::{
    DnsFigures, DnsTotals, LatencyMs as DnsLatency, TopName, TopSource,
};
use headroom_agent::sources::linklocal::meter::InterfaceWindow;
use headroom_agent::sources::linklocal::series::Figures;
use headroom_agent::sources::listeners::model::Model;
use headroom_agent::sources::listeners::{AcceptsScope, ListenerReport, PodRef as ListenerPod};
use headroom_agent::sources::probes::spec::Kind;
use headroom_agent::sources::probes::stats::{LatencyMs, Outcome, BUCKETS};
use headroom_agent::sources::probes::{ProbeReport, ProbeTotals};

/// One node in this many has an interface near the link-local limit.
pub const HOT_DNS_EVERY: usize = 64;
/// One node in this many has a slow readiness probe (p99 past half its timeout).
pub const SLOW_PROBE_EVERY: usize = 100;
/// One node in this many has a probe that times out (and whose pod the kubelet removes).
pub const TIMEOUT_PROBE_EVERY: usize = 500;
/// Deployments (of the 50) whose pods have every worker busy.
pub const SATURATED: [usize; 2] = [7, 23];
/// Deployments the listeners and probes belong to.
const DEPLOYMENTS: usize = 50;
/// The window length the figures are per (the bench's interval may differ; the figures are
/// counts per window, so they stay plausible).
const WINDOW_S: u64 = 10;

/// A small deterministic hash in 0..m of (agent, round, salt): figures that vary from node to
/// node and window to window without a random number generator.
fn jitter(agent: usize, round: u64, salt: u64, m: u64) -> u64 {
    let mut x = (agent as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(round.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(salt.wrapping_mul(0x94d0_49bb_1331_11eb));
    x ^= x >> 31;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    x % m.max(1)
}

fn deployment(agent: usize, k: usize, listeners: usize) -> usize {
    (agent * listeners + k) % DEPLOYMENTS
}

fn dns(agent: usize, round: u64, peak: u64) -> (DnsFigures, DnsTotals) {
    // About three queries per packet-per-second of peak over a window, a third of them wasted
    // on search suffixes (NXDOMAIN).
    let queries = peak * 3;
    let nx = queries / 3;
    let top_qnames = (0..5)
        .map(|q| TopName {
            qname: format!(
                "svc-{:02}.bench.svc.cluster.local",
                (agent + q) % DEPLOYMENTS
            ),
            queries: queries / (2 + q as u64),
        })
        .collect();
    let top_sources = (0..5)
        .map(|s| {
            let d = (agent * 5 + s) % DEPLOYMENTS;
            TopSource {
                source: format!("10.{}.{}.{}", agent / 250 % 250, agent % 250, 10 + s),
                pod: Some(format!("bench/svc-{d:02}-{agent:05}-{s}")),
                workload: Some(Workload {
                    kind: "Deployment".into(),
                    name: format!("svc-{d:02}"),
                }),
                queries: queries / (2 + s as u64),
                pps: (queries / (2 + s as u64)) as f64 / WINDOW_S as f64,
                search_expansion_packets: nx / (2 + s as u64),
                ndots2_savings_pps: 0.0,
                fqdn_savings_pps: 0.0,
                cacheable_queries: queries / (2 + s as u64) / 2,
                cacheable_share: 0.5,
                cache_savings_pps: (queries / (2 + s as u64) / 2) as f64 / WINDOW_S as f64,
            }
        })
        .collect();
    let figures = DnsFigures {
        queries,
        answered: queries,
        unanswered: 0,
        pending: 0,
        rcodes: [
            ("NOERROR".to_string(), queries - nx),
            ("NXDOMAIN".into(), nx),
        ]
        .into(),
        latency_ms: DnsLatency {
            p50: 0.6 + jitter(agent, round, 11, 5) as f64 / 10.0,
            p99: 2.0 + jitter(agent, round, 12, 30) as f64 / 10.0,
        },
        search_expansion_packets: nx,
        search_expansion_share: nx as f64 / queries.max(1) as f64,
        ndots2_savings_pps: nx as f64 / WINDOW_S as f64,
        fqdn_savings_pps: nx as f64 / WINDOW_S as f64,
        cacheable_queries: queries / 2,
        cacheable_share: 0.5,
        cache_savings_pps: (queries / 2) as f64 / WINDOW_S as f64,
        cache_savings_peak_pps: (queries / 2) as f64 / WINDOW_S as f64 * 1.5,
        cache_table_evictions: 0,
        top_qnames,
        top_sources,
    };
    // Totals since the agent's start: round + 1 windows of about this size.
    let totals = DnsTotals {
        queries: queries * (round + 1),
        responses: [
            ("NOERROR".to_string(), (queries - nx) * (round + 1)),
            ("NXDOMAIN".into(), nx * (round + 1)),
        ]
        .into(),
        unanswered: 0,
        search_expansion: nx * (round + 1),
        cacheable: queries / 2 * (round + 1),
        cache_evictions: 0,
    };
    (figures, totals)
}

fn interfaces(agent: usize, round: u64) -> Vec<InterfaceWindow> {
    ["eth0", "eth1"]
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let hot = k == 0 && agent.is_multiple_of(HOT_DNS_EVERY);
            let peak = if hot {
                850 + jitter(agent, round, 1, 150)
            } else {
                30 + jitter(agent, round, 2 + k as u64, 200)
            };
            // DNS is most of link-local traffic; IMDS and NTP a trickle.
            let dns_peak = peak * 9 / 10;
            let per_window = [peak * WINDOW_S / 3, 10, 5];
            let (dns, dns_totals) = if k == 0 {
                let (f, t) = dns(agent, round, peak);
                (Some(f), t)
            } else {
                (None, DnsTotals::default())
            };
            InterfaceWindow {
                name: name.to_string(),
                mac: Some(format!(
                    "02:00:{:02x}:{:02x}:00:{k:02x}",
                    agent >> 8 & 0xff,
                    agent & 0xff
                )),
                figures: Figures {
                    packets: per_window,
                    peak,
                    peak_by_service: [dns_peak, 2, 1],
                },
                kernel_drops: 0,
                packets_total: per_window.map(|p| p * (round + 1)),
                drops_total: 0,
                capturing: true,
                tap: Some("ebpf"),
                dns,
                dns_totals,
            }
        })
        .collect()
}

fn listener(agent: usize, round: u64, k: usize, listeners: usize) -> ListenerReport {
    let (kind, workload, pod, saturated) = if k == 0 {
        (
            "DaemonSet",
            "edge-proxy".to_string(),
            format!("edge-proxy-{agent:05}"),
            false,
        )
    } else {
        let d = deployment(agent, k, listeners);
        let pod = format!("svc-{d:02}-{agent:05}-{k}");
        (
            "Deployment",
            format!("svc-{d:02}"),
            pod,
            SATURATED.contains(&d),
        )
    };
    let workers = 4;
    let (busy_mean, busy_max, queue_max, saturated_now) = if saturated {
        let busy = 3.6 + jitter(agent, round, 20 + k as u64, 5) as f64 / 10.0;
        (
            busy,
            4,
            1 + jitter(agent, round, 30 + k as u64, 5) as u32,
            3.0,
        )
    } else {
        let busy = jitter(agent, round, 20 + k as u64, 16) as f64 / 10.0;
        (busy, (busy.ceil() as u32 + 1).min(3), 0, 0.0)
    };
    ListenerReport {
        pod: Some(ListenerPod {
            namespace: Some("bench".into()),
            name: Some(pod),
            uid: format!("00000000-0000-0000-{agent:04x}-{k:012x}"),
        }),
        container: Some("app".into()),
        address: "0.0.0.0".into(),
        port: Some(8000),
        process: "gunicorn".into(),
        workers,
        threads: 1,
        threads_known: true,
        capacity: workers,
        model: Model::Prefork,
        busy_mean,
        busy_max,
        connections_mean: busy_mean,
        connections_max: busy_max,
        connections_kept_max: 0,
        // 50 ms per request: Little's law from the busy workers.
        accepts_per_second: Some(busy_mean * 20.0),
        accepts_per_second_max: Some(busy_mean * 26.0),
        accepts_scope: AcceptsScope::Listener,
        requests_are_connections: true,
        queue_max,
        backlog: 128,
        utilization: busy_mean / f64::from(workers),
        saturated_seconds: saturated_now,
        cpu_periods: None,
        cpu_throttled_periods: None,
        cpu_throttled_seconds: None,
        samples: WINDOW_S * 5,
        netns: 4_026_532_000 + k as u64,
        worker_pids: (0..workers as i32).map(|w| 1000 + w).collect(),
        busy_source: Default::default(),
        workload: Some(Workload {
            kind: kind.into(),
            name: workload,
        }),
        saturated_seconds_total: saturated_now * (round + 1) as f64,
    }
}

fn probe(agent: usize, round: u64, k: usize, start_ns: u64) -> ProbeReport {
    let d = (agent + k) % DEPLOYMENTS;
    let slow = k == 0 && agent % SLOW_PROBE_EVERY == 1;
    let failing = k == 0 && agent % TIMEOUT_PROBE_EVERY == 2;
    // One attempt per window (period 10 s); the failing probe times out every third window.
    let timed_out_now = failing && round % 3 == 2;
    let seconds = if timed_out_now {
        1.0
    } else if slow {
        0.6 + jitter(agent, round, 40, 30) as f64 / 100.0
    } else {
        0.010 + jitter(agent, round, 41, 80) as f64 / 1000.0
    };
    let outcome = if timed_out_now {
        Outcome::Timeout
    } else if slow {
        Outcome::Slow
    } else {
        Outcome::Ok
    };
    // Totals since the agent's start: every earlier window's attempt as this one's kind.
    let mut totals = ProbeTotals {
        since_ns: start_ns,
        ..Default::default()
    };
    for r in 0..=round {
        let (s, o) = if failing && r % 3 == 2 {
            (1.0, Outcome::Timeout)
        } else if slow {
            (0.75, Outcome::Slow)
        } else {
            (0.05, Outcome::Ok)
        };
        // As ProbeTotals::add (crate-private in the agent) counts an attempt.
        let i = Outcome::ALL.iter().position(|x| *x == o).unwrap_or(3);
        totals.by_outcome[i] += 1;
        totals.buckets[BUCKETS
            .iter()
            .position(|le| s <= *le)
            .unwrap_or(BUCKETS.len())] += 1;
        totals.sum += s;
    }
    totals.removals = if failing { (round + 1) / 6 } else { 0 };
    let ms = seconds * 1000.0;
    ProbeReport {
        pod: headroom_agent::pod::PodRef {
            namespace: "bench".into(),
            name: format!("svc-{d:02}-{agent:05}-{k}"),
            uid: format!("00000000-0000-0001-{agent:04x}-{k:012x}"),
        },
        container: "app".into(),
        kind: Kind::Readiness,
        target: "http://10.0.0.1:8000/healthz".into(),
        timeout_seconds: 1,
        period_seconds: 10,
        failure_threshold: 3,
        attempts: 1,
        ok: u64::from(outcome == Outcome::Ok),
        slow: u64::from(outcome == Outcome::Slow),
        timeouts: u64::from(outcome == Outcome::Timeout),
        errors: 0,
        latency_ms: Some(LatencyMs {
            p50: ms,
            p99: ms,
            max: ms,
        }),
        predicted_removals: u32::from(failing && round % 6 == 5),
        headroom: Some(1.0 / seconds),
        reason: None,
        last_error: timed_out_now.then(|| "timeout after 1s".into()),
        kubelet: None,
        workload: Some(Workload {
            kind: "Deployment".into(),
            name: format!("svc-{d:02}"),
        }),
        samples: vec![(seconds, outcome)],
        not_ok: Vec::new(),
        not_ok_dropped: 0,
        totals,
    }
}

/// Agent `agent`'s `round`th report window, ending at `now` (ns), as the agent encodes it:
/// two interfaces (DNS on eth0), `listeners` listeners (one pod of a DaemonSet on every node,
/// the rest pods of the 50 Deployments) and `probes` readiness probes.
pub fn report(
    agent: usize,
    round: u64,
    now: u64,
    bench_start_ns: u64,
    listeners: usize,
    probes: usize,
) -> Report {
    let node = Node {
        name: format!("node-{agent:05}"),
        instance_id: Some(format!("i-{agent:017x}")),
        instance_type: Some("m6i.large".into()),
        availability_zone: Some(["eu-west-1a", "eu-west-1b", "eu-west-1c"][agent % 3].into()),
        ..Node::default()
    };
    let start = now - WINDOW_S * 1_000_000_000;
    let mut r = Report::new(node, start, now, &interfaces(agent, round));
    for (k, i) in r.interfaces.iter_mut().enumerate() {
        i.eni_id = Some(format!("eni-{agent:08x}{k:09x}"));
        i.device_number = Some(k as u32);
    }
    r.listeners = (0..listeners)
        .map(|k| listener(agent, round, k, listeners))
        .collect();
    r.probes = (0..probes)
        .map(|k| probe(agent, round, k, bench_start_ns))
        .collect();
    r
}

/// The window as OTLP/protobuf bytes, from the agent's encoder (counters from `bench_start_ns`,
/// the agent's start).
pub fn body(
    agent: usize,
    round: u64,
    now: u64,
    bench_start_ns: u64,
    listeners: usize,
    probes: usize,
) -> Vec<u8> {
    use headroom_agent::export::otlp::encode;
    use prost::Message;
    let r = report(agent, round, now, bench_start_ns, listeners, probes);
    encode::request(&r, encode::resource(&r, &[]), bench_start_ns).encode_to_vec()
}

/// The findings the rules should hold once the fleet has filled: (rule, how many), for the
/// bench's report to compare against `/api/v1/findings`.
pub fn expected(agents: usize, probes: usize) -> Vec<(&'static str, usize)> {
    let count = |every: usize, rem: usize| (0..agents).filter(|a| a % every == rem).count();
    let mut out = vec![("DNSThrottleRisk", count(HOT_DNS_EVERY, 0))];
    if probes > 0 {
        out.push((
            "ProbeTimeoutRisk",
            count(SLOW_PROBE_EVERY, 1) + count(TIMEOUT_PROBE_EVERY, 2),
        ));
    }
    out
}
