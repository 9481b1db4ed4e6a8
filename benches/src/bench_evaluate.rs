//! `headroom-bench-evaluate [--agents 5000] [--rounds 360] [--interval 10] [--repeat 5]`:
//! what one findings evaluation costs once the fleet holds its full history, without waiting
//! an hour for it. Feeds the collector's `Fleet` in-process (no HTTP) with `--rounds` report
//! windows of `--agents` simulated agents ([`fleet_sim`], the same reports the collector bench
//! sends, their window ends staggered over the interval as real agents' are), on a simulated
//! clock, expiring every interval as the collector does; then times, `--repeat` times, each
//! part of an evaluation as the findings loop runs it (`LeanCache::replace`: the view under
//! the lock and the lean snapshot, in wall time and the process's CPU (the snapshot is
//! spread over the CPUs at fleet size); the rules; the `/metrics` text; freeing the snapshot it
//! replaced, which the loop does after the findings), and making the workloads,
//! which the collector does on a thread of its own once they are slow (the first refresh
//! makes them itself). 360 rounds at 10 s fill the interfaces' hour; the listeners' 15
//! minutes fill after 90.

#[allow(dead_code)] // text_flag is the other benches'.
mod common;
#[allow(dead_code)] // The HTTP body and expected findings are the collector bench's.
mod fleet_sim;
use common::flag;

use headroom_collector::fleet::{Fleet, LeanCache, Limits};
use headroom_collector::kube::KubeView;
use headroom_collector::rules::{self, Input, Thresholds};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The collector's allocator, so the costs are the collector's (`--features system-alloc`:
/// glibc's, for `heaptrack`, which sees only malloc).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_mib() -> f64 {
    common::rss_kib() as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    use headroom_agent::export::otlp::encode;
    let args: Vec<String> = std::env::args().collect();
    let agents = flag(&args, "--agents", 5000) as usize;
    let rounds = flag(&args, "--rounds", 360);
    let interval = flag(&args, "--interval", 10) * 1_000_000_000;
    let repeat = flag(&args, "--repeat", 5);
    let (listeners, probes) = (5, 4);
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - (rounds + 1) * interval;
    let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
    let mut fleet = Fleet::new(Limits::default());
    let filled = Instant::now();
    let mut applied = Duration::ZERO;
    // The slowest applies (under the fleet's lock in the collector: every other request waits).
    let mut slowest: Vec<(Duration, u64)> = Vec::new();
    for round in 0..rounds {
        for agent in 0..agents {
            let end = start_ns + (round + 1) * interval + interval * agent as u64 / agents as u64;
            let r = fleet_sim::report(agent, round, end, start_ns, listeners, probes);
            let req = encode::request(&r, encode::resource(&r, &[]), start_ns);
            let t = Instant::now();
            fleet.apply_metrics(&req, at(end));
            let took = t.elapsed();
            applied += took;
            if slowest.len() < 5 || took > slowest[4].0 {
                slowest.push((took, round));
                slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
                slowest.truncate(5);
            }
        }
        fleet.expire(at(start_ns + (round + 2) * interval));
        if round % 30 == 29 {
            eprintln!(
                "round {}/{rounds}: {:.0} s, RSS {:.0} MiB",
                round + 1,
                filled.elapsed().as_secs_f64(),
                rss_mib()
            );
        }
    }
    let expire_took = {
        let t = Instant::now();
        fleet.expire(at(start_ns + (rounds + 1) * interval));
        t.elapsed()
    };
    let each: Vec<String> = slowest
        .iter()
        .map(|(d, round)| format!("{:.1} ms (round {round})", ms(*d)))
        .collect();
    println!(
        "slowest applies: {}; one expiry pass: {:.1} ms",
        each.join(", "),
        ms(expire_took)
    );
    let now = at(start_ns + (rounds + 1) * interval);
    println!(
        "{agents} agents × {rounds} rounds of {} s: filled in {:.0} s ({:.0} µs per apply), RSS {:.0} MiB",
        interval / 1_000_000_000,
        filled.elapsed().as_secs_f64(),
        applied.as_secs_f64() * 1e6 / (agents as f64 * rounds as f64),
        rss_mib()
    );
    let hwm_fill = common::status_kib(std::process::id(), "VmHWM:") as f64 / 1024.0;
    let rules = rules::all(&Thresholds::default());
    let kube = KubeView::default();
    let fleet = Arc::new(Mutex::new(fleet));
    let cache = LeanCache::new(fleet.clone(), Duration::from_secs(20));
    println!("| making workloads ms | refresh (view + lean snapshot) ms | its CPU (all threads) ms | rules ms | /metrics text ms | findings | freeing the replaced snapshot ms |");
    println!("|---|---|---|---|---|---|---|");
    for i in 0..=repeat {
        let t = Instant::now();
        let w = fleet.lock().unwrap().view().make_workloads(now);
        let v = t.elapsed();
        drop(w);
        let (t, cpu) = (
            Instant::now(),
            common::cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        );
        let (lean, replaced) = cache.replace(now);
        let snap = &lean.snapshot;
        let s = t.elapsed();
        let s_cpu = (common::cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu) as f64 / 1e6;
        let t = Instant::now();
        let input = Input {
            fleet: snap,
            kube: &kube,
        };
        let found: usize = rules.iter().map(|r| r.evaluate(&input, now).len()).sum();
        let r = t.elapsed();
        // As the findings loop does: the replaced snapshot freed after the rules, before the
        // text is made.
        let t = Instant::now();
        drop(replaced);
        let f = t.elapsed();
        let t = Instant::now();
        let text = headroom_collector::metrics_text(snap);
        let m = t.elapsed();
        println!(
            "| {:.1} | {:.1}{} | {s_cpu:.1} | {:.1} | {:.1} ({} KiB) | {found} | {:.1} |",
            ms(v),
            ms(s),
            if i == 0 { " (makes the workloads)" } else { "" },
            ms(r),
            ms(m),
            text.len() / 1024,
            ms(f)
        );
    }
    println!(
        "RSS after the evaluations {:.0} MiB, peak (VmHWM) after the fill {hwm_fill:.0} MiB, after the evaluations {:.0} MiB",
        rss_mib(),
        common::status_kib(std::process::id(), "VmHWM:") as f64 / 1024.0
    );
}
