//! The listeners section of the table (`once`, `watch`).

use crate::sources::listeners::ListenerReport;
use std::net::SocketAddr;

/// A human table of listeners.
pub fn table(listeners: &[ListenerReport]) -> String {
    let mut out = format!(
        "{:<22} {:<14} {:<24} {:<12} {:>7} {:>6} {:>5} {:>6} {:>7} {:>6} {:>7} {:>9} {:>8}\n",
        "POD",
        "CONTAINER",
        "LISTEN",
        "PROCESS",
        "WORKERS",
        "BUSY",
        "MAX",
        "QUEUE",
        "BACKLOG",
        "UTIL",
        "SAT/S",
        "THROTTLED",
        "CONN/S"
    );
    for l in listeners {
        let addr = match l.port {
            Some(port) => SocketAddr::new(
                l.address
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                port,
            )
            .to_string(),
            None => l.address.clone(),
        };
        out += &format!(
            "{:<22} {:<14} {:<24} {:<12} {:>7} {:>6.2} {:>5} {:>6} {:>7} {:>5.0}% {:>7.1} {:>9} {:>8}\n",
            l.pod
                .as_ref()
                .map(|p| p.name.clone().unwrap_or_else(|| p.uid.clone()))
                .unwrap_or_else(|| "-".into()),
            l.container
                .as_deref()
                .map(|c| &c[..c.len().min(12)])
                .unwrap_or("-"),
            addr,
            l.process,
            l.workers,
            l.busy_mean,
            l.busy_max,
            l.queue_max,
            l.backlog,
            l.utilization * 100.0,
            l.saturated_seconds,
            l.cpu_throttled_seconds
                .map(|s| format!("{s:.3}s"))
                .unwrap_or_else(|| "-".into()),
            // `~`: connections are not requests here (a front keeps them open).
            l.accepts_per_second
                .map(|r| format!(
                    "{r:.1}{}",
                    if l.requests_are_connections { "" } else { "~" }
                ))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if listeners.is_empty() {
        out += "(no listeners measured)\n";
    }
    out
}
