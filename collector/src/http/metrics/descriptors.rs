//! Every family the collector's own `/metrics` shows (`headroom_fleet_*` from the fleet
//! snapshot, `headroom_collector_*` about the collector itself), each declared once: name,
//! kind, unit and help live here, the encoders only fill in values. The same
//! [`headroom_signals::Metric`] shape as the agent's metrics; `otlp` is empty since the
//! collector exports no OTLP of its own.

use headroom_signals::{Kind, Metric};
use prometheus_client::registry::Registry;

/// Registers one family under its descriptor's name and help.
pub fn register(r: &mut Registry, d: &Metric, family: impl prometheus_client::registry::Metric) {
    r.register(d.prom, d.help, family);
}

const fn family(prom: &'static str, kind: Kind, unit: &'static str, help: &'static str) -> Metric {
    Metric {
        prom,
        otlp: "",
        unit,
        kind,
        help,
    }
}

pub const FLEET_NODES: Metric = family(
    "headroom_fleet_nodes",
    Kind::Gauge,
    "{node}",
    "Nodes that sent telemetry within node_expiry",
);
pub const LINKLOCAL_PPS_PEAK: Metric = family(
    "headroom_fleet_linklocal_pps_peak",
    Kind::Gauge,
    "{packet}/s",
    "Highest link-local packets in any one second of the interface's latest report window",
);
pub const LINKLOCAL_UTILIZATION: Metric = family(
    "headroom_fleet_linklocal_utilization_ratio",
    Kind::Gauge,
    "1",
    "Latest window's peak packets per second over the link-local limit (1024/s)",
);
pub const LINKLOCAL_PPS_PEAK_LAST_HOUR: Metric = family(
    "headroom_fleet_linklocal_pps_peak_last_hour",
    Kind::Gauge,
    "{packet}/s",
    "Highest one-second link-local packet count of the interface over the last hour",
);
pub const ENA_ALLOWANCE_EXCEEDED: Metric = family(
    "headroom_fleet_ena_allowance_exceeded",
    Kind::Gauge,
    "{packet}",
    "Packets the ENA driver counted as dropped for an allowance in the interface's latest window (any rise: EC2 is dropping now)",
);
pub const DNS_UNANSWERED: Metric = family(
    "headroom_fleet_dns_unanswered",
    Kind::Gauge,
    "{query}",
    "DNS queries without a reply in the interface's latest window",
);
pub const WORKLOAD_BUSY: Metric = family(
    "headroom_fleet_workload_busy",
    Kind::Gauge,
    "{worker}",
    "Busy workers summed over the workload's pods, latest",
);
pub const WORKLOAD_BUSY_MEAN: Metric = family(
    "headroom_fleet_workload_busy_mean",
    Kind::Gauge,
    "{worker}",
    "Mean of the workload's summed busy workers over workload_history",
);
pub const WORKLOAD_BUSY_P95: Metric = family(
    "headroom_fleet_workload_busy_p95",
    Kind::Gauge,
    "{worker}",
    "95th percentile (nearest rank) of the workload's summed busy workers over workload_history",
);
pub const WORKLOAD_BUSY_MAX: Metric = family(
    "headroom_fleet_workload_busy_max",
    Kind::Gauge,
    "{worker}",
    "Highest summed busy workers of the workload over workload_history",
);
pub const WORKLOAD_REQUESTS: Metric = family(
    "headroom_fleet_workload_requests_per_second",
    Kind::Gauge,
    "{request}/s",
    "Requests per second (accepted TCP connections) summed over the workload's pods, latest; absent where no agent sends the figure",
);
pub const WORKLOAD_REQUESTS_MEAN: Metric = family(
    "headroom_fleet_workload_requests_per_second_mean",
    Kind::Gauge,
    "{request}/s",
    "Mean of the workload's summed requests per second over workload_history",
);
pub const WORKLOAD_REQUESTS_P95: Metric = family(
    "headroom_fleet_workload_requests_per_second_p95",
    Kind::Gauge,
    "{request}/s",
    "95th percentile (nearest rank) of the workload's summed requests per second over workload_history",
);
pub const WORKLOAD_REQUESTS_MAX: Metric = family(
    "headroom_fleet_workload_requests_per_second_max",
    Kind::Gauge,
    "{request}/s",
    "Highest summed requests per second of the workload over workload_history",
);
pub const WORKLOAD_WORKERS: Metric = family(
    "headroom_fleet_workload_workers",
    Kind::Gauge,
    "{worker}",
    "Worker processes of the workload: workers per pod times pods",
);
pub const WORKLOAD_CAPACITY: Metric = family(
    "headroom_fleet_workload_capacity",
    Kind::Gauge,
    "{request}",
    "Requests the workload serves at once: workers times threads per worker, times pods",
);
pub const WORKLOAD_PODS: Metric = family(
    "headroom_fleet_workload_pods",
    Kind::Gauge,
    "{pod}",
    "Pods of the workload with a listener reporting",
);
pub const WORKLOAD_QUEUE_MAX: Metric = family(
    "headroom_fleet_workload_queue_max",
    Kind::Gauge,
    "{connection}",
    "Deepest accept queue of any of the workload's pods over workload_history",
);
pub const WORKLOAD_SATURATED_SECONDS: Metric = family(
    "headroom_fleet_workload_saturated_seconds",
    Kind::Gauge,
    "s",
    "Seconds the workload's listeners had every worker busy, summed, over workload_history",
);
pub const WORKLOAD_HISTORY_SECONDS: Metric = family(
    "headroom_fleet_workload_history_seconds",
    Kind::Gauge,
    "s",
    "Span the workload figures cover",
);
pub const PROBE_HEADROOM: Metric = family(
    "headroom_fleet_probe_headroom",
    Kind::Gauge,
    "1",
    "Probe timeout over the latest window's p99 latency (below 2: p99 is past half the timeout)",
);
pub const PROBE_LATENCY_P99: Metric = family(
    "headroom_fleet_probe_latency_p99_seconds",
    Kind::Gauge,
    "s",
    "The latest window's 99th percentile probe latency, timeouts counted at their timeout",
);
pub const PROBE_TIMEOUT: Metric = family(
    "headroom_fleet_probe_timeout_seconds",
    Kind::Gauge,
    "s",
    "The probe's timeoutSeconds",
);
pub const PROBE_ATTEMPTS: Metric = family(
    "headroom_fleet_probe_attempts",
    Kind::Gauge,
    "{attempt}",
    "Shadow probe attempts by result (ok, slow, timeout, error) over workload_history",
);
pub const PROBE_PREDICTED_REMOVALS: Metric = family(
    "headroom_fleet_probe_predicted_removals",
    Kind::Gauge,
    "{removal}",
    "Times the kubelet would have taken the pod out (failureThreshold consecutive failures) over workload_history",
);
pub const POINTS_ACCEPTED: Metric = family(
    "headroom_collector_points_accepted",
    Kind::Counter,
    "{point}",
    "OTLP data points taken into the fleet model",
);
pub const POINTS_REJECTED: Metric = family(
    "headroom_collector_points_rejected",
    Kind::Counter,
    "{point}",
    "OTLP data points refused by a cardinality limit or without a value",
);
pub const SPANS_RECEIVED: Metric = family(
    "headroom_collector_spans_received",
    Kind::Counter,
    "{span}",
    "Spans received over OTLP",
);
pub const SPANS_FORWARDED: Metric = family(
    "headroom_collector_spans_forwarded",
    Kind::Counter,
    "{span}",
    "Spans sent on to the traces endpoint",
);
pub const SPANS_FORWARD_DROPPED: Metric = family(
    "headroom_collector_spans_forward_dropped",
    Kind::Counter,
    "{span}",
    "Spans not forwarded: queue full, or the traces endpoint refused or stayed unreachable",
);
pub const NODES_EXPIRED: Metric = family(
    "headroom_collector_nodes_expired",
    Kind::Counter,
    "{node}",
    "Nodes removed after sending nothing for node_expiry",
);
pub const LISTENERS_PROBES_EXPIRED: Metric = family(
    "headroom_collector_listeners_probes_expired",
    Kind::Counter,
    "{part}",
    "Listeners and probes removed after no data for node_expiry while their node reported",
);
pub const REQUESTS_REJECTED: Metric = family(
    "headroom_collector_requests_rejected",
    Kind::Counter,
    "{request}",
    "OTLP requests refused, by reason (shed_memory and shed_concurrency: shed before decoding, 429 / RESOURCE_EXHAUSTED; unauthenticated: 401; auth_unavailable: token not verifiable now, 503; node_mismatch and cluster_mismatch: one per resource its token may not write)",
);
pub const POINTS_FUTURE: Metric = family(
    "headroom_collector_points_future",
    Kind::Counter,
    "{point}",
    "OTLP data points refused for a time more than 5 minutes ahead of the collector's clock",
);
pub const POINTS_TOO_OLD: Metric = family(
    "headroom_collector_points_too_old",
    Kind::Counter,
    "{point}",
    "OTLP data points refused for a time older than the hour of history kept",
);
pub const NODES_REFUSED_MAX: Metric = family(
    "headroom_collector_nodes_refused_max_nodes",
    Kind::Counter,
    "{node}",
    "New nodes refused because the fleet held max_nodes",
);
pub const NODES_REFUSED_PER_REQUEST: Metric = family(
    "headroom_collector_nodes_refused_per_request",
    Kind::Counter,
    "{node}",
    "New nodes refused because their request had already added max_new_nodes_per_request",
);
pub const SERIES_REFUSED_MAX: Metric = family(
    "headroom_collector_series_refused_max_series",
    Kind::Counter,
    "{series}",
    "New latest-value series refused because the fleet held max_series",
);
pub const TRACES_QUEUE_DROPPED_BYTES: Metric = family(
    "headroom_collector_traces_queue_dropped_bytes",
    Kind::Counter,
    "By",
    "Bytes of span requests not forwarded because the traces queue (32 MiB) was full",
);
pub const FINDINGS_DROPPED: Metric = family(
    "headroom_collector_findings_dropped",
    Kind::Counter,
    "{finding}",
    "Findings forgotten (oldest resolved first) or not tracked because of max_findings",
);
pub const FINDINGS: Metric = family(
    "headroom_collector_findings",
    Kind::Gauge,
    "{finding}",
    "Findings by rule, severity and state (pending, firing, resolved within keep_resolved)",
);
pub const EVALUATION_SECONDS: Metric = family(
    "headroom_collector_evaluation_seconds",
    Kind::Gauge,
    "s",
    "How long the latest evaluation took: the fleet snapshot, every rule, the findings engine",
);
pub const EVALUATION_SECONDS_MAX: Metric = family(
    "headroom_collector_evaluation_seconds_max",
    Kind::Gauge,
    "s",
    "The slowest evaluation since the collector started",
);
pub const EVALUATION_CPU_SECONDS: Metric = family(
    "headroom_collector_evaluation_cpu_seconds",
    Kind::Gauge,
    "s",
    "CPU time the latest evaluation's thread used; far below evaluation_seconds means it waited for a core",
);
pub const ALERTS_SENT: Metric = family(
    "headroom_collector_alerts_sent",
    Kind::Counter,
    "{alert}",
    "Alerts (Alertmanager) or finding changes (webhook) delivered",
);
pub const ALERT_SEND_FAILURES: Metric = family(
    "headroom_collector_alert_send_failures",
    Kind::Counter,
    "{attempt}",
    "POSTs to a sink that failed and are tried again",
);
pub const ALERTS_DROPPED: Metric = family(
    "headroom_collector_alerts_dropped",
    Kind::Counter,
    "{alert}",
    "Alerts or changes given up: queue full, or refused by the sink",
);
pub const ALERTS_QUEUED: Metric = family(
    "headroom_collector_alerts_queued",
    Kind::Gauge,
    "{alert}",
    "Alerts or changes waiting for a sink",
);

pub const NODE_SCALE_DOWN_BLOCKED: Metric = family(
    "headroom_node_scale_down_blocked",
    Kind::Gauge,
    "{pod}",
    "Pods (or 1 for the node itself) keeping an under-used node from scale-down, per node and the autoscaler's reason (ScaleDownBlocked findings, pending or firing)",
);

/// Every family, in the order the exposition shows them (the tests check each is exposed).
#[cfg(test)]
pub const ALL: &[Metric] = &[
    FLEET_NODES,
    LINKLOCAL_PPS_PEAK,
    LINKLOCAL_UTILIZATION,
    LINKLOCAL_PPS_PEAK_LAST_HOUR,
    ENA_ALLOWANCE_EXCEEDED,
    DNS_UNANSWERED,
    WORKLOAD_BUSY,
    WORKLOAD_BUSY_MEAN,
    WORKLOAD_BUSY_P95,
    WORKLOAD_BUSY_MAX,
    WORKLOAD_REQUESTS,
    WORKLOAD_REQUESTS_MEAN,
    WORKLOAD_REQUESTS_P95,
    WORKLOAD_REQUESTS_MAX,
    WORKLOAD_WORKERS,
    WORKLOAD_CAPACITY,
    WORKLOAD_PODS,
    WORKLOAD_QUEUE_MAX,
    WORKLOAD_SATURATED_SECONDS,
    WORKLOAD_HISTORY_SECONDS,
    PROBE_HEADROOM,
    PROBE_LATENCY_P99,
    PROBE_TIMEOUT,
    PROBE_ATTEMPTS,
    PROBE_PREDICTED_REMOVALS,
    POINTS_ACCEPTED,
    POINTS_REJECTED,
    SPANS_RECEIVED,
    SPANS_FORWARDED,
    SPANS_FORWARD_DROPPED,
    NODES_EXPIRED,
    LISTENERS_PROBES_EXPIRED,
    REQUESTS_REJECTED,
    POINTS_FUTURE,
    POINTS_TOO_OLD,
    NODES_REFUSED_MAX,
    NODES_REFUSED_PER_REQUEST,
    SERIES_REFUSED_MAX,
    TRACES_QUEUE_DROPPED_BYTES,
    FINDINGS_DROPPED,
    FINDINGS,
    EVALUATION_SECONDS,
    EVALUATION_SECONDS_MAX,
    EVALUATION_CPU_SECONDS,
    ALERTS_SENT,
    ALERT_SEND_FAILURES,
    ALERTS_DROPPED,
    ALERTS_QUEUED,
    NODE_SCALE_DOWN_BLOCKED,
];
