//! The fix for each reason a pod (or node) pins its node: a PodDisruptionBudget, a Deployment,
//! an annotation patch or an autoscaler flag, concrete for that pod. YAML here is complete
//! objects (kubernetes-validate --strict accepts them); every string is JSON-quoted, a valid
//! YAML scalar that stays a string ("true", "1").

use super::Reason;
use crate::kube::objects::PdbInfo;
use crate::kube::pod::{PodInfo, DO_NOT_DISRUPT, SAFE_TO_EVICT, SAFE_TO_EVICT_LOCAL_VOLUMES};
use crate::kube::select::{Op, Selector};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Labels a controller adds per pod or per revision: never part of a workload's selector.
const PER_POD_LABELS: [&str; 5] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

/// A string as a YAML scalar that stays a string.
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The pod's labels that select its whole workload.
pub fn workload_labels(p: &PodInfo) -> BTreeMap<&str, &str> {
    p.labels
        .iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn match_labels_yaml(out: &mut String, indent: &str, labels: &BTreeMap<&str, &str>) {
    for (k, v) in labels {
        let _ = writeln!(out, "{indent}{}: {}", q(k), q(v));
    }
}

fn selector_yaml(out: &mut String, s: &Selector) {
    out.push_str("  selector:\n");
    if s.match_labels.is_empty() && s.exprs.is_empty() {
        out.push_str("    {}\n");
        return;
    }
    if !s.match_labels.is_empty() {
        out.push_str("    matchLabels:\n");
        for (k, v) in &s.match_labels {
            let _ = writeln!(out, "      {}: {}", q(k), q(v));
        }
    }
    if !s.exprs.is_empty() {
        out.push_str("    matchExpressions:\n");
        for r in &s.exprs {
            let op = match r.op {
                Op::In => "In",
                Op::NotIn => "NotIn",
                Op::Exists => "Exists",
                Op::DoesNotExist => "DoesNotExist",
                Op::Gt => "Gt",
                Op::Lt => "Lt",
                Op::Unknown => "Exists",
            };
            let _ = writeln!(out, "    - key: {}\n      operator: {op}", q(&r.key));
            if !r.values.is_empty() {
                out.push_str("      values:\n");
                for v in &r.values {
                    let _ = writeln!(out, "      - {}", q(v));
                }
            }
        }
    }
}

/// `kind/name` of the pod's workload, or `pod/name` for a bare pod.
fn owner_words(p: &PodInfo) -> String {
    match p.workload() {
        Some((k, n)) => format!("{k} {}/{n}", p.namespace),
        None => format!("pod {}/{}", p.namespace, p.name),
    }
}

/// A command that sets (value Some) or removes (None) annotation `key` where it lasts: on the
/// pod template of a Deployment, StatefulSet or DaemonSet, else on the pod itself.
fn annotate(p: &PodInfo, key: &str, value: Option<&str>) -> String {
    match p.workload() {
        Some((kind @ ("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"), name)) => {
            let kind = kind.to_lowercase();
            match value {
                Some(v) => {
                    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {key: v}}}}});
                    format!(
                        "kubectl -n {} patch {kind} {name} --type merge -p '{patch}'",
                        p.namespace
                    )
                }
                None => {
                    let path = format!(
                        "/spec/template/metadata/annotations/{}",
                        key.replace('~', "~0").replace('/', "~1")
                    );
                    let patch = serde_json::json!([{"op": "remove", "path": path}]);
                    format!(
                        "kubectl -n {} patch {kind} {name} --type json -p '{patch}'",
                        p.namespace
                    )
                }
            }
        }
        _ => match value {
            Some(v) => format!(
                "kubectl -n {} annotate pod {} {key}={} --overwrite",
                p.namespace,
                p.name,
                q(v)
            ),
            None => format!("kubectl -n {} annotate pod {} {key}-", p.namespace, p.name),
        },
    }
}

/// The PDB the autoscaler needs before it moves a kube-system pod.
pub fn kube_system_pdb(p: &PodInfo) -> String {
    let labels = workload_labels(p);
    let who = owner_words(p);
    if labels.is_empty() {
        return format!(
            "{who} has no labels a PodDisruptionBudget could select. If it may move, mark it:\n{}\n\
             Or run the Cluster Autoscaler with --skip-nodes-with-system-pods=false.",
            annotate(p, SAFE_TO_EVICT, Some("true"))
        );
    }
    let name = p.workload().map(|(_, n)| n).unwrap_or(&p.name);
    let mut y = format!(
        "Give {who} a PodDisruptionBudget (the autoscaler moves a kube-system pod only when one covers it):\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n",
        q(name),
        q(&p.namespace)
    );
    match_labels_yaml(&mut y, "      ", &labels);
    y.push_str("Or, if every kube-system pod may move: run the Cluster Autoscaler with --skip-nodes-with-system-pods=false.");
    y
}

/// A Deployment that would own a bare pod (its containers' names and images; the rest of the
/// spec comes from the pod).
pub fn controller_for(p: &PodInfo) -> String {
    let mut labels = workload_labels(p);
    let name = p.name.to_string();
    if labels.is_empty() {
        labels.insert("app", &name);
    }
    let mut y = format!(
        "Pod {}/{} has no controller, so nothing would recreate it elsewhere. Run it under a Deployment \
         (copy the rest of its spec — env, ports, volumes, resources — from `kubectl -n {} get pod {} -o yaml`):\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n",
        p.namespace, p.name, p.namespace, p.name, q(&p.name), q(&p.namespace)
    );
    match_labels_yaml(&mut y, "      ", &labels);
    y.push_str("  template:\n    metadata:\n      labels:\n");
    match_labels_yaml(&mut y, "        ", &labels);
    y.push_str("    spec:\n      containers:\n");
    if p.containers.is_empty() {
        y.push_str("      - name: \"main\"\n        image: \"REPLACE-WITH-THE-POD'S-IMAGE\"\n");
    }
    for c in &p.containers {
        let _ = writeln!(
            y,
            "      - name: {}\n        image: {}",
            q(&c.name),
            q(&c.image)
        );
    }
    let _ = write!(
        y,
        "Or, if losing it on scale-down is fine: {}",
        annotate(p, SAFE_TO_EVICT, Some("true"))
    );
    y
}

/// A pod of a controller the autoscaler does not know (`--skip-nodes-with-custom-controller-pods`).
pub fn custom_controller(p: &PodInfo) -> String {
    format!(
        "{} is not a kind the Cluster Autoscaler replicates (ReplicaSet, StatefulSet, Job, ReplicationController). \
         Run the autoscaler with --skip-nodes-with-custom-controller-pods=false, or mark its pods movable: {}",
        owner_words(p),
        annotate(p, SAFE_TO_EVICT, Some("true"))
    )
}

/// Local volumes named safe to lose, or the flag.
pub fn local_storage(p: &PodInfo) -> String {
    let all: Vec<&str> = p.local_volumes.iter().map(|v| &*v.name).collect();
    let blocking: Vec<String> = p
        .blocking_local_volumes()
        .map(|v| {
            format!(
                "{} ({})",
                v.name,
                if v.host_path { "hostPath" } else { "emptyDir" }
            )
        })
        .collect();
    format!(
        "Pod {}/{} has local storage: {}. If that data may be lost when the pod moves, name every local volume in \
         {SAFE_TO_EVICT_LOCAL_VOLUMES} on {}:\n{}\n\
         Or, for all pods: run the Cluster Autoscaler with --skip-nodes-with-local-storage=false.",
        p.namespace,
        p.name,
        blocking.join(", "),
        owner_words(p),
        annotate(p, SAFE_TO_EVICT_LOCAL_VOLUMES, Some(&all.join(",")))
    )
}

pub fn not_safe_to_evict(p: &PodInfo) -> String {
    format!(
        "{SAFE_TO_EVICT}: \"false\" on {} forbids moving it. If it may move, remove the annotation:\n{}",
        owner_words(p),
        annotate(p, SAFE_TO_EVICT, None)
    )
}

pub fn do_not_disrupt(p: &PodInfo) -> String {
    format!(
        "{DO_NOT_DISRUPT}: \"true\" on {} keeps Karpenter from consolidating its node. If it may move, remove it:\n{}",
        owner_words(p),
        annotate(p, DO_NOT_DISRUPT, None)
    )
}

/// The PDB that allows no disruption, rewritten to allow one.
pub fn pdb(b: &PdbInfo) -> String {
    let mut why = String::new();
    if let Some(m) = &b.max_unavailable {
        let _ = write!(why, "maxUnavailable: {m}");
    }
    if let Some(m) = &b.min_available {
        let _ = write!(why, "minAvailable: {m}");
    }
    let health = if b.current_healthy < b.desired_healthy {
        format!(
            " Only {} of the {} pods it needs healthy are: make them healthy first, or the budget stays at 0.",
            b.current_healthy, b.desired_healthy
        )
    } else {
        String::new()
    };
    let mut y = format!(
        "PodDisruptionBudget {}/{} allows {} disruptions ({why}; {} of {} pods healthy, {} needed).{health} \
         Let one pod move at a time:\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  maxUnavailable: 1\n",
        b.namespace,
        b.name,
        b.disruptions_allowed,
        b.current_healthy,
        b.expected_pods,
        b.desired_healthy,
        q(&b.name),
        q(&b.namespace)
    );
    if let Some(s) = &b.selector {
        selector_yaml(&mut y, s);
    }
    y.trim_end().to_string()
}

pub fn no_place(p: &PodInfo, node_group: &str) -> String {
    let s = &p.scheduling;
    let mut constraints = Vec::new();
    if !s.node_selector.is_empty() {
        let sel: Vec<String> = s
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        constraints.push(format!("nodeSelector {}", sel.join(",")));
    }
    if s.required.is_some() {
        constraints.push("required node affinity".into());
    }
    if !s.tolerations.is_empty() {
        constraints.push(format!("{} tolerations", s.tolerations.len()));
    }
    format!(
        "No other ready, schedulable node has room for {} (requests {}m CPU, {:.1} GiB memory{}{}). \
         Lower its requests, relax its placement constraints, or let node group {node_group} grow a node that fits.",
        owner_words(p),
        p.cpu_m,
        p.memory as f64 / (1u64 << 30) as f64,
        if constraints.is_empty() { "" } else { "; " },
        constraints.join(", ")
    )
}

/// The fix of a node-level reason.
pub fn node(reason: Reason, node: &str) -> String {
    match reason {
        Reason::ScaleDownDisabled => format!(
            "The node is annotated cluster-autoscaler.kubernetes.io/scale-down-disabled: \"true\". If it may go:\n\
             kubectl annotate node {node} cluster-autoscaler.kubernetes.io/scale-down-disabled-"
        ),
        _ => format!(
            "The node is annotated {DO_NOT_DISRUPT}: \"true\". If Karpenter may consolidate it:\n\
             kubectl annotate node {node} {DO_NOT_DISRUPT}-"
        ),
    }
}
