//! RequestsRightSizing: per Deployment or StatefulSet, requests and limits from what its pods
//! really used over `sizing_history` (the agents' pod use, kept by [`crate::fleet::sizing`]),
//! the co-burst, and a safety margin; the fix is a strategic-merge patch, and the finding's cost
//! is the share of a node the change frees (negative: what raising it costs), per month.
//!
//! Per container: CPU request = max(p95 over the hours of the busiest window's mean, busiest
//! second × co-burst share) × (1 + margin); the co-burst share is the most of the workload's
//! pods on one node that were above their request at the same second, over its pods there —
//! pods that never burst together need not each reserve their burst. CPU limit = busiest
//! second × (1 + margin), at least the request. Memory request = limit = the highest memory ×
//! (1 + margin) (memory is not compressible: a pod over its request is the first evicted).
//!
//! [`RecommendedRequests`] is the plain result other rules consume (NodeGroupPacking).

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject};
use crate::catalog::{Catalog, Cost};
use crate::fleet::{ContainerUse, WorkloadKey, WorkloadUse};
use crate::kube::objects::REGION;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One pod's recommended requests (the sum over its containers): CPU in cores, memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodRequests {
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// Workload (namespace, kind, name) → one pod's recommended requests: what NodeGroupPacking
/// takes to count the nodes a group needs with the recommended requests.
pub type RecommendedRequests = BTreeMap<WorkloadKey, PodRequests>;

/// One container's recommended resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    pub cpu_request: f64,
    pub cpu_limit: f64,
    pub memory_request: u64,
    pub memory_limit: u64,
}

/// Smallest requests recommended: 10 millicores, 16 MiB.
pub const MIN_CPU: f64 = 0.01;
pub const MIN_MEMORY: u64 = 16 << 20;
const MIB: u64 = 1 << 20;

/// The rule's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Added on top of measured use (0.15 = 15 %).
    pub margin: f64,
    /// Hours of history a workload needs before it is sized.
    pub min_hours: usize,
    /// A change smaller than this share of the current request (or than 50 m / 64 MiB) is
    /// not worth a finding.
    pub min_change: f64,
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing {
            margin: 0.15,
            min_hours: 6,
            min_change: 0.2,
        }
    }
}

/// `x` rounded up to a multiple of `step` (float error below a ten-thousandth of a step, as
/// from the history's f32 figures, is not a step more).
fn up(x: f64, step: f64) -> f64 {
    ((x / step - 1e-4).ceil() * step * 1e6).round() / 1e6
}

/// Pure: one container's recommendation from its use and the workload's co-burst share
/// (None: never measured, taken as 1: every pod bursts together).
pub fn recommend(c: &ContainerUse, co_burst: Option<f64>, margin: f64) -> Recommendation {
    let share = co_burst.unwrap_or(1.0).clamp(0.0, 1.0);
    let m = 1.0 + margin.max(0.0);
    let cpu_request = up(c.cpu_mean_p95.max(c.cpu_peak * share) * m, 0.005).max(MIN_CPU);
    let cpu_limit = up(c.cpu_peak * m, 0.005).max(cpu_request);
    let memory = ((c.memory_peak as f64 * m / MIB as f64).ceil() as u64 * MIB).max(MIN_MEMORY);
    Recommendation {
        cpu_request,
        cpu_limit,
        memory_request: memory,
        memory_limit: memory,
    }
}

/// Workloads this rule sizes.
fn sized(key: &WorkloadKey) -> bool {
    matches!(key.1.as_str(), "Deployment" | "StatefulSet")
}

/// Pure: every Deployment's and StatefulSet's recommended pod requests, for workloads with at
/// least `s.min_hours` of history.
pub fn recommended_requests(
    sizing: &BTreeMap<WorkloadKey, WorkloadUse>,
    s: &Sizing,
) -> RecommendedRequests {
    sizing
        .iter()
        .filter(|(k, u)| sized(k) && u.hours >= s.min_hours)
        .map(|(k, u)| {
            let recs = u
                .containers
                .values()
                .map(|c| recommend(c, u.co_burst, s.margin));
            let (cpu, mem) = recs.fold((0.0, 0), |(c, m), r| {
                (c + r.cpu_request, m + r.memory_request)
            });
            let r = PodRequests {
                cpu_cores: r3(cpu),
                memory_bytes: mem,
            };
            (k.clone(), r)
        })
        .collect()
}

/// A CPU quantity in millicores (`250m`), whole cores plain.
pub fn cpu_quantity(cores: f64) -> String {
    super::kubeyaml::quantity(cores)
}

/// Memory in Mi (recommendations are whole MiB).
pub fn memory_quantity(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(MIB))
}

/// The strategic-merge patch setting every container's resources (containers merge by name):
/// `kubectl -n NS patch KIND NAME --patch-file requests.yaml`.
pub fn patch_yaml(key: &WorkloadKey, recs: &[(String, Recommendation)]) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut y = format!(
        "apiVersion: apps/v1\nkind: {}\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  template:\n    spec:\n      containers:\n",
        key.1,
        q(&key.2),
        q(&key.0)
    );
    for (name, r) in recs {
        let _ = write!(
            y,
            "      - name: {}\n        resources:\n          requests:\n            cpu: {}\n            memory: {}\n          limits:\n            cpu: {}\n            memory: {}\n",
            q(name),
            q(&cpu_quantity(r.cpu_request)),
            q(&memory_quantity(r.memory_request)),
            q(&cpu_quantity(r.cpu_limit)),
            q(&memory_quantity(r.memory_limit)),
        );
    }
    y
}

/// Pure: the node share `pods` pods free per month when each frees `cpu` cores and `memory`
/// bytes (negative: what raising costs): the larger of the CPU and memory shares of a node
/// of `vcpu` and `memory_mib`, times its price.
pub fn freed_per_month(
    cpu: f64,
    memory: i64,
    pods: u32,
    vcpu: u32,
    memory_mib: u64,
    usd_per_month: f64,
) -> f64 {
    let c = cpu * pods as f64 / vcpu.max(1) as f64;
    let m = memory as f64 * pods as f64 / (memory_mib.max(1) * MIB) as f64;
    let share = if c.abs() >= m.abs() { c } else { m };
    (share * usd_per_month * 100.0).round() / 100.0
}

/// Whether `new` differs from `current` enough to change it.
fn material(current: Option<f64>, new: f64, min_change: f64, floor: f64) -> bool {
    match current {
        None => true,
        Some(c) => (c - new).abs() >= (min_change * c).max(floor),
    }
}

pub struct RequestsRightSizing {
    pub s: Sizing,
    pub catalog: Arc<Catalog>,
}

impl Rule for RequestsRightSizing {
    fn id(&self) -> &'static str {
        "RequestsRightSizing"
    }

    fn for_duration(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let mut out = Vec::new();
        for cluster in &input.fleet.clusters {
            for (key, u) in cluster.sizing.iter() {
                if !sized(key) || u.hours < self.s.min_hours {
                    continue;
                }
                let node = cluster.nodes.iter().find(|n| n.name == u.node);
                let itype = node.and_then(|n| n.instance_type.as_deref());
                let region = input
                    .kube
                    .node_labels
                    .get(&u.node)
                    .and_then(|l| l.get(REGION))
                    .map(String::as_str);
                let replicas = input
                    .kube
                    .target(&key.1, &key.0, &key.2)
                    .and_then(|t| t.spec_replicas)
                    .unwrap_or(u.pods.max(1));
                let cost = self.catalog.monthly(itype, region, false);
                let size = itype.and_then(|t| self.catalog.types.get(t));
                if let Some(f) = self.finding(&cluster.name, key, u, replicas, cost, size) {
                    out.push(f);
                }
            }
        }
        out
    }
}

impl RequestsRightSizing {
    /// Pure: the finding for one workload, if any container's requests should change.
    pub fn finding(
        &self,
        cluster: &str,
        key: &WorkloadKey,
        u: &WorkloadUse,
        replicas: u32,
        node_cost: Cost,
        node: Option<&crate::catalog::InstanceType>,
    ) -> Option<Finding> {
        let recs: Vec<(String, Recommendation)> = u
            .containers
            .iter()
            .map(|(n, c)| (n.clone(), recommend(c, u.co_burst, self.s.margin)))
            .collect();
        let change = recs.iter().any(|(n, r)| {
            let c = &u.containers[n];
            material(c.cpu_request, r.cpu_request, self.s.min_change, 0.05)
                || material(
                    c.memory_request.map(|b| b as f64),
                    r.memory_request as f64,
                    self.s.min_change,
                    (64 * MIB) as f64,
                )
        });
        if !change {
            return None;
        }
        let sum = |f: &dyn Fn(&ContainerUse, &Recommendation) -> f64| -> f64 {
            recs.iter().map(|(n, r)| f(&u.containers[n], r)).sum()
        };
        let cpu_now = sum(&|c, _| c.cpu_request.unwrap_or(0.0));
        let cpu_new = sum(&|_, r| r.cpu_request);
        let mem_now = sum(&|c, _| c.memory_request.unwrap_or(0) as f64) as i64;
        let mem_new = sum(&|_, r| r.memory_request as f64) as i64;
        let freed = match (node_cost.usd_per_month, node) {
            (Some(p), Some(t)) => Some(freed_per_month(
                cpu_now - cpu_new,
                mem_now - mem_new,
                replicas,
                t.vcpu,
                t.memory_mib,
                p,
            )),
            _ => None,
        };
        let cost = Cost {
            usd_per_month: freed,
            basis: match freed {
                Some(_) => format!(
                    "the node share {replicas} pods free on {} at {}",
                    u.node, node_cost.basis
                ),
                None => node_cost.basis.clone(),
            },
        };
        let peak = sum(&|c, _| c.cpu_peak);
        let mem_peak = sum(&|c, _| c.memory_peak as f64) as u64;
        let share = u.co_burst.unwrap_or(1.0);
        let summary = format!(
            "{}/{} {} requests {} CPU and {} per pod; over {} h its pods used {} CPU at their busiest second, {} at most, and {:.0} % of them were above their request at once: requests {} CPU and {} ({})",
            key.0,
            key.2,
            key.1,
            cpu_quantity(cpu_now),
            memory_quantity(mem_now.max(0) as u64),
            u.hours,
            cpu_quantity(peak),
            memory_quantity(mem_peak),
            share * 100.0,
            cpu_quantity(cpu_new),
            memory_quantity(mem_new as u64),
            match freed {
                Some(f) if f >= 0.0 => format!("frees ${f:.2}/month of node"),
                Some(f) => format!("costs ${:.2}/month more: the pods use more than they reserve", -f),
                None => "node price unknown".into(),
            }
        );
        let fix = format!(
            "kubectl -n {} patch {} {} --patch-file requests.yaml\n# requests.yaml (margin {:.0} %, co-burst share {:.2}):\n{}",
            key.0,
            key.1.to_ascii_lowercase(),
            key.2,
            self.s.margin * 100.0,
            share,
            patch_yaml(key, &recs)
        );
        Some(Finding {
            rule: "RequestsRightSizing".into(),
            severity: Severity::Info,
            subject: Subject {
                cluster: cluster.to_string(),
                namespace: Some(key.0.clone()),
                workload: Some(format!("{}/{}", key.1, key.2)),
                ..Subject::default()
            },
            summary,
            evidence: evidence([
                ("hours", json!(u.hours)),
                ("replicas", json!(replicas)),
                ("cpu_request_cores", json!(r3(cpu_now))),
                ("cpu_recommended_cores", json!(r3(cpu_new))),
                ("cpu_busiest_second_cores", json!(r3(peak))),
                ("memory_request_bytes", json!(mem_now)),
                ("memory_recommended_bytes", json!(mem_new)),
                ("memory_peak_bytes", json!(mem_peak)),
                ("co_burst_share", json!(r3(share))),
                ("usd_per_month_freed", json!(freed)),
            ]),
            fix,
            cost: Some(cost),
        })
    }
}

#[cfg(test)]
mod tests;
