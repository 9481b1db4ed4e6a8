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
//! | `headroom_linklocal_service_pps_peak`     | `headroom.linklocal.service.pps.peak` | gauge, `{packet}/s`, attribute `service` (dns, imds, ntp) |
//! | `headroom_ena_allowance_exceeded_total`   | `headroom.ena.allowance.exceeded` | cumulative monotonic sum, `{packet}`, attribute `allowance` |
//! | `headroom_dns_search_expansion_share_ratio` | `headroom.dns.search.expansion.share` | gauge, `1`: the window's search_expansion_share |
//! | `headroom_dns_top_qname_queries`          | `headroom.dns.top.qname.queries` | gauge, `{query}`: queries in the window, attribute `qname` (the report's top_qnames) |
//! | `headroom_dns_top_source_queries`         | `headroom.dns.top.source.queries` | gauge, `{query}`: queries in the window, attributes `source`, `namespace`, `pod`, `workload_kind`, `workload` (empty when unknown), `search_expansion_packets` is a separate gauge below |
//! | `headroom_dns_top_source_search_expansion_packets` | `headroom.dns.top.source.search.expansion.packets` | gauge, `{packet}`, same attributes as the line above |
//! | `headroom_workers`                        | `headroom.workers`               | gauge, `{worker}` (listener attributes) |
//! | `headroom_workers_busy`                   | `headroom.workers.busy`          | gauge, `{worker}`: mean busy workers over the window |
//! | `headroom_workers_busy_max`               | `headroom.workers.busy.max`      | gauge, `{worker}` |
//! | `headroom_workers_utilization_ratio`      | `headroom.workers.utilization`   | gauge, `1`: busy / workers over the window (the report's `utilization`) |
//! | `headroom_listeners_omitted`              | `headroom.listeners.omitted`     | gauge, `{listener}`: left out of the window by the `[listeners]` caps (no attributes) |
//! | `headroom_listener_accepts_per_second`    | `headroom.listener.accepts.per.second` | gauge, `{connection}/s`: mean accepted TCP connections per second in the listener's network namespace over the window |
//! | `headroom_listener_accepts_per_second_max` | `headroom.listener.accepts.per.second.max` | gauge, `{connection}/s`: the window's busiest second |
//! | `headroom_accept_queue_depth_max`         | `headroom.accept.queue.depth.max` | gauge, `{connection}` |
//! | `headroom_accept_queue_backlog`           | `headroom.accept.queue.backlog`  | gauge, `{connection}` |
//! | `headroom_workers_saturated_seconds_total` | `headroom.workers.saturated.seconds` | cumulative monotonic sum, `s` |
//! | `headroom_pod_cpu_cores`, `…_busiest_second_cores`, `…_request_cores`, `…_limit_cores` | `headroom.pod.cpu.cores`, … | gauge, `{core}` (pod-use attributes) |
//! | `headroom_pod_cpu_throttled_seconds`      | `headroom.pod.cpu.throttled.seconds` | gauge, `s`: throttled time in the window |
//! | `headroom_pod_memory_bytes`, `…_peak_bytes`, `…_request_bytes`, `…_limit_bytes` | `headroom.pod.memory.bytes`, … | gauge, `By` |
//! | `headroom_pod_use_omitted`                | `headroom.pod.use.omitted`       | gauge, `{cgroup}` (no attributes) |
//! | `headroom_node_pod_cpu_busiest_second_cores`, `…_requests_cores`, `…_limits_cores` | `headroom.node.pod.cpu.…` | gauge, `{core}` (no attributes): co-burst |
//! | `headroom_workload_pods`, `headroom_workload_pods_above_request_max`, `…_p95` | `headroom.workload.pods.above.request.…` | gauge, `{pod}`: attributes `namespace`, `workload_kind`, `workload` |
//! | `headroom_probe_duration_seconds`         | `headroom.probe.duration.seconds` | cumulative histogram, `s`, timeouts counted at their timeout (probe attributes) |
//! | `headroom_probe_attempts_total`           | `headroom.probe.attempts`        | cumulative monotonic sum, `{attempt}`, attribute `result` (ok, slow, timeout, error) |
//! | `headroom_probe_timeout_seconds`          | `headroom.probe.timeout.seconds` | gauge, `s`: the probe's timeoutSeconds |
//! | `headroom_probe_latency_p99_seconds`      | `headroom.probe.latency.p99.seconds` | gauge, `s`: the window's p99 (timeouts included); absent without attempts |
//! | `headroom_probe_latency_max_seconds`      | `headroom.probe.latency.max.seconds` | gauge, `s`: the window's slowest attempt |
//! | `headroom_probe_predicted_removals_total` | `headroom.probe.predicted.removals` | cumulative monotonic sum, `{removal}` |
//! | `headroom_nfs_ops_total`                  | `headroom.nfs.ops`               | cumulative monotonic sum, `{operation}`: the kernel's count since the mount (storage attributes) |
//! | `headroom_nfs_rtt_seconds_total`          | `headroom.nfs.rtt.seconds`       | cumulative monotonic sum, `s` |
//! | `headroom_nfs_execute_seconds_total`      | `headroom.nfs.execute.seconds`   | cumulative monotonic sum, `s` |
//! | `headroom_nfs_bytes_total`                | `headroom.nfs.bytes`             | cumulative monotonic sum, `By`, attribute `direction` (sent, received) |
//! | `headroom_nfs_ops_per_second`             | `headroom.nfs.ops.per.second`    | gauge, `{operation}/s`: the window's |
//! | `headroom_nfs_bytes_per_second`           | `headroom.nfs.bytes.per.second`  | gauge, `By/s`: the window's, both directions |
//! | `headroom_nfs_execute_mean_seconds`       | `headroom.nfs.execute.mean.seconds` | gauge, `s`: the window's mean; absent without calls |
//! | `headroom_nfs_mounts_omitted`             | `headroom.nfs.mounts.omitted`    | gauge, `{mount}` (no attributes) |
//!
//! Each report window is one data point per metric and interface: `start_time_unix_nano` is
//! the window's start, `time_unix_nano` its end, so a receiver can place late windows.
//! Interface attributes: `interface`, `eni` (empty until known), `service` (packets only),
//! `rcode` (DNS responses only), `allowance` (ENA counters only: `linklocal`, `pps`,
//! `conntrack`, `bw_in`, `bw_out`: the driver's counter name without `_allowance_exceeded`, as
//! the Prometheus label).
//! Listener attributes: `namespace`, `pod`, `container`, `port`, `process`, `workload_kind`
//! (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, or Pod), `workload` (a pod owned by a
//! ReplicaSet carrying a `pod-template-hash` label belongs to the Deployment named by the
//! ReplicaSet's name without that hash). Empty strings where unknown. OTLP listener points also
//! carry `model`, `threads_known` and `requests_are_connections` ("true"/"false").
//! Pod-use attributes: `namespace`, `pod` (the uid when the pod list does not name it),
//! `container` (empty for the pod's own cgroup, else the container's name or id),
//! `workload_kind`, `workload`.
//! Probe attributes: `namespace`, `pod`, `container`, `probe` (readiness, liveness, startup),
//! `target`, `workload_kind`, `workload`.
//! Storage attributes: `namespace`, `pod`, `workload_kind`, `workload`, `mount`, `server`,
//! `efs_filesystem`, `volume`, `pvc`, `database_image` (empty where unknown), `op`.
//!
//! Spans: `dns.resolve` (resolver checks) and `probe` (each slow, timed-out or failed probe
//! attempt; start = when the attempt began, end = start + elapsed; attributes in [`span`]:
//! the probe attributes as strings, `probe.timeout_seconds` and `probe.elapsed_seconds` as
//! doubles, `http.response.status_code`, `workers.busy`, `workers.total` and
//! `accept_queue.depth` as integers; status ERROR for timeouts and errors).
#![forbid(unsafe_code)]

/// One metric, declared once: the agent's Prometheus and OTLP encoders and the collector's
/// ingest all name, describe and type it from here, so the two sides cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Prometheus family name as registered (a counter without `_total`: the exposition adds it).
    pub prom: &'static str,
    /// OTLP name: [`otlp_name`] of the Prometheus name.
    pub otlp: &'static str,
    /// OTLP unit (UCUM, curly braces for annotations).
    pub unit: &'static str,
    pub kind: Kind,
    /// Help text (Prometheus `# HELP`) and OTLP description.
    pub help: &'static str,
}

/// How a metric is exposed: gauge, cumulative monotonic sum, or cumulative histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Every metric the agent exports (see the table above), one entry each: constant, kind,
/// Prometheus name, OTLP name, unit, help. Agent-only self metrics (the OTLP exporter's own
/// counters, the ENA conntrack gauge) are here too, so their help is in one place.
pub mod metric {
    use super::{Kind, Metric};

    macro_rules! metrics {
        ($($name:ident: $kind:ident, $prom:literal, $otlp:literal, $unit:literal, $help:literal;)*) => {
            $(pub const $name: Metric = Metric {
                prom: $prom,
                otlp: $otlp,
                unit: $unit,
                kind: Kind::$kind,
                help: $help,
            };)*
            /// All of the above, for tests and docs.
            pub const ALL: &[Metric] = &[$($name),*];
        };
    }

    metrics! {
        LINKLOCAL_PACKETS: Counter, "headroom_linklocal_packets", "headroom.linklocal.packets", "{packet}",
            "Packets sent to EC2 link-local services (Route 53 Resolver, IMDS, Time Sync)";
        LINKLOCAL_PPS_PEAK: Gauge, "headroom_linklocal_pps_peak", "headroom.linklocal.pps.peak", "{packet}/s",
            "Highest packets in any one second of the last report window, all link-local services together";
        LINKLOCAL_PPS_MEAN: Gauge, "headroom_linklocal_pps_mean", "headroom.linklocal.pps.mean", "{packet}/s",
            "Mean packets per second to link-local services over the last report window";
        LINKLOCAL_PPS_LIMIT: Gauge, "headroom_linklocal_pps_limit", "headroom.linklocal.pps.limit", "{packet}/s",
            "Packets per second an interface may send to link-local services before EC2 drops them";
        LINKLOCAL_UTILIZATION: Gauge, "headroom_linklocal_utilization_ratio", "headroom.linklocal.utilization", "1",
            "Peak packets per second over the link-local limit, last report window";
        LINKLOCAL_SERVICE_PPS_PEAK: Gauge, "headroom_linklocal_service_pps_peak", "headroom.linklocal.service.pps.peak", "{packet}/s",
            "Highest packets in any one second of the last report window to one link-local service";
        CAPTURE_DROPS: Counter, "headroom_capture_drops", "headroom.capture.drops", "{packet}",
            "Packets the kernel matched but the agent's capture ring had no room for (the count is low by this much)";
        ENA_ALLOWANCE_EXCEEDED: Counter, "headroom_ena_allowance_exceeded", "headroom.ena.allowance.exceeded", "{packet}",
            "Packets EC2 dropped or queued because an allowance was exceeded, from the ENA driver's counters (allowance=linklocal|pps|conntrack|bw_in|bw_out)";
        ENA_CONNTRACK_AVAILABLE: Gauge, "headroom_ena_conntrack_allowance_available", "headroom.ena.conntrack.allowance.available", "{connection}",
            "Tracked connections that can still be established before the conntrack allowance is exceeded (ENA driver)";
        DNS_QUERIES: Counter, "headroom_dns_queries", "headroom.dns.queries", "{query}",
            "DNS queries sent to link-local resolvers";
        DNS_RESPONSES: Counter, "headroom_dns_responses", "headroom.dns.responses", "{response}",
            "DNS replies from link-local resolvers matched to a query, by RCODE";
        DNS_UNANSWERED: Counter, "headroom_dns_unanswered", "headroom.dns.unanswered", "{query}",
            "DNS queries with no reply within 5 s (what a throttled packet looks like)";
        DNS_SEARCH_EXPANSION: Counter, "headroom_dns_search_expansion_packets", "headroom.dns.search.expansion.packets", "{packet}",
            "DNS queries for a name plus a search suffix answered NXDOMAIN (packets ndots costs)";
        DNS_SEARCH_EXPANSION_SHARE: Gauge, "headroom_dns_search_expansion_share_ratio", "headroom.dns.search.expansion.share", "1",
            "Share of the last window's DNS queries spent on search-list suffixes that failed";
        DNS_CACHEABLE_SHARE: Gauge, "headroom_dns_cacheable_share_ratio", "headroom.dns.cacheable.share", "1",
            "Share of the last window's DNS queries a node-local cache would have answered (an answer seen less than min(TTL, cap) before)";
        DNS_CACHE_SAVINGS_PPS: Gauge, "headroom_dns_cache_savings_pps", "headroom.dns.cache.savings.pps", "{packet}/s",
            "DNS packets per second a node-local cache would have kept off the interface, mean of the last window";
        DNS_CACHE_SAVINGS_PPS_PEAK: Gauge, "headroom_dns_cache_savings_pps_peak", "headroom.dns.cache.savings.pps.peak", "{packet}/s",
            "DNS packets a node-local cache would have kept off the interface in the last window's busiest second";
        DNS_NDOTS2_SAVINGS_PPS: Gauge, "headroom_dns_ndots2_savings_pps", "headroom.dns.ndots2.savings.pps", "{packet}/s",
            "DNS packets per second ndots:2 would not have sent (failed search-suffix queries of names with 2+ dots), mean of the last window";
        DNS_FQDN_SAVINGS_PPS: Gauge, "headroom_dns_fqdn_savings_pps", "headroom.dns.fqdn.savings.pps", "{packet}/s",
            "DNS packets per second fully qualified names (a trailing dot) would not have sent, mean of the last window";
        DNS_CACHE_TABLE_EVICTIONS: Counter, "headroom_dns_cache_table_evictions", "headroom.dns.cache.table.evictions", "{entry}",
            "Live answers the agent's fixed answer table pushed out (the cacheable figures are low by up to one query each)";
        DNS_TOP_SOURCE_CACHE_SAVINGS_PPS: Gauge, "headroom_dns_top_source_cache_savings_pps", "headroom.dns.top.source.cache.savings.pps", "{packet}/s",
            "DNS packets per second a node-local cache would have answered for one of the last window's busiest sources";
        DNS_TOP_QNAME_QUERIES: Gauge, "headroom_dns_top_qname_queries", "headroom.dns.top.qname.queries", "{query}",
            "Queries in the last report window for one of its most asked names";
        DNS_TOP_SOURCE_QUERIES: Gauge, "headroom_dns_top_source_queries", "headroom.dns.top.source.queries", "{query}",
            "Queries in the last report window from one of its busiest sources (with the pod and workload behind it)";
        DNS_TOP_SOURCE_SEARCH_EXPANSION: Gauge, "headroom_dns_top_source_search_expansion_packets", "headroom.dns.top.source.search.expansion.packets", "{packet}",
            "Packets one of the last window's busiest sources spent on search-list suffixes that failed";
        WORKERS: Gauge, "headroom_workers", "headroom.workers", "{worker}",
            "Worker processes of a listening socket (masters excluded)";
        WORKERS_BUSY: Gauge, "headroom_workers_busy", "headroom.workers.busy", "{worker}",
            "Mean number of workers holding an accepted connection over the last report window";
        WORKERS_BUSY_MAX: Gauge, "headroom_workers_busy_max", "headroom.workers.busy.max", "{worker}",
            "Most workers busy at once in the last report window";
        WORKERS_UTILIZATION: Gauge, "headroom_workers_utilization_ratio", "headroom.workers.utilization", "1",
            "Mean busy workers over workers in the last report window";
        LISTENERS_OMITTED: Gauge, "headroom_listeners_omitted", "headroom.listeners.omitted", "{listener}",
            "Listeners left out of the last report window by the per-pod and per-node caps";
        ACCEPT_QUEUE_DEPTH_MAX: Gauge, "headroom_accept_queue_depth_max", "headroom.accept.queue.depth.max", "{connection}",
            "Deepest accept queue (connections waiting for a worker) in the last report window";
        ACCEPT_QUEUE_BACKLOG: Gauge, "headroom_accept_queue_backlog", "headroom.accept.queue.backlog", "{connection}",
            "Accept queue limit of the listening socket (listen backlog)";
        WORKERS_SATURATED_SECONDS: Counter, "headroom_workers_saturated_seconds", "headroom.workers.saturated.seconds", "s",
            "Time with every worker of the listening socket busy";
        WORKERS_THREADS: Gauge, "headroom_workers_threads", "headroom.workers.threads", "{thread}",
            "Requests one worker serves at once (pool threads; 1 for prefork servers)";
        WORKERS_CAPACITY: Gauge, "headroom_workers_capacity", "headroom.workers.capacity", "{request}",
            "Requests the listening socket's workers serve at once (workers times threads)";
        LISTENER_CONNECTIONS: Gauge, "headroom_listener_connections", "headroom.listener.connections", "{connection}",
            "Mean accepted connections the listener's processes held over the last report window";
        LISTENER_CONNECTIONS_MAX: Gauge, "headroom_listener_connections_max", "headroom.listener.connections.max", "{connection}",
            "Most accepted connections the listener's processes held at once in the last report window";
        LISTENER_ACCEPTS: Gauge, "headroom_listener_accepts_per_second", "headroom.listener.accepts.per.second", "{connection}/s",
            "Mean TCP connections accepted per second in the listener's network namespace over the last report window (requests per second where each request opens one)";
        LISTENER_ACCEPTS_MAX: Gauge, "headroom_listener_accepts_per_second_max", "headroom.listener.accepts.per.second.max", "{connection}/s",
            "Most TCP connections accepted in any one second of the last report window in the listener's network namespace";
        POD_CPU: Gauge, "headroom_pod_cpu_cores", "headroom.pod.cpu.cores", "{core}",
            "Mean CPU a pod (container empty) or container used over the last report window, from its cgroup";
        POD_CPU_BUSIEST_SECOND: Gauge, "headroom_pod_cpu_busiest_second_cores", "headroom.pod.cpu.busiest.second.cores", "{core}",
            "CPU a pod or container used in the busiest second of the last report window";
        POD_CPU_REQUEST: Gauge, "headroom_pod_cpu_request_cores", "headroom.pod.cpu.request.cores", "{core}",
            "CPU request of a pod (sum of its containers) or container, from the pod list";
        POD_CPU_LIMIT: Gauge, "headroom_pod_cpu_limit_cores", "headroom.pod.cpu.limit.cores", "{core}",
            "CPU limit of a pod (when every container has one) or container, from the pod list";
        POD_CPU_THROTTLED: Gauge, "headroom_pod_cpu_throttled_seconds", "headroom.pod.cpu.throttled.seconds", "s",
            "Time a pod's or container's CPU was throttled in the last report window (cpu.stat)";
        POD_MEMORY: Gauge, "headroom_pod_memory_bytes", "headroom.pod.memory.bytes", "By",
            "Memory a pod or container held at the end of the last report window";
        POD_MEMORY_PEAK: Gauge, "headroom_pod_memory_peak_bytes", "headroom.pod.memory.peak.bytes", "By",
            "Most memory a pod or container held in the last report window";
        POD_MEMORY_REQUEST: Gauge, "headroom_pod_memory_request_bytes", "headroom.pod.memory.request.bytes", "By",
            "Memory request of a pod or container, from the pod list";
        POD_MEMORY_LIMIT: Gauge, "headroom_pod_memory_limit_bytes", "headroom.pod.memory.limit.bytes", "By",
            "Memory limit of a pod (when every container has one) or container, from the pod list";
        POD_USE_OMITTED: Gauge, "headroom_pod_use_omitted", "headroom.pod.use.omitted", "{cgroup}",
            "Pods and containers left out of the last report window by the [pod_use] caps";
        NODE_POD_CPU_BUSIEST_SECOND: Gauge, "headroom_node_pod_cpu_busiest_second_cores", "headroom.node.pod.cpu.busiest.second.cores", "{core}",
            "The node's pods' CPU summed at the busiest second of the last report window";
        NODE_POD_CPU_REQUESTS: Gauge, "headroom_node_pod_cpu_requests_cores", "headroom.node.pod.cpu.requests.cores", "{core}",
            "Sum of the CPU requests of the pods measured at the node's busiest second";
        NODE_POD_CPU_LIMITS: Gauge, "headroom_node_pod_cpu_limits_cores", "headroom.node.pod.cpu.limits.cores", "{core}",
            "Sum of the CPU limits of the pods measured at the node's busiest second (pods with a limit)";
        WORKLOAD_PODS: Gauge, "headroom_workload_pods", "headroom.workload.pods", "{pod}",
            "Most pods of a workload with a CPU request measured at once on this node, last report window";
        WORKLOAD_PODS_ABOVE_REQUEST_MAX: Gauge, "headroom_workload_pods_above_request_max", "headroom.workload.pods.above.request.max", "{pod}",
            "Most pods of a workload on this node above their CPU request at the same second, last report window";
        WORKLOAD_PODS_ABOVE_REQUEST_P95: Gauge, "headroom_workload_pods_above_request_p95", "headroom.workload.pods.above.request.p95", "{pod}",
            "95th percentile over the last window's samples of a workload's pods above their CPU request at once";
        PROBE_DURATION: Histogram, "headroom_probe_duration_seconds", "headroom.probe.duration.seconds", "s",
            "Shadow probe attempts by duration, timeouts included (as their full timeout)";
        PROBE_ATTEMPTS: Counter, "headroom_probe_attempts", "headroom.probe.attempts", "{attempt}",
            "Shadow probe attempts by result (ok, slow: a success over the slow share of the timeout, timeout, error)";
        PROBE_TIMEOUT: Gauge, "headroom_probe_timeout_seconds", "headroom.probe.timeout.seconds", "s",
            "The probe's own timeoutSeconds";
        PROBE_LATENCY_P99: Gauge, "headroom_probe_latency_p99_seconds", "headroom.probe.latency.p99.seconds", "s",
            "99th percentile of the last window's shadow attempts, timeouts included (absent without attempts)";
        PROBE_LATENCY_MAX: Gauge, "headroom_probe_latency_max_seconds", "headroom.probe.latency.max.seconds", "s",
            "Slowest shadow attempt of the last window (absent without attempts)";
        PROBE_PREDICTED_REMOVALS: Counter, "headroom_probe_predicted_removals", "headroom.probe.predicted.removals", "{removal}",
            "Runs of failureThreshold consecutive failures: times the kubelet would have taken the pod out";
        NFS_OPS: Counter, "headroom_nfs_ops", "headroom.nfs.ops", "{operation}",
            "NFS calls of one procedure on one pod's mount since it was mounted (the kernel's mountstats)";
        NFS_RTT_SECONDS: Counter, "headroom_nfs_rtt_seconds", "headroom.nfs.rtt.seconds", "s",
            "Sum of NFS calls' round trips (transmission to reply) since the mount; over headroom_nfs_ops_total, the mean round trip";
        NFS_EXECUTE_SECONDS: Counter, "headroom_nfs_execute_seconds", "headroom.nfs.execute.seconds", "s",
            "Sum of the time callers waited for NFS calls (queue, retransmissions and round trip) since the mount; over headroom_nfs_ops_total, the mean cost of a call";
        NFS_BYTES: Counter, "headroom_nfs_bytes", "headroom.nfs.bytes", "By",
            "Bytes of NFS calls since the mount, headers included (direction=sent|received)";
        NFS_OPS_PER_SECOND: Gauge, "headroom_nfs_ops_per_second", "headroom.nfs.ops.per.second", "{operation}/s",
            "NFS calls per second of one procedure on one pod's mount over the last report window";
        NFS_BYTES_PER_SECOND: Gauge, "headroom_nfs_bytes_per_second", "headroom.nfs.bytes.per.second", "By/s",
            "Bytes per second of one NFS procedure's calls, both directions, over the last report window (READ and WRITE: the data moved)";
        NFS_EXECUTE_MEAN_SECONDS: Gauge, "headroom_nfs_execute_mean_seconds", "headroom.nfs.execute.mean.seconds", "s",
            "Mean time a caller waited for one NFS call of this procedure in the last report window (absent without calls)";
        NFS_MOUNTS_OMITTED: Gauge, "headroom_nfs_mounts_omitted", "headroom.nfs.mounts.omitted", "{mount}",
            "NFS mounts left out of the last report window by the agent's bounds";
        OTLP_WINDOWS_SENT: Counter, "headroom_otlp_windows_sent", "headroom.otlp.windows.sent", "{window}",
            "Report windows the OTLP receiver acknowledged";
        OTLP_WINDOWS_DROPPED: Counter, "headroom_otlp_windows_dropped", "headroom.otlp.windows.dropped", "{window}",
            "Report windows never exported: oldest dropped from a full queue, or refused by the receiver";
        OTLP_SEND_FAILURES: Counter, "headroom_otlp_send_failures", "headroom.otlp.send.failures", "{attempt}",
            "Failed OTLP send attempts (each window is retried until sent or dropped)";
        OTLP_WINDOWS_QUEUED: Gauge, "headroom_otlp_windows_queued", "headroom.otlp.windows.queued", "{window}",
            "Report windows waiting to be exported";
    }
}

/// OTLP name prefixes the collector matches on.
pub mod otlp {
    /// Prefix of every metric the collector folds into ENI windows.
    pub const LINKLOCAL_PREFIX: &str = "headroom.linklocal.";
}

/// Span names and span attribute keys.
pub mod span {
    pub const DNS_RESOLVE: &str = "dns.resolve";
    /// One slow, timed-out or failed shadow probe attempt.
    pub const PROBE: &str = "probe";
    /// `probe` span attributes: the probe attributes (see [`super::attr`]) plus these.
    pub const PROBE_TIMEOUT_SECONDS: &str = "probe.timeout_seconds";
    pub const PROBE_ELAPSED_SECONDS: &str = "probe.elapsed_seconds";
    /// ok | slow | timeout | error
    pub const PROBE_OUTCOME: &str = "probe.outcome";
    pub const HTTP_STATUS: &str = "http.response.status_code";
    pub const PROBE_ERROR: &str = "probe.error";
    /// Worker saturation of the probed pod's listener on the probe's port at the attempt
    /// (the workers sampler's latest sample before the attempt ended): busy / workers and the
    /// accept queue. Absent when no listener of the pod is known.
    pub const WORKERS_BUSY: &str = "workers.busy";
    pub const WORKERS_TOTAL: &str = "workers.total";
    pub const ACCEPT_QUEUE: &str = "accept_queue.depth";
}

/// How a listener's requests are served: the `model` attribute's values (the agent decides,
/// see `agent/src/sources/listeners/model.rs`; the collector keeps event loops out of workloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// One request per worker process at a time (unicorn, gunicorn sync, php-fpm); also what
    /// a sender that says nothing means.
    #[default]
    Prefork,
    /// Several requests per worker, one per pool thread (Puma, gunicorn gthread).
    Threaded,
    /// One process multiplexing many connections (nginx, Node): connections, not busy workers.
    EventLoop,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Prefork => "prefork",
            Model::Threaded => "threaded",
            Model::EventLoop => "event_loop",
        }
    }

    /// The attribute's value back; None for anything else.
    pub fn parse(s: &str) -> Option<Model> {
        [Model::Prefork, Model::Threaded, Model::EventLoop]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Data point attribute keys.
pub mod attr {
    pub const INTERFACE: &str = "interface";
    pub const ENI: &str = "eni";
    pub const SERVICE: &str = "service";
    pub const RCODE: &str = "rcode";
    pub const ALLOWANCE: &str = "allowance";
    pub const QNAME: &str = "qname";
    pub const SOURCE: &str = "source";
    pub const NAMESPACE: &str = "namespace";
    pub const POD: &str = "pod";
    pub const CONTAINER: &str = "container";
    pub const PORT: &str = "port";
    /// A unix listener's socket path (TCP listeners: absent, their `port` says it).
    pub const ADDRESS: &str = "address";
    /// prefork | threaded | event_loop
    pub const MODEL: &str = "model";
    /// Whether the threads per worker were stated by the server or the pod ("true"/"false").
    pub const THREADS_KNOWN: &str = "threads_known";
    /// Whether the listener's accepted connections are requests ("true"/"false"): false when
    /// a front in its namespace keeps connections open (report `requests_are_connections`).
    pub const REQUESTS_ARE_CONNECTIONS: &str = "requests_are_connections";
    pub const PROCESS: &str = "process";
    pub const WORKLOAD_KIND: &str = "workload_kind";
    pub const WORKLOAD: &str = "workload";
    /// readiness | liveness | startup
    pub const PROBE: &str = "probe";
    pub const TARGET: &str = "target";
    /// ok | slow | timeout | error
    pub const RESULT: &str = "result";
    /// An NFS mount's mount point as the pod's container sees it.
    pub const MOUNT: &str = "mount";
    /// The NFS server (for EFS its DNS name).
    pub const SERVER: &str = "server";
    /// The EFS file system id (`fs-…`), empty for other servers.
    pub const EFS_FILESYSTEM: &str = "efs_filesystem";
    /// The kubelet's volume name (the PersistentVolume's for PV-backed volumes).
    pub const VOLUME: &str = "volume";
    /// The PersistentVolumeClaim behind a pod's mount.
    pub const PVC: &str = "pvc";
    /// A database server image of the pod (mysql, postgres…), empty when none.
    pub const DATABASE_IMAGE: &str = "database_image";
    /// An NFS procedure: READ, WRITE, OPEN, GETATTR, LOOKUP…
    pub const OP: &str = "op";
    /// sent | received
    pub const DIRECTION: &str = "direction";
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
    /// `node` or `sidecar` (the agent inside one pod, EKS Fargate: a one-pod "node").
    pub const AGENT_MODE: &str = "headroom.agent.mode";
    /// A sidecar's own pod (semantic conventions).
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    /// A sidecar's pod IP: its ENI when IMDS does not name it (Fargate).
    pub const K8S_POD_IP: &str = "k8s.pod.ip";
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
    fn every_descriptor_is_consistent_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in metric::ALL {
            assert_eq!(otlp_name(m.prom), m.otlp, "{}", m.prom);
            assert!(m.prom.starts_with("headroom_"), "{}", m.prom);
            assert!(
                !m.prom.ends_with("_total"),
                "{}: counters are registered without _total",
                m.prom
            );
            assert!(!m.help.is_empty() && !m.unit.is_empty(), "{}", m.prom);
            assert!(seen.insert(m.prom), "{} declared twice", m.prom);
        }
        assert_eq!(metric::WORKERS_SATURATED_SECONDS.kind, Kind::Counter);
        assert_eq!(metric::PROBE_DURATION.kind, Kind::Histogram);
        assert_eq!(
            otlp_name("headroom_linklocal_packets_total"),
            metric::LINKLOCAL_PACKETS.otlp
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
