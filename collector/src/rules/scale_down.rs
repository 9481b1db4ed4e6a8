//! ScaleDownBlocked: a node the autoscaler would remove (its requested share, the larger of
//! CPU and memory requests over allocatable, under `scale_down_utilization_threshold` for
//! `scale_down_for`) but cannot, with every pod that pins it, why, the fix, and what the node
//! costs while it stays. The reasons follow the autoscalers' own rules:
//! - Cluster Autoscaler nodes: its drainability rules in its order (mirror, long-terminating,
//!   DaemonSet and `safe-to-evict: "true"` pods never block; then not replicated, kube-system
//!   without a PDB, `safe-to-evict: "false"`, local storage — hostPath, emptyDir not on Memory,
//!   unless named in `safe-to-evict-local-volumes` — and a PDB allowing 0 disruptions), the
//!   node annotation `scale-down-disabled`, and pods no other node can take. Defaults of its
//!   flags assumed: --skip-nodes-with-system-pods, --skip-nodes-with-local-storage and
//!   --skip-nodes-with-custom-controller-pods true, DaemonSet and mirror pods counted in
//!   utilization, pods below priority -10 expendable.
//! - Karpenter nodes (`karpenter.sh/nodepool` label): `karpenter.sh/do-not-disrupt: "true"` on
//!   a pod or the node, a PDB allowing 0 disruptions, and pods no other node can take.

mod fixes;
mod place;

pub use fixes::q;

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::catalog::Catalog;
use crate::kube::cluster::ClusterState;
use crate::kube::objects::{NodeInfo, PdbInfo, INSTANCE_TYPE, REGION, ZONE};
use crate::kube::pod::PodInfo;
use place::Placer;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rule's name.
pub const RULE: &str = "ScaleDownBlocked";

/// Pods listed per finding (every reason is still counted).
pub const MAX_LISTED: usize = 20;

/// Labels that name a node's group when `consolidation_group_label` is unset, in this order.
const GROUP_LABELS: [&str; 4] = [
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/provisioner-name",
];

/// Priority below which the Cluster Autoscaler treats a pod as expendable (its
/// --expendable-pods-priority-cutoff default).
const EXPENDABLE_BELOW: i32 = -10;

/// Why a pod (or the node itself) keeps the node; the Cluster Autoscaler's own names where it
/// has one (`drain.BlockingPodReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    NotReplicated,
    UnmovableKubeSystemPod,
    NotSafeToEvictAnnotation,
    LocalStorageRequested,
    NotEnoughPdb,
    /// Karpenter: `karpenter.sh/do-not-disrupt: "true"` on the pod.
    DoNotDisrupt,
    /// No other node can take the pod (requests, node selector, affinity, taints).
    NoPlaceToGo,
    /// Node annotation `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`.
    ScaleDownDisabled,
    /// Node annotation `karpenter.sh/do-not-disrupt: "true"`.
    NodeDoNotDisrupt,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotReplicated => "NotReplicated",
            Reason::UnmovableKubeSystemPod => "UnmovableKubeSystemPod",
            Reason::NotSafeToEvictAnnotation => "NotSafeToEvictAnnotation",
            Reason::LocalStorageRequested => "LocalStorageRequested",
            Reason::NotEnoughPdb => "NotEnoughPdb",
            Reason::DoNotDisrupt => "DoNotDisrupt",
            Reason::NoPlaceToGo => "NoPlaceToGo",
            Reason::ScaleDownDisabled => "ScaleDownDisabled",
            Reason::NodeDoNotDisrupt => "NodeDoNotDisrupt",
        }
    }

    /// A few words for the summary.
    fn words(self) -> &'static str {
        match self {
            Reason::NotReplicated => "has no controller the autoscaler knows",
            Reason::UnmovableKubeSystemPod => "is a kube-system pod without a PodDisruptionBudget",
            Reason::NotSafeToEvictAnnotation => "is annotated safe-to-evict: \"false\"",
            Reason::LocalStorageRequested => "has local storage (emptyDir/hostPath)",
            Reason::NotEnoughPdb => "has a PodDisruptionBudget that allows 0 disruptions",
            Reason::DoNotDisrupt => "is annotated karpenter.sh/do-not-disrupt",
            Reason::NoPlaceToGo => "fits on no other node",
            Reason::ScaleDownDisabled => "node annotated scale-down-disabled",
            Reason::NodeDoNotDisrupt => "node annotated karpenter.sh/do-not-disrupt",
        }
    }
}

/// One thing that pins a node: a pod with its reasons (the first is the one the autoscaler
/// reports; fixing it may reveal the next), or the node itself (`pod` None).
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub reasons: Vec<Reason>,
    pub fix: String,
}

/// The rule, with the instance catalog that prices nodes.
pub struct Blocked {
    pub t: Thresholds,
    pub catalog: Arc<Catalog>,
}

/// What the rule computes for a node before it decides.
/// A pod's namespace and label set, by address (both interned).
type LabelKey = (*const u8, *const BTreeMap<String, String>);

struct Ctx<'a> {
    pdbs: &'a HashMap<&'a str, Vec<&'a PdbInfo>>,
    /// The PDBs covering each (namespace, label set): pods share both (interned), so 150 000
    /// pods need a few thousand selector matches, not millions.
    covering: std::cell::RefCell<HashMap<LabelKey, std::rc::Rc<Vec<&'a PdbInfo>>>>,
}

impl<'a> Ctx<'a> {
    fn pdbs_of(&self, p: &PodInfo) -> std::rc::Rc<Vec<&'a PdbInfo>> {
        let key = (p.namespace.as_ptr(), Arc::as_ptr(&p.labels));
        if let Some(v) = self.covering.borrow().get(&key) {
            return v.clone();
        }
        let v: std::rc::Rc<Vec<&'a PdbInfo>> = std::rc::Rc::new(
            self.pdbs
                .get(&*p.namespace)
                .into_iter()
                .flatten()
                .copied()
                .filter(|b| b.covers(&p.namespace, &p.labels))
                .collect(),
        );
        self.covering.borrow_mut().insert(key, v.clone());
        v
    }

    /// The first PDB covering `p` that allows no disruption.
    fn spent_pdb(&self, p: &PodInfo) -> Option<&'a PdbInfo> {
        self.pdbs_of(p)
            .iter()
            .copied()
            .find(|b| b.disruptions_allowed < 1)
    }

    /// The Cluster Autoscaler's blocking reasons for a pod, in its rules' order; empty when
    /// it may move (or never counts: mirror, DaemonSet, safe-to-evict "true", expendable).
    fn ca_reasons(&self, p: &PodInfo) -> Vec<Reason> {
        if p.mirror || p.daemonset || p.safe_to_evict == Some(true) || p.priority < EXPENDABLE_BELOW
        {
            return Vec::new();
        }
        let mut r = Vec::new();
        let replicated = p.controller.as_ref().is_some_and(|o| {
            matches!(
                &*o.kind,
                "ReplicaSet" | "StatefulSet" | "Job" | "ReplicationController"
            )
        });
        if !replicated {
            r.push(Reason::NotReplicated);
        }
        if &*p.namespace == "kube-system" && self.pdbs_of(p).is_empty() {
            r.push(Reason::UnmovableKubeSystemPod);
        }
        if p.safe_to_evict == Some(false) {
            r.push(Reason::NotSafeToEvictAnnotation);
        }
        if p.blocking_local_volumes().next().is_some() {
            r.push(Reason::LocalStorageRequested);
        }
        if self.spent_pdb(p).is_some() {
            r.push(Reason::NotEnoughPdb);
        }
        r
    }

    /// Karpenter's: do-not-disrupt and PDBs; DaemonSet and static pods never block.
    fn karpenter_reasons(&self, p: &PodInfo) -> Vec<Reason> {
        if p.mirror || p.daemonset {
            return Vec::new();
        }
        let mut r = Vec::new();
        if p.do_not_disrupt {
            r.push(Reason::DoNotDisrupt);
        }
        if self.spent_pdb(p).is_some() {
            r.push(Reason::NotEnoughPdb);
        }
        r
    }

    fn fix(&self, p: &PodInfo, reason: Reason, group: &str) -> String {
        match reason {
            Reason::NotReplicated if p.controller.is_none() => fixes::controller_for(p),
            Reason::NotReplicated => fixes::custom_controller(p),
            Reason::UnmovableKubeSystemPod => fixes::kube_system_pdb(p),
            Reason::NotSafeToEvictAnnotation => fixes::not_safe_to_evict(p),
            Reason::LocalStorageRequested => fixes::local_storage(p),
            Reason::NotEnoughPdb => self.spent_pdb(p).map(fixes::pdb).unwrap_or_default(),
            Reason::DoNotDisrupt => fixes::do_not_disrupt(p),
            Reason::NoPlaceToGo => fixes::no_place(p, group),
            Reason::ScaleDownDisabled | Reason::NodeDoNotDisrupt => String::new(),
        }
    }
}

/// Requested CPU and memory on each node (the autoscaler's sum: every pod that is not
/// long-terminating, DaemonSet and mirror pods included).
fn requested<'a>(pods: &HashMap<&'a str, Vec<&'a PodInfo>>) -> HashMap<&'a str, (u64, u64)> {
    pods.iter()
        .map(|(n, ps)| {
            let cpu = ps.iter().map(|p| p.cpu_m).fold(0u64, u64::saturating_add);
            let mem = ps.iter().map(|p| p.memory).fold(0u64, u64::saturating_add);
            (*n, (cpu, mem))
        })
        .collect()
}

/// The share of allocatable requested: (CPU, memory), None when allocatable is unknown or 0.
pub fn utilization(n: &NodeInfo, requested: (u64, u64)) -> Option<(f64, f64)> {
    let (cpu, mem) = (n.cpu_m.filter(|c| *c > 0)?, n.memory.filter(|m| *m > 0)?);
    Some((
        requested.0 as f64 / cpu as f64,
        requested.1 as f64 / mem as f64,
    ))
}

/// A node's group: `label=value` of `label` (the `consolidation_group_label`), else of the
/// first of [`GROUP_LABELS`] it carries, else `instance_type/zone`.
pub(crate) fn group_of(label: &str, n: &NodeInfo) -> String {
    if let Some(v) = (!label.is_empty()).then(|| n.label(label)).flatten() {
        return format!("{label}={v}");
    }
    for l in GROUP_LABELS {
        if let Some(v) = n.label(l) {
            return format!("{l}={v}");
        }
    }
    format!(
        "{}/{}",
        n.label(INSTANCE_TYPE).unwrap_or("unknown-type"),
        n.label(ZONE).unwrap_or("unknown-zone")
    )
}

impl Blocked {
    fn group(&self, n: &NodeInfo) -> String {
        group_of(&self.t.consolidation_group_label, n)
    }

    /// Pure: every node's finding from the cluster as watched.
    pub fn judge(
        &self,
        state: &ClusterState,
        cluster_of: &dyn Fn(&str) -> String,
        now: SystemTime,
    ) -> Vec<Finding> {
        if !state.listed() {
            return Vec::new();
        }
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let mut by_node: HashMap<&str, Vec<&PodInfo>> = HashMap::new();
        for p in state.pods.items.values() {
            if !p.node.is_empty() && !p.long_terminating(now_s) {
                by_node.entry(&p.node).or_default().push(p);
            }
        }
        let mut pdbs: HashMap<&str, Vec<&PdbInfo>> = HashMap::new();
        for b in state.pdbs.items.values() {
            pdbs.entry(b.namespace.as_str()).or_default().push(b);
        }
        let ctx = Ctx {
            pdbs: &pdbs,
            covering: Default::default(),
        };
        let requested = requested(&by_node);
        let mut nodes: Vec<&NodeInfo> = state.nodes.items.values().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut placer = Placer::new(&nodes, &requested);
        let min_age = self.t.scale_down_min_node_age.as_secs() as i64;
        let mut out = Vec::new();
        for n in &nodes {
            if !n.ready
                || n.created_s
                    .is_some_and(|c| now_s.saturating_sub(c) < min_age)
            {
                continue;
            }
            let req = requested.get(n.name.as_str()).copied().unwrap_or((0, 0));
            let Some((cpu_u, mem_u)) = utilization(n, req) else {
                continue;
            };
            let u = cpu_u.max(mem_u);
            if u >= self.t.scale_down_utilization_threshold {
                continue;
            }
            let mut pods: Vec<&PodInfo> = by_node.get(n.name.as_str()).cloned().unwrap_or_default();
            pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            let group = self.group(n);
            let karpenter = n.karpenter();
            let mut blockers = Vec::new();
            let node_reason = if karpenter {
                n.do_not_disrupt.then_some(Reason::NodeDoNotDisrupt)
            } else {
                n.scale_down_disabled.then_some(Reason::ScaleDownDisabled)
            };
            if let Some(r) = node_reason {
                blockers.push(Blocker {
                    namespace: None,
                    pod: None,
                    reasons: vec![r],
                    fix: fixes::node(r, &n.name),
                });
            }
            let mut reserved = HashMap::new();
            for p in &pods {
                let mut reasons = if karpenter {
                    ctx.karpenter_reasons(p)
                } else {
                    ctx.ca_reasons(p)
                };
                let moves = !(p.mirror || p.daemonset || p.priority < EXPENDABLE_BELOW);
                if reasons.is_empty() && moves && !placer.place(p, &n.name, &mut reserved) {
                    reasons.push(Reason::NoPlaceToGo);
                }
                if let Some(first) = reasons.first() {
                    blockers.push(Blocker {
                        namespace: Some(p.namespace.to_string()),
                        pod: Some(p.name.to_string()),
                        fix: ctx.fix(p, *first, &group),
                        reasons,
                    });
                }
            }
            if blockers.is_empty() {
                continue;
            }
            out.push(self.finding(
                n,
                &group,
                cluster_of(&n.name),
                &pods,
                &blockers,
                (cpu_u, mem_u),
                now_s,
            ));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        n: &NodeInfo,
        group: &str,
        cluster: String,
        pods: &[&PodInfo],
        blockers: &[Blocker],
        (cpu_u, mem_u): (f64, f64),
        now_s: i64,
    ) -> Finding {
        let u = cpu_u.max(mem_u);
        let itype = n.label(INSTANCE_TYPE);
        let spot = n.label("karpenter.sh/capacity-type") == Some("spot")
            || n.label("eks.amazonaws.com/capacityType") == Some("SPOT");
        let cost = self.catalog.monthly(itype, n.label(REGION), spot);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for b in blockers {
            *counts.entry(b.reasons[0].as_str()).or_default() += 1;
        }
        let listed: Vec<serde_json::Value> = blockers
            .iter()
            .take(MAX_LISTED)
            .map(|b| {
                json!({"namespace": b.namespace, "pod": b.pod, "reason": b.reasons[0].as_str(),
                    "other_reasons": b.reasons[1..].iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "fix": b.fix})
            })
            .collect();
        let first = &blockers[0];
        let who = match (&first.namespace, &first.pod) {
            (Some(ns), Some(p)) => format!("{ns}/{p} {}", first.reasons[0].words()),
            _ => first.reasons[0].words().to_string(),
        };
        let more = if blockers.len() > 1 {
            format!(" (and {} more)", blockers.len() - 1)
        } else {
            String::new()
        };
        let price = match cost.usd_per_month {
            Some(m) => format!("; it costs ${m:.2}/month"),
            None => "; its cost is unknown".to_string(),
        };
        let without = pods
            .iter()
            .filter(|p| !p.has_requests && !p.mirror && !p.daemonset)
            .count();
        let autoscaler = if n.karpenter() {
            "Karpenter"
        } else {
            "the Cluster Autoscaler"
        };
        let mut fix = String::new();
        let mut seen = std::collections::HashSet::new();
        for b in blockers.iter().take(MAX_LISTED) {
            if b.fix.is_empty() || !seen.insert(&b.fix) {
                continue;
            }
            if !fix.is_empty() {
                fix.push_str("\n\n");
            }
            fix.push_str(&b.fix);
        }
        if blockers.len() > MAX_LISTED {
            fix.push_str(&format!(
                "\n\n… {} more blockers in /api/v1/findings evidence counts.",
                blockers.len() - MAX_LISTED
            ));
        }
        Finding {
            rule: RULE.into(),
            severity: Severity::Info,
            subject: Subject {
                cluster,
                node: Some(n.name.clone()),
                node_group: Some(group.to_string()),
                ..Default::default()
            },
            summary: format!(
                "{} is {:.0}% requested (under {:.0}%) but {autoscaler} cannot remove it: {who}{more}{price}",
                n.name,
                u * 100.0,
                self.t.scale_down_utilization_threshold * 100.0
            ),
            evidence: evidence([
                ("utilization", json!(r3(u))),
                ("cpu_utilization", json!(r3(cpu_u))),
                ("memory_utilization", json!(r3(mem_u))),
                ("threshold", json!(self.t.scale_down_utilization_threshold)),
                ("autoscaler", json!(if n.karpenter() { "karpenter" } else { "cluster-autoscaler" })),
                ("instance_type", json!(itype)),
                ("region", json!(n.label(REGION))),
                ("node_group", json!(group)),
                ("pods", json!(pods.len())),
                ("pods_without_requests", json!(without)),
                ("node_age_seconds", json!(n.created_s.map(|c| now_s.saturating_sub(c)))),
                ("blockers", json!(blockers.len())),
                ("reasons", json!(counts)),
                ("blocking_pods", json!(listed)),
            ]),
            fix,
            cost: Some(cost),
        }
    }
}

impl Rule for Blocked {
    fn id(&self) -> &'static str {
        RULE
    }

    fn for_duration(&self) -> Duration {
        self.t.scale_down_for
    }

    fn evaluate(&self, input: &Input, now: SystemTime) -> Vec<Finding> {
        // The cluster a node's agent reports under; the fleet's only cluster for a node without one.
        let fleet = input.fleet;
        let by_node: HashMap<&str, &str> = fleet
            .nodes()
            .map(|(c, n)| (n.name.as_str(), c.name.as_str()))
            .collect();
        let only = (fleet.clusters.len() == 1).then(|| fleet.clusters[0].name.as_str());
        let cluster_of = |node: &str| {
            by_node
                .get(node)
                .copied()
                .or(only)
                .unwrap_or_default()
                .to_string()
        };
        let state = input.kube.cluster.read();
        let mut found = self.judge(&state, &cluster_of, now);
        if !found.is_empty() {
            self.dns_after_removal(&mut found, &state, fleet);
        }
        found
    }
}

impl Blocked {
    /// Where DNSConsolidationRisk and this rule meet: if a pinned node were freed and removed,
    /// its DNS load spread over the rest of its group (as the agents measured it) — would every
    /// remaining primary ENI stay under `consolidation_threshold` of the link-local limit?
    /// Added to the evidence as `dns_after_removal` when the group's nodes send DNS figures.
    fn dns_after_removal(
        &self,
        found: &mut [Finding],
        state: &ClusterState,
        fleet: &crate::fleet::FleetSnapshot,
    ) {
        let mut groups: HashMap<(&str, String), Vec<&crate::fleet::NodeSnapshot>> = HashMap::new();
        for (c, n) in fleet.nodes() {
            if let Some(info) = state.nodes.items.get(&n.name) {
                groups
                    .entry((c.name.as_str(), self.group(info)))
                    .or_default()
                    .push(n);
            }
        }
        for f in found {
            let (Some(node), Some(group)) = (&f.subject.node, &f.subject.node_group) else {
                continue;
            };
            let Some(members) = groups.get(&(f.subject.cluster.as_str(), group.clone())) else {
                continue;
            };
            let Some((worst, eni, peak, u)) = super::dns::after_removal(members, node) else {
                continue;
            };
            let keeps = u < self.t.consolidation_threshold;
            f.evidence.insert(
                "dns_after_removal".into(),
                json!({"worst_node": worst, "worst_eni": eni, "predicted_peak_pps": peak.round(),
                    "predicted_utilization": r3(u), "threshold": self.t.consolidation_threshold,
                    "keeps_under_threshold": keeps}),
            );
            if !keeps {
                f.summary.push_str(&format!(
                    " — once freed, removing it would put {worst} ({eni}) at {:.0}% of the link-local DNS limit (DNSConsolidationRisk)",
                    u * 100.0
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
