//! Limits that keep the fleet model's memory bounded, and the spans it keeps.

use std::time::Duration;

/// How much window history each interface keeps (the sparkline's span).
pub const HISTORY: Duration = Duration::from_secs(3600);
/// At most this many windows per interface or listener (one-second windows for an hour).
pub const MAX_WINDOWS: usize = 3600;
/// Points stamped further ahead of the collector's clock than this are refused: one would
/// become an interface's `latest` (or a series' value) until the clock caught up, hiding the
/// real windows. Agents' clocks are NTP-synced; five minutes is a broken clock, not skew.
pub const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);

/// Limits that keep the fleet model's memory bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A node that sent nothing for this long leaves the fleet (and a listener or probe
    /// without data for this long leaves its node).
    pub node_expiry: Duration,
    pub max_series_per_metric: usize,
    pub max_metrics_per_node: usize,
    pub max_interfaces_per_node: usize,
    pub max_nodes: usize,
    pub max_listeners_per_node: usize,
    pub max_probes_per_node: usize,
    /// Most nodes one request may add to the fleet (an agent sends one; a gateway a batch).
    pub max_new_nodes_per_request: usize,
    /// Most latest-value series (other senders' metrics) over all nodes together.
    pub max_series: usize,
    /// History the workload and probe figures cover (at most [`HISTORY`]).
    pub workload_history: Duration,
    /// History of measured pod use kept for RequestsRightSizing (at most
    /// [`MAX_SIZING_HISTORY`]).
    pub sizing_history: Duration,
}

/// The longest `sizing_history` accepted: a week of hours.
pub const MAX_SIZING_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            node_expiry: Duration::from_secs(15 * 60),
            max_series_per_metric: 1000,
            max_metrics_per_node: 500,
            max_interfaces_per_node: 64,
            max_nodes: 10_000,
            max_listeners_per_node: 512,
            max_probes_per_node: 512,
            max_new_nodes_per_request: 100,
            max_series: 200_000,
            workload_history: Duration::from_secs(15 * 60),
            sizing_history: Duration::from_secs(24 * 3600),
        }
    }
}

impl Limits {
    /// Where the workload and probe figures of a snapshot at `now_ns` begin.
    pub fn history_start(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.workload_history.as_nanos() as u64)
    }
}
