//! NodeGroupPacking: per node group (its `consolidation_group_label`, Karpenter NodePool or EKS
//! node group label, else instance type + zone), the nodes its pods need at
//! `target_node_utilization` requested — with today's requests and with the recommended ones —
//! on its own instance type and on the catalog's candidates, each move's $/month and the DNS
//! peak it would put on an ENI (fewer, larger nodes carry more link-local DNS per ENI). The
//! cheapest move that keeps DNS under `consolidation_threshold` is the fix; when a cheaper one
//! would break DNS first, the fix says so and gives the NodeLocal DNSCache step. Money, not an
//! outage: severity info.

pub mod plan;

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::catalog::{Catalog, Cost};
use crate::fleet::NodeSnapshot;
use crate::kube::cluster::ClusterState;
use crate::kube::objects::NodeInfo;
use crate::kube::pod::PodInfo;
use plan::{Candidate, Params, Plan, Recommended};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rule's name.
pub const RULE: &str = "NodeGroupPacking";
/// Candidates listed in evidence, of those kept and of those ranked out.
const LISTED: usize = 5;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The rule, with the instance catalog that sizes and prices the candidates.
pub struct Packing {
    pub t: Thresholds,
    pub catalog: Arc<Catalog>,
}

/// A node group's members: (cluster, group) → nodes.
type Groups<'a> = BTreeMap<(String, String), Vec<&'a NodeInfo>>;

impl Packing {
    /// Pure: every group's finding from the cluster as watched, the agents' figures and the
    /// recommended requests (empty: today's).
    pub fn judge(
        &self,
        state: &ClusterState,
        fleet: &crate::fleet::FleetSnapshot,
        rec: &Recommended,
        now: SystemTime,
    ) -> Vec<Finding> {
        if !state.listed() {
            return Vec::new();
        }
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let agents: HashMap<&str, (&str, &NodeSnapshot)> = fleet
            .nodes()
            .map(|(c, n)| (n.name.as_str(), (c.name.as_str(), n)))
            .collect();
        let only = (fleet.clusters.len() == 1).then(|| fleet.clusters[0].name.as_str());
        let mut groups: Groups = BTreeMap::new();
        for n in state.nodes.items.values() {
            let cluster = agents.get(n.name.as_str()).map(|a| a.0).or(only);
            let group = super::scale_down::group_of(&self.t.consolidation_group_label, n);
            groups
                .entry((cluster.unwrap_or_default().to_string(), group))
                .or_default()
                .push(n);
        }
        let mut pods_of: HashMap<&str, Vec<&PodInfo>> = HashMap::new();
        for p in state.pods.items.values() {
            if !p.node.is_empty() && !p.long_terminating(now_s) {
                pods_of.entry(&p.node).or_default().push(p);
            }
        }
        let params = Params {
            target: self.t.target_node_utilization,
            dns_threshold: self.t.consolidation_threshold,
        };
        let mut out = Vec::new();
        for ((cluster, group), mut nodes) in groups {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let pods: Vec<&PodInfo> = nodes
                .iter()
                .flat_map(|n| pods_of.get(n.name.as_str()).into_iter().flatten().copied())
                .collect();
            let fleet_nodes: Vec<&NodeSnapshot> = nodes
                .iter()
                .filter_map(|n| agents.get(n.name.as_str()).map(|a| a.1))
                .collect();
            let Some(p) = plan::plan(&nodes, &pods, &fleet_nodes, rec, &self.catalog, params)
            else {
                continue;
            };
            let (Some(best), Some(now_usd)) = (p.best(), p.usd_now) else {
                continue;
            };
            if best.usd_per_month < now_usd {
                out.push(self.finding(cluster, &group, &p, best, now_usd));
            }
        }
        out
    }

    fn finding(
        &self,
        cluster: String,
        group: &str,
        p: &Plan,
        best: &Candidate,
        now_usd: f64,
    ) -> Finding {
        let saving = ((now_usd - best.usd_per_month) * 100.0).round() / 100.0;
        let dns_after = match (best.dns_peak, best.dns_utilization) {
            (Some(pk), Some(u)) => format!(
                "; busiest ENI after ≈ {pk:.0} link-local packets/s ({:.0}% of the limit)",
                u * 100.0
            ),
            _ => "; DNS after not measured (no headroom agents on these nodes)".into(),
        };
        let cand = |c: &Candidate| {
            json!({"instance_type": c.instance_type, "vcpu": c.size.vcpu,
                "memory_gib": r3(c.size.memory_mib as f64 / 1024.0), "max_enis": c.size.max_enis,
                "usd_per_hour": c.usd_per_hour, "nodes": c.nodes, "nodes_with_today_requests": c.nodes_today,
                "usd_per_month": c.usd_per_month, "dns_peak_per_eni_pps": c.dns_peak.map(f64::round),
                "dns_utilization": c.dns_utilization.map(r3), "keeps_dns": c.keeps_dns})
        };
        let res = |r: plan::Res| json!({"cpu_cores": r3(r.cpu), "memory_gib": r3(r.mem / GIB)});
        let dns = p.dns;
        Finding {
            rule: RULE.into(),
            severity: Severity::Info,
            subject: Subject {
                cluster,
                node_group: Some(group.to_string()),
                ..Default::default()
            },
            summary: format!(
                "node group {group}: {} × {} (${:.2}/month) → {} × {} (${:.2}/month) at {:.0}% requested, saving ${saving:.2}/month{dns_after}",
                p.nodes_now,
                p.instance_type,
                now_usd,
                best.nodes,
                best.instance_type,
                best.usd_per_month,
                self.t.target_node_utilization * 100.0
            ),
            evidence: evidence([
                ("nodes_now", json!(p.nodes_now)),
                ("instance_type_now", json!(p.instance_type)),
                ("region", json!(p.region)),
                ("usd_per_month_now", json!(now_usd)),
                ("target_node_utilization", json!(self.t.target_node_utilization)),
                ("nodes_needed_today_requests", json!(p.needed_today)),
                ("nodes_needed_recommended", json!(p.needed_recommended)),
                ("requests_today", res(p.demand_today.pods)),
                ("requests_recommended", res(p.demand.pods)),
                ("per_node_daemonsets", res(p.demand.per_node)),
                ("pods_moving", json!(p.demand.pods_moving)),
                ("pods_with_recommendation", json!(p.demand.pods_recommended)),
                ("instance_type_after", json!(best.instance_type)),
                ("nodes_after", json!(best.nodes)),
                ("usd_per_month_after", json!(best.usd_per_month)),
                ("saving_usd_per_month", json!(saving)),
                ("dns_peak_after_pps", json!(best.dns_peak.map(f64::round))),
                ("dns_utilization_after", json!(best.dns_utilization.map(r3))),
                ("dns_utilization_now", json!(dns.map(|d| r3(d.worst_now)))),
                ("dns_nodes_measured", json!(dns.map(|d| d.nodes_measured).unwrap_or(0))),
                ("dns_threshold", json!(self.t.consolidation_threshold)),
                ("candidates_judged", json!(p.judged)),
                ("candidates", json!(p.ranked.iter().take(LISTED).map(cand).collect::<Vec<_>>())),
                ("ranked_out_by_dns", json!(p.ranked_out.iter().take(LISTED).map(cand).collect::<Vec<_>>())),
            ]),
            fix: self.fix(group, p, best),
            cost: Some(Cost {
                usd_per_month: Some(saving),
                basis: format!(
                    "the saving: {} nodes now ${now_usd:.2}/month, {} × {} after ${:.2}/month (on demand × 730 h)",
                    p.nodes_now, best.nodes, best.instance_type, best.usd_per_month
                ),
            }),
        }
    }

    fn fix(&self, group: &str, p: &Plan, best: &Candidate) -> String {
        let t = &best.instance_type;
        let verb = if *t == p.instance_type {
            format!("Keep node group {group} on")
        } else {
            format!("Move node group {group} to")
        };
        let mut fix = vec![format!(
            "{verb} {t}: {} nodes at {:.0}% requested ({} with today's requests), ${:.2}/month.",
            best.nodes,
            self.t.target_node_utilization * 100.0,
            best.nodes_today
                .map(|n| n.to_string())
                .unwrap_or_else(|| "none fit".into()),
            best.usd_per_month
        )];
        if let (Some(cheap), Some(g)) = (p.ranked_out.first(), p.dns) {
            let limit = g.limit;
            let peak = cheap.dns_peak.unwrap_or(0.0);
            let step = match g.cache_share {
                Some(share) => {
                    let after = g.peak_after(cheap.nodes, cheap.size.max_enis, share);
                    format!(
                        "NodeLocal DNSCache first: measured from the answers' TTLs it takes ≈ {:.0}% of the DNS off, so that peak would be ≈ {after:.0}/s ({:.0}% of the limit){}",
                        share * 100.0,
                        after / limit * 100.0,
                        if after / limit < self.t.consolidation_threshold {
                            format!(", and {} would then be safe", cheap.instance_type)
                        } else {
                            ", still over: keep the safer move".into()
                        }
                    )
                }
                None => "NodeLocal DNSCache first (these agents do not measure what a cache would answer: judge the move again once it runs)".into(),
            };
            fix.push(format!(
                "DNS breaks first on the cheaper {} ({} nodes, ${:.2}/month): its busiest ENI would send ≈ {peak:.0} link-local packets/s, {:.0}% of the {limit:.0}/s limit. To take that move, run {step}.",
                cheap.instance_type,
                cheap.nodes,
                cheap.usd_per_month,
                peak / limit * 100.0,
            ));
        }
        if let Some(pool) = group.strip_prefix("karpenter.sh/nodepool=") {
            fix.push(format!(
                "Karpenter: limit the NodePool to {t} (keep your own nodeClassRef and other requirements); its consolidation (WhenEmptyOrUnderutilized, the default) then packs the pods:\n\
apiVersion: karpenter.sh/v1\n\
kind: NodePool\n\
metadata:\n  name: {pool}\n\
spec:\n  template:\n    spec:\n      nodeClassRef:\n        group: karpenter.k8s.aws\n        kind: EC2NodeClass\n        name: default\n      requirements:\n        - key: node.kubernetes.io/instance-type\n          operator: In\n          values: [\"{t}\"]"
            ));
        } else if *t == p.instance_type {
            let name = group.rsplit(['=', '/']).next().unwrap_or(group);
            fix.push(format!(
                "Node group: scale it to {} nodes, e.g. `eksctl scale nodegroup --cluster CLUSTER --name {name} --nodes {}`; the Cluster Autoscaler keeps it there when its `--scale-down-utilization-threshold` is near {:.2}.",
                best.nodes, best.nodes, self.t.target_node_utilization
            ));
        } else {
            let name = group.rsplit(['=', '/']).next().unwrap_or(group);
            fix.push(format!(
                "Node group: create one of {t} and drain the old nodes into it, e.g. `eksctl create nodegroup --cluster CLUSTER --name {name}-{} --node-type {t} --nodes {} --nodes-min {}`, then `kubectl drain` the {} nodes of {group} one by one.",
                t.replace('.', "-"),
                best.nodes,
                best.nodes,
                p.nodes_now
            ));
        }
        fix.join("\n")
    }
}

impl Rule for Packing {
    fn id(&self) -> &'static str {
        RULE
    }

    fn for_duration(&self) -> Duration {
        self.t.consolidation_for
    }

    fn evaluate(&self, input: &Input, now: SystemTime) -> Vec<Finding> {
        let state = input.kube.cluster.read();
        let rec = recommended(&state, input.fleet, &self.t.sizing);
        self.judge(&state, input.fleet, &rec, now)
    }
}

/// RequestsRightSizing's recommended requests (one pod's, per workload with enough measured
/// history) for the cluster the collector watches: the fleet cluster holding most of its nodes.
/// Empty without measured pod use: the plan then counts with today's requests.
pub fn recommended(
    state: &ClusterState,
    fleet: &crate::fleet::FleetSnapshot,
    sizing: &super::rightsizing::Sizing,
) -> Recommended {
    let watched = |c: &&crate::fleet::ClusterSnapshot| {
        c.nodes
            .iter()
            .filter(|n| state.nodes.items.values().any(|k| k.name == n.name))
            .count()
    };
    let Some(cluster) = fleet.clusters.iter().max_by_key(watched) else {
        return Recommended::new();
    };
    super::rightsizing::recommended_requests(&cluster.sizing, sizing)
        .into_iter()
        .map(|(k, r)| (k, (r.cpu_cores, r.memory_bytes)))
        .collect()
}

#[cfg(test)]
mod tests;
