//! `headroom-bench-sizing [NODES] [PODS_PER_NODE] [PODS_PER_WORKLOAD] [HOURS]`: the collector's
//! memory for RequestsRightSizing's history. Feeds a cluster's `Sizing` (the structure the
//! fleet keeps) one pod-use window per pod and hour for HOURS hours (the history keeps per
//! container and hour the highest figures, so more windows an hour add nothing), one container
//! per pod, PODS_PER_WORKLOAD pods per Deployment, and the co-burst of each workload; prints
//! the history's own bytes, the process's RSS growth (the maps and keys included) and both per
//! pod-hour, and how long the summary RequestsRightSizing reads takes to make.

#[allow(dead_code)] // The flags and status_kib are the other benches'.
mod common;

use common::rss_kib;
use headroom_collector::fleet::Sizing;
use headroom_signals::{attr, metric};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: u64| -> anyhow::Result<u64> {
        Ok(std::env::args().nth(i).map_or(Ok(d), |a| a.parse())?)
    };
    let (nodes, per_node, per_workload, hours) =
        (arg(1, 5000)?, arg(2, 30)?, arg(3, 10)?, arg(4, 24)?);
    let pods = nodes * per_node;
    let h = 3_600_000_000_000u64;
    let before = rss_kib();
    let mut s = Sizing::default();
    let names = [
        metric::POD_CPU.otlp,
        metric::POD_CPU_BUSIEST_SECOND.otlp,
        metric::POD_MEMORY_PEAK.otlp,
        metric::POD_CPU_REQUEST.otlp,
        metric::POD_MEMORY_REQUEST.otlp,
    ];
    let t = Instant::now();
    for hour in 0..hours {
        let end = (500_000 + hour) * h + 1;
        for p in 0..pods {
            let node = format!("node-{}", p / per_node);
            let wl = format!("w{}", p / per_workload);
            let a: Vec<(String, String)> = [
                (attr::NAMESPACE, "team"),
                (attr::WORKLOAD_KIND, "Deployment"),
                (attr::WORKLOAD, wl.as_str()),
                (attr::CONTAINER, "app"),
                (attr::POD, "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let v = (p % 97) as f64 / 100.0 + hour as f64 / 1000.0;
            for n in names {
                s.take(&node, n, &a, v, end, hours as u32);
            }
            if p % per_workload == 0 {
                s.take(
                    &node,
                    metric::WORKLOAD_PODS.otlp,
                    &a,
                    per_workload as f64,
                    end,
                    hours as u32,
                );
                s.take(
                    &node,
                    metric::WORKLOAD_PODS_ABOVE_REQUEST_P95.otlp,
                    &a,
                    2.0,
                    end,
                    hours as u32,
                );
            }
        }
    }
    let fed = t.elapsed();
    let grown = rss_kib().saturating_sub(before);
    let t = Instant::now();
    let summary = s.summary();
    let summarized = t.elapsed();
    let bytes = s.history_bytes();
    let pod_hours = (pods * hours) as f64;
    println!(
        "{nodes} nodes x {per_node} pods = {pods} pods, {} workloads, {hours} h: history {:.1} MiB ({:.2} B per pod-hour); RSS +{:.1} MiB ({:.1} B per pod-hour); fed in {:.1} s; summary of {} workloads in {:.0} ms",
        s.workloads(),
        bytes as f64 / 1048576.0,
        bytes as f64 / pod_hours,
        grown as f64 / 1024.0,
        grown as f64 * 1024.0 / pod_hours,
        fed.as_secs_f64(),
        summary.len(),
        summarized.as_secs_f64() * 1e3,
    );
    Ok(())
}
