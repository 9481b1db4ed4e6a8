//! The listeners' report section (`listeners[]`).

use serde::Serialize;

/// A pod as far as the agent knows it: the uid always, namespace and name once a pod list is
/// known.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
}

/// One listening socket over one report window. Field names are a public contract.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListenerReport {
    pub pod: Option<PodRef>,
    /// Container id (the runtime's, 64 hex digits with containerd), or null outside pods.
    pub container: Option<String>,
    /// The IP address listened on, or a unix socket's path (abstract names start with `@`;
    /// bytes outside printable text escaped, as `\n` or `\xff`).
    pub address: String,
    /// The TCP port; null for a unix socket.
    pub port: Option<u16>,
    /// Command name of the workers.
    pub process: String,
    /// Worker processes (masters excluded) at the window's last sample.
    pub workers: u32,
    /// Requests a worker serves at once (pool threads), as the server states it (see
    /// `threads_known`); 1 for prefork servers.
    pub threads: u32,
    /// Whether `threads` was stated by the server or the pod (false: assumed 1).
    pub threads_known: bool,
    /// Requests the listener's workers serve at once: workers × threads.
    pub capacity: u32,
    /// prefork | threaded | event_loop (see `sources/listeners/model.rs`).
    pub model: super::model::Model,
    /// Mean requests in service (at most one per thread) over the window; 0 for an event loop,
    /// whose load is its connections.
    pub busy_mean: f64,
    pub busy_max: u32,
    /// Accepted connections the workers held (in service, or waiting or idle inside a
    /// worker): mean and most over the window.
    pub connections_mean: f64,
    pub connections_max: u32,
    /// Most connections an event loop (a front: nginx, Envoy, …) held for a second or longer
    /// at once: kept open between requests (keep-alive) or streams. 0 for other models.
    pub connections_kept_max: u32,
    /// Accepted TCP connections per second in the listener's network namespace (its
    /// `PassiveOpens` counter): the window's mean and its busiest second. Null where the
    /// counter cannot be read. Requests per second where `requests_are_connections`.
    pub accepts_per_second: Option<f64>,
    pub accepts_per_second_max: Option<f64>,
    /// Whose connections those are: `listener` (the namespace's one TCP listening port) or
    /// `namespace` (shared by its listeners: several ports, a unix socket or a Passenger group).
    pub accepts_scope: AcceptsScope,
    /// False when an event loop in the namespace held a connection for a second or longer in
    /// the window (keep-alive clients, streams), or when an event loop (a front: nginx,
    /// Envoy) shares the namespace with a worker pool listening on TCP (each request through
    /// it may be counted twice, or its upstream connections kept): connections are then not
    /// requests, and the accept rate is not a request rate.
    pub requests_are_connections: bool,
    /// Deepest accept queue seen (connections the kernel accepted that no worker took yet).
    pub queue_max: u32,
    /// The accept queue's limit (listen(2) backlog, capped by net.core.somaxconn).
    pub backlog: u32,
    /// busy_mean / capacity.
    pub utilization: f64,
    /// Time with every worker busy (share of samples with all busy × window length).
    pub saturated_seconds: f64,
    /// CFS periods in the window, of them throttled, and the time throttled (the container's
    /// cgroup `cpu.stat` deltas); null where no cpu.stat with throttling counters is found.
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_seconds: Option<f64>,
    /// Samples taken in the window.
    pub samples: u64,
    /// Inode of the listener's network namespace.
    pub netns: u64,
    pub worker_pids: Vec<i32>,
    /// Where `busy_*` comes from: `processes` (the workers' own accepted connections), or
    /// `connections` (a sidecar that cannot see the server's processes: the connections
    /// accepted on the port, one per busy worker for sync prefork servers; `workers` and
    /// `capacity` are then 0, unknown).
    pub busy_source: BusySource,
    /// The workload that owns the pod (from its ownerReferences); null outside known pods.
    pub workload: Option<crate::pod::Workload>,
    /// Saturated seconds since the agent started (for the Prometheus counter).
    #[serde(skip)]
    pub saturated_seconds_total: f64,
}

/// Where a listener's busy figures come from (see `ListenerReport::busy_source`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BusySource {
    #[default]
    Processes,
    Connections,
}

/// Whose accepted connections a listener's `accepts_per_second` counts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AcceptsScope {
    Listener,
    Namespace,
}

#[cfg(test)]
impl ListenerReport {
    /// A quiet gunicorn listener on `port` outside any pod, for tests to change what they
    /// test (`ListenerReport { busy_mean: 2.0, ..ListenerReport::test(8000) }`).
    pub(crate) fn test(port: u16) -> ListenerReport {
        ListenerReport {
            pod: None,
            container: None,
            address: "0.0.0.0".into(),
            port: Some(port),
            process: "gunicorn".into(),
            workers: 1,
            threads: 1,
            threads_known: false,
            capacity: 1,
            model: super::model::Model::Prefork,
            busy_mean: 0.0,
            busy_max: 0,
            connections_mean: 0.0,
            connections_max: 0,
            connections_kept_max: 0,
            accepts_per_second: None,
            accepts_per_second_max: None,
            accepts_scope: AcceptsScope::Listener,
            requests_are_connections: true,
            queue_max: 0,
            backlog: 0,
            utilization: 0.0,
            saturated_seconds: 0.0,
            cpu_periods: None,
            cpu_throttled_periods: None,
            cpu_throttled_seconds: None,
            samples: 1,
            netns: 1,
            worker_pids: vec![],
            busy_source: BusySource::Processes,
            workload: None,
            saturated_seconds_total: 0.0,
        }
    }
}
