//! The fleet at one instant, as the API, the status page, `/metrics` and the rules read it:
//! clusters → nodes → each part's snapshot, plus what ingest counted.

use super::generic::MetricSnapshot;
use super::interfaces::EniSnapshot;
use super::listeners::ListenerSnapshot;
use super::probes::ProbeSnapshot;
use super::workloads::WorkloadSnapshot;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the ingest side counts about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestStats {
    /// Data points taken into the fleet.
    pub points_accepted: u64,
    /// Data points refused by a limit (series per metric, metrics, interfaces, listeners or
    /// probes per node, nodes, top names), without a value or a needed attribute, or older
    /// than the history kept.
    pub points_rejected: u64,
    pub spans_received: u64,
    /// Spans sent on to `--traces-endpoint`.
    pub spans_forwarded: u64,
    /// Spans not forwarded: queue full, or the downstream refused or stayed unreachable.
    pub spans_forward_dropped: u64,
    /// Requests refused, by reason (`malformed`, `too_large`, `unsupported_media_type`, …).
    pub requests_rejected: BTreeMap<String, u64>,
    /// Nodes removed because they sent nothing for `node_expiry`.
    pub nodes_expired: u64,
    /// Listeners and probes removed (their node still reporting) after no data for
    /// `node_expiry`: the pod went away.
    pub listeners_probes_expired: u64,
    /// What each bound refused (points, nodes, series, bytes), by the bound's name: see
    /// [`super::Bound`].
    pub bounds: BTreeMap<&'static str, u64>,
}

/// The fleet at one instant: what `/api/v1/fleet` returns and what the rules read.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSnapshot {
    pub schema: &'static str,
    pub generated_at: String,
    /// Number of nodes in all clusters.
    pub nodes: usize,
    pub clusters: Vec<ClusterSnapshot>,
    pub ingest: IngestStats,
    /// For a page of `/api/v1/fleet`: the `after` cursor of the next page (`cluster/node`),
    /// absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterSnapshot {
    pub name: String,
    /// Shared with the fleet's nodes: a lean snapshot's are made as each report is taken.
    pub nodes: Vec<Arc<NodeSnapshot>>,
    /// Workloads (Deployment, StatefulSet, …) with listeners on any node of the cluster,
    /// built from the nodes' listener series: what the HPA rule reads.
    pub workloads: Vec<WorkloadSnapshot>,
    /// Each workload's measured pod use over `sizing_history` (RequestsRightSizing reads it;
    /// made at most every minute).
    #[serde(skip)]
    pub sizing: std::sync::Arc<std::collections::BTreeMap<super::WorkloadKey, super::WorkloadUse>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSnapshot {
    pub name: String,
    /// `service.name` of the sender (`headroom-agent` for agents).
    pub service_name: Option<String>,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    /// Set when the sender is a sidecar agent (one pod; EKS Fargate runs no DaemonSets):
    /// the node is that pod, its ENI the pod's own.
    pub sidecar: Option<Sidecar>,
    pub last_seen: String,
    pub interfaces: Vec<EniSnapshot>,
    /// Latest value of every other metric, per attribute set.
    pub metrics: Vec<MetricSnapshot>,
    /// How many metrics `metrics` has on the node, also where the snapshot leaves them out.
    #[serde(skip)]
    pub metric_count: usize,
    pub spans_received: u64,
    pub listeners: Vec<ListenerSnapshot>,
    pub probes: Vec<ProbeSnapshot>,
    /// Pods' NFS mounts (EFS included) in their newest window.
    pub storage: Vec<super::storage::MountSnapshot>,
}

/// A sidecar agent's pod (from its resource attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sidecar {
    /// `namespace/name`, when the agent knows it.
    pub pod: Option<String>,
    /// Identifies the pod's ENI where IMDS does not name it (Fargate).
    pub pod_ip: Option<String>,
}

/// The fleet JSON's schema.
pub const SCHEMA: &str = "headroom.fleet/v1";

impl FleetSnapshot {
    /// A fleet of one cluster stated by hand (rule and page tests, tools), generated at no
    /// particular time.
    pub fn one_cluster(
        name: &str,
        nodes: Vec<NodeSnapshot>,
        workloads: Vec<WorkloadSnapshot>,
    ) -> FleetSnapshot {
        FleetSnapshot {
            schema: SCHEMA,
            generated_at: String::new(),
            nodes: nodes.len(),
            clusters: vec![ClusterSnapshot {
                name: name.to_string(),
                nodes: nodes.into_iter().map(Arc::new).collect(),
                workloads,
                sizing: Default::default(),
            }],
            ingest: IngestStats::default(),
            next: None,
        }
    }

    /// Every node with its cluster.
    pub fn nodes(&self) -> impl Iterator<Item = (&ClusterSnapshot, &NodeSnapshot)> {
        self.clusters
            .iter()
            .flat_map(|c| c.nodes.iter().map(move |n| (c, &**n)))
    }

    /// Every interface with its cluster and node, in fleet order.
    pub fn interfaces(
        &self,
    ) -> impl Iterator<Item = (&ClusterSnapshot, &NodeSnapshot, &EniSnapshot)> {
        self.nodes()
            .flat_map(|(c, n)| n.interfaces.iter().map(move |i| (c, n, i)))
    }

    /// Every shadowed probe with its cluster and node, in fleet order.
    pub fn probes(
        &self,
    ) -> impl Iterator<Item = (&ClusterSnapshot, &NodeSnapshot, &ProbeSnapshot)> {
        self.nodes()
            .flat_map(|(c, n)| n.probes.iter().map(move |p| (c, n, p)))
    }

    /// Every interface with its cluster and node, highest peak utilization of the last hour
    /// first (then the latest window's).
    pub fn ranked_interfaces(&self) -> Vec<(&ClusterSnapshot, &NodeSnapshot, &EniSnapshot)> {
        let mut v: Vec<_> = self.interfaces().collect();
        let util = |i: &EniSnapshot| i.latest.as_ref().map(|w| w.utilization).unwrap_or(0.0);
        v.sort_by(|a, b| {
            b.2.utilization_last_hour
                .total_cmp(&a.2.utilization_last_hour)
                .then(util(b.2).total_cmp(&util(a.2)))
        });
        v
    }

    /// Every node with its cluster, highest interface peak utilization of the last hour first.
    pub fn ranked_nodes(&self) -> Vec<(&ClusterSnapshot, &NodeSnapshot, f64)> {
        let mut v: Vec<_> = self
            .nodes()
            .map(|(c, n)| {
                let u = n
                    .interfaces
                    .iter()
                    .map(|i| i.utilization_last_hour)
                    .fold(0.0, f64::max);
                (c, n, u)
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}
