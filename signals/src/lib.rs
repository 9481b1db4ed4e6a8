//! The names headroom's agent and collector share, so a renamed metric cannot go unnoticed on
//! one side.
//!
//! ## Prometheus and OTLP names
//! The OTLP name of a metric is its Prometheus name with dots for underscores, without the
//! suffixes a Prometheus exporter adds back from the type and unit: `_total` (monotonic sums)
//! and `_ratio` (unit `1`). So an OpenTelemetry Collector that exports OTLP to Prometheus
//! produces the agent's own `/metrics` names again:
//!
//! | Prometheus (agent `/metrics`)            | OTLP (agent export)              | OTLP type, unit |
//! |------------------------------------------|----------------------------------|-----------------|
//! | `headroom_linklocal_packets_total`        | `headroom.linklocal.packets`     | cumulative monotonic sum, `{packet}` |
//! | `headroom_linklocal_pps_peak`             | `headroom.linklocal.pps.peak`    | gauge, `{packet}/s` |
//! | `headroom_linklocal_pps_mean`             | `headroom.linklocal.pps.mean`    | gauge, `{packet}/s` |
//! | `headroom_linklocal_pps_limit`            | `headroom.linklocal.pps.limit`   | gauge, `{packet}/s` |
//! | `headroom_linklocal_utilization_ratio`    | `headroom.linklocal.utilization` | gauge, `1` |
//! | `headroom_capture_drops_total`            | `headroom.capture.drops`         | cumulative monotonic sum, `{packet}` |
//! | `headroom_dns_queries_total`              | `headroom.dns.queries`           | cumulative monotonic sum, `{query}` |
//! | `headroom_dns_responses_total`            | `headroom.dns.responses`         | cumulative monotonic sum, `{response}`, attribute `rcode` |
//! | `headroom_dns_unanswered_total`           | `headroom.dns.unanswered`        | cumulative monotonic sum, `{query}` |
//! | `headroom_dns_search_expansion_packets_total` | `headroom.dns.search.expansion.packets` | cumulative monotonic sum, `{packet}` |
//!
//! Each report window is one data point per metric and interface: `start_time_unix_nano` is
//! the window's start, `time_unix_nano` its end, so a receiver can place late windows.
//! Data point attributes: `interface`, `eni` (empty until known), `service` (packets only),
//! `rcode` (DNS responses only).
#![forbid(unsafe_code)]

/// OTLP metric names (see the table above).
pub mod otlp {
    pub const LINKLOCAL_PACKETS: &str = "headroom.linklocal.packets";
    pub const LINKLOCAL_PPS_PEAK: &str = "headroom.linklocal.pps.peak";
    pub const LINKLOCAL_PPS_MEAN: &str = "headroom.linklocal.pps.mean";
    pub const LINKLOCAL_PPS_LIMIT: &str = "headroom.linklocal.pps.limit";
    pub const LINKLOCAL_UTILIZATION: &str = "headroom.linklocal.utilization";
    pub const CAPTURE_DROPS: &str = "headroom.capture.drops";
    pub const DNS_QUERIES: &str = "headroom.dns.queries";
    pub const DNS_RESPONSES: &str = "headroom.dns.responses";
    pub const DNS_UNANSWERED: &str = "headroom.dns.unanswered";
    pub const DNS_SEARCH_EXPANSION: &str = "headroom.dns.search.expansion.packets";
    /// Prefix of every metric the collector folds into ENI windows.
    pub const LINKLOCAL_PREFIX: &str = "headroom.linklocal.";
}

/// Prometheus metric names (design.md section 3).
pub mod prom {
    pub const LINKLOCAL_PACKETS: &str = "headroom_linklocal_packets";
    pub const LINKLOCAL_PPS_PEAK: &str = "headroom_linklocal_pps_peak";
    pub const LINKLOCAL_PPS_MEAN: &str = "headroom_linklocal_pps_mean";
    pub const LINKLOCAL_PPS_LIMIT: &str = "headroom_linklocal_pps_limit";
    pub const LINKLOCAL_UTILIZATION: &str = "headroom_linklocal_utilization_ratio";
    pub const CAPTURE_DROPS: &str = "headroom_capture_drops";
    pub const DNS_QUERIES: &str = "headroom_dns_queries";
    pub const DNS_RESPONSES: &str = "headroom_dns_responses";
    pub const DNS_UNANSWERED: &str = "headroom_dns_unanswered";
    pub const DNS_SEARCH_EXPANSION: &str = "headroom_dns_search_expansion_packets";
}

/// Data point attribute keys.
pub mod attr {
    pub const INTERFACE: &str = "interface";
    pub const ENI: &str = "eni";
    pub const SERVICE: &str = "service";
    pub const RCODE: &str = "rcode";
}

/// Resource attribute keys (OpenTelemetry semantic conventions).
pub mod resource {
    pub const SERVICE_NAME: &str = "service.name";
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";
    pub const HOST_ID: &str = "host.id";
    pub const HOST_NAME: &str = "host.name";
    pub const HOST_TYPE: &str = "host.type";
    pub const CLOUD_PROVIDER: &str = "cloud.provider";
    pub const CLOUD_AVAILABILITY_ZONE: &str = "cloud.availability_zone";
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    /// `service.name` of the agent.
    pub const AGENT_SERVICE: &str = "headroom-agent";
}

/// The OTLP name for a Prometheus name: dots for underscores, without `_total` / `_ratio`.
pub fn otlp_name(prometheus: &str) -> String {
    let base = prometheus
        .strip_suffix("_total")
        .or_else(|| prometheus.strip_suffix("_ratio"))
        .unwrap_or(prometheus);
    base.replace('_', ".")
}

/// Content type of the Prometheus text format that [`openmetrics_to_text`] produces.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics (what prometheus-client writes) to the Prometheus text format 0.0.4, which every
/// scraper and `promtool check metrics` accept. OpenMetrics names a counter family without
/// `_total` in HELP/TYPE and ends with `# EOF`; the classic format names the sample (`x_total`)
/// and has no EOF marker.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out += &format!("{p}{name}_total {tail}\n");
                } else {
                    out += line;
                    out.push('\n');
                }
            }
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_names_are_the_prometheus_names_with_dots() {
        let pairs = [
            (prom::LINKLOCAL_PACKETS, otlp::LINKLOCAL_PACKETS),
            (prom::LINKLOCAL_PPS_PEAK, otlp::LINKLOCAL_PPS_PEAK),
            (prom::LINKLOCAL_PPS_MEAN, otlp::LINKLOCAL_PPS_MEAN),
            (prom::LINKLOCAL_PPS_LIMIT, otlp::LINKLOCAL_PPS_LIMIT),
            (prom::LINKLOCAL_UTILIZATION, otlp::LINKLOCAL_UTILIZATION),
            (prom::CAPTURE_DROPS, otlp::CAPTURE_DROPS),
            (prom::DNS_QUERIES, otlp::DNS_QUERIES),
            (prom::DNS_RESPONSES, otlp::DNS_RESPONSES),
            (prom::DNS_UNANSWERED, otlp::DNS_UNANSWERED),
            (prom::DNS_SEARCH_EXPANSION, otlp::DNS_SEARCH_EXPANSION),
        ];
        for (p, o) in pairs {
            assert_eq!(otlp_name(p), o);
        }
        assert_eq!(
            otlp_name("headroom_linklocal_packets_total"),
            otlp::LINKLOCAL_PACKETS
        );
    }

    #[test]
    fn counters_get_total_in_help_and_type() {
        let om = "# HELP x_drops Dropped.\n# TYPE x_drops counter\nx_drops_total 3\n# TYPE g gauge\ng 1\n# EOF\n";
        let t = openmetrics_to_text(om);
        assert_eq!(
            t,
            "# HELP x_drops_total Dropped.\n# TYPE x_drops_total counter\nx_drops_total 3\n# TYPE g gauge\ng 1\n"
        );
    }
}
