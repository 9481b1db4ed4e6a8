//! HPAOverScaling: for each HorizontalPodAutoscaler, the replicas its workload's measured busy
//! workers need: needed = ceil(busy p95 / (capacity per pod × target utilization)), capacity
//! being workers × threads per worker (1 for prefork servers, Puma's pool size). Over-scaled
//! when replicas > needed × (1 + margin); "sustained" is the rule's `for`. The fix is an
//! autoscaling/v2 HPA that scales on busy workers per pod (a Pods metric, AverageValue).

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::fleet::WorkloadSnapshot;
use crate::kube::HpaInfo;
use serde_json::json;
use std::time::{Duration, SystemTime};

pub struct OverScaling(pub Thresholds);

/// Replicas the requests in service need (at least 1).
pub fn needed(busy_p95: f64, capacity_per_pod: u32, target_utilization: f64) -> u32 {
    let per_pod = capacity_per_pod as f64 * target_utilization;
    if per_pod <= 0.0 {
        return 1;
    }
    // A hair of tolerance so 14.0000001 (sums of floats) does not become 15.
    ((busy_p95 / per_pod) - 1e-9).ceil().max(1.0) as u32
}

/// A Kubernetes quantity for a target average: whole numbers plain, else milli-units.
pub fn quantity(v: f64) -> String {
    let milli = (v * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// The ready-to-apply HPA.
pub fn hpa_yaml(h: &HpaInfo, metric: &str, average: &str, min: u32, max: u32) -> String {
    // Deployments, StatefulSets and ReplicaSets are all apps/v1.
    let api = "apps/v1";
    format!(
        "apiVersion: autoscaling/v2\n\
         kind: HorizontalPodAutoscaler\n\
         metadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  scaleTargetRef:\n    apiVersion: {api}\n    kind: {kind}\n    name: {target}\n\
         \x20 minReplicas: {min}\n  maxReplicas: {max}\n\
         \x20 metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: {metric}\n\
         \x20     target:\n        type: AverageValue\n        averageValue: \"{average}\"\n",
        name = h.name,
        ns = h.namespace,
        kind = h.target_kind,
        target = h.target_name,
    )
}

/// "4 workers" for prefork pools, "8 (2 workers × 4 threads)" for threaded ones, with
/// "assumed" when the server did not state its threads.
fn capacity_words(w: &WorkloadSnapshot) -> String {
    if w.threads_per_worker <= 1 && w.capacity_per_pod == w.workers_per_pod {
        let assumed = if w.threads_known {
            ""
        } else {
            ", 1 thread each assumed"
        };
        return format!("{} workers{assumed}", w.workers_per_pod);
    }
    format!(
        "{} ({} workers × {} threads{})",
        w.capacity_per_pod,
        w.workers_per_pod,
        w.threads_per_worker,
        if w.threads_known { "" } else { ", assumed" }
    )
}

impl OverScaling {
    fn workload<'a>(
        &self,
        input: &'a Input,
        h: &HpaInfo,
    ) -> Option<(&'a str, &'a WorkloadSnapshot)> {
        input.fleet.clusters.iter().find_map(|c| {
            c.workloads
                .iter()
                .find(|w| {
                    w.namespace == h.namespace
                        && w.name == h.target_name
                        && w.kind.eq_ignore_ascii_case(&h.target_kind)
                })
                .map(|w| (c.name.as_str(), w))
        })
    }
}

impl Rule for OverScaling {
    fn id(&self) -> &'static str {
        "HPAOverScaling"
    }

    fn for_duration(&self) -> Duration {
        self.0.hpa_for
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let t = &self.0;
        let mut out = Vec::new();
        for h in &input.kube.hpas {
            let Some((cluster, w)) = self.workload(input, h) else {
                continue;
            };
            if w.capacity_per_pod == 0
                || w.windows == 0
                || w.history_seconds < t.hpa_min_history.as_secs_f64()
            {
                continue;
            }
            let target = input
                .kube
                .target(&h.target_kind, &h.namespace, &h.target_name);
            let Some(replicas) = h
                .current_replicas
                .or_else(|| target.and_then(|t| t.replicas.or(t.spec_replicas)))
            else {
                continue;
            };
            let need = needed(w.busy_p95, w.capacity_per_pod, t.hpa_target_utilization);
            if replicas as f64 <= need as f64 * (1.0 + t.hpa_margin) {
                continue;
            }
            let per_pod = w.capacity_per_pod as f64 * t.hpa_target_utilization;
            let capacity = capacity_words(w);
            let average = quantity(per_pod);
            let min = h.min_replicas.min(need).max(1);
            let max = h.max_replicas.max(need);
            let yaml = hpa_yaml(h, &t.hpa_metric, &average, min, max);
            let mut advice = Vec::new();
            if h.min_replicas > need {
                advice.push(format!(
                    "minReplicas {} alone keeps {} more pods than needed: lower it to {min}",
                    h.min_replicas,
                    h.min_replicas - need
                ));
            }
            let fix = format!(
                "Scale on busy workers instead: {} busy of {capacity} per pod ({:.0}% target utilization) needs {need} replicas for the measured busy p95 {:.1}.{}\n{yaml}",
                r3(per_pod),
                t.hpa_target_utilization * 100.0,
                w.busy_p95,
                if advice.is_empty() {
                    String::new()
                } else {
                    format!(" {}.", advice.join("; "))
                }
            );
            out.push(Finding {
                rule: self.id().into(),
                severity: Severity::Warning,
                subject: Subject {
                    cluster: cluster.to_string(),
                    namespace: Some(h.namespace.clone()),
                    workload: Some(h.target_name.clone()),
                    ..Default::default()
                },
                summary: format!(
                    "{} {}/{}: {replicas} replicas where busy workers need {need} (busy p95 {:.1} over {capacity} per pod at {:.0}%)",
                    h.target_kind,
                    h.namespace,
                    h.target_name,
                    w.busy_p95,
                    t.hpa_target_utilization * 100.0
                ),
                evidence: evidence([
                    ("hpa", json!(h.name)),
                    ("replicas", json!(replicas)),
                    ("needed_replicas", json!(need)),
                    ("workers_per_pod", json!(w.workers_per_pod)),
                    ("threads_per_worker", json!(w.threads_per_worker)),
                    ("threads_known", json!(w.threads_known)),
                    ("capacity_per_pod", json!(w.capacity_per_pod)),
                    ("busy_mean", json!(r3(w.busy_mean))),
                    ("busy_p95", json!(r3(w.busy_p95))),
                    ("busy_max", json!(r3(w.busy_max))),
                    ("queue_max", json!(w.queue_max)),
                    ("history_seconds", json!(r3(w.history_seconds))),
                    ("hpa_metrics", json!(h.metrics)),
                    ("hpa_min_replicas", json!(h.min_replicas)),
                    ("hpa_max_replicas", json!(h.max_replicas)),
                    ("target_utilization", json!(t.hpa_target_utilization)),
                    ("margin", json!(t.hpa_margin)),
                    ("suggested_average_value", json!(average)),
                    ("suggested_min_replicas", json!(min)),
                    ("suggested_max_replicas", json!(max)),
                ]),
                fix,
                cost: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetSnapshot;
    use crate::kube::{KubeView, TargetInfo};

    fn input(
        busy_p95: f64,
        workers: u32,
        replicas: Option<u32>,
        min: u32,
    ) -> (FleetSnapshot, KubeView) {
        let w = WorkloadSnapshot {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            workers_per_pod: workers,
            threads_per_worker: 1,
            threads_known: true,
            capacity_per_pod: workers,
            busy_mean: busy_p95 * 0.6,
            busy_p95,
            busy_max: busy_p95 * 1.1,
            history_seconds: 3600.0,
            windows: 360,
            ..Default::default()
        };
        let f = FleetSnapshot::one_cluster("prod", vec![], vec![w]);
        let mut k = KubeView {
            hpas: vec![HpaInfo {
                namespace: "shop".into(),
                name: "web".into(),
                target_kind: "Deployment".into(),
                target_name: "web".into(),
                min_replicas: min,
                max_replicas: 300,
                current_replicas: replicas,
                desired_replicas: replicas,
                metrics: vec!["Resource cpu Utilization 50".into()],
            }],
            ..Default::default()
        };
        k.targets.insert(
            ("Deployment".into(), "shop".into(), "web".into()),
            TargetInfo {
                spec_replicas: Some(200),
                replicas: Some(200),
                ready_replicas: Some(200),
            },
        );
        (f, k)
    }

    fn run(f: &FleetSnapshot, k: &KubeView, t: Thresholds) -> Vec<Finding> {
        OverScaling(t).evaluate(&Input { fleet: f, kube: k }, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn needed_replicas() {
        // The example: 400 busy at peak, and a target of 2 busy per pod → 200.
        assert_eq!(needed(400.0, 4, 0.5), 200);
        assert_eq!(needed(400.0, 4, 0.7), 143); // 400 / 2.8 = 142.86
        assert_eq!(needed(0.0, 4, 0.7), 1);
        assert_eq!(needed(14.0, 4, 0.5), 7);
        assert_eq!(needed(14.01, 4, 0.5), 8);
        assert_eq!(quantity(2.8), "2800m");
        assert_eq!(quantity(2.0), "2");
    }

    #[test]
    fn over_scaled_at_the_margin_edge() {
        // busy p95 56 over 4 workers × 0.7 = 2.8 per pod → needed 20; margin 0.5 → over 30.
        let t = Thresholds::default();
        let table: &[(Option<u32>, bool)] = &[
            (Some(30), false),
            (Some(31), true),
            (Some(200), true),
            (Some(20), false),
            (None, true), // no HPA status: the Deployment's 200 replicas
        ];
        for &(replicas, want) in table {
            let (f, k) = input(56.0, 4, replicas, 2);
            let got = run(&f, &k, t.clone());
            assert_eq!(!got.is_empty(), want, "replicas {replicas:?}: {got:?}");
            if let Some(g) = got.first() {
                assert_eq!(g.evidence["needed_replicas"], 20);
                assert_eq!(g.evidence["replicas"], replicas.unwrap_or(200));
                assert_eq!(g.subject.workload.as_deref(), Some("web"));
                assert_eq!(g.subject.cluster, "prod");
            }
        }
        // margin 0: anything above needed.
        let (f, k) = input(56.0, 4, Some(21), 2);
        let t0 = Thresholds {
            hpa_margin: 0.0,
            ..Thresholds::default()
        };
        assert_eq!(run(&f, &k, t0).len(), 1);
    }

    #[test]
    fn fix_is_an_hpa_on_busy_workers() {
        let (f, k) = input(400.0, 4, Some(600), 250);
        let t = Thresholds {
            hpa_target_utilization: 0.5,
            ..Thresholds::default()
        };
        let g = &run(&f, &k, t)[0];
        assert_eq!(g.evidence["needed_replicas"], 200);
        assert_eq!(g.evidence["suggested_average_value"], "2");
        assert_eq!(g.evidence["suggested_min_replicas"], 200);
        assert_eq!(g.evidence["suggested_max_replicas"], 300);
        assert_eq!(g.evidence["hpa_metrics"][0], "Resource cpu Utilization 50");
        let yaml = g.fix.split_once('\n').unwrap().1;
        let expect = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicas: 200\n  maxReplicas: 300\n  metrics:\n  - type: Pods\n    pods:\n      metric:\n        name: headroom_workers_busy\n      target:\n        type: AverageValue\n        averageValue: \"2\"\n";
        assert_eq!(yaml, expect);
        assert!(
            g.fix.contains("minReplicas 250 alone keeps 50 more pods"),
            "{}",
            g.fix
        );
    }

    #[test]
    fn threaded_pods_are_sized_by_capacity() {
        // Puma 2 workers × 4 threads: capacity 8 per pod, × 0.7 = 5.6 busy threads per pod;
        // busy p95 56 → needed 10 (sized by workers alone it would be 40).
        let (mut f, k) = input(56.0, 2, Some(40), 2);
        let w = &mut f.clusters[0].workloads[0];
        (w.threads_per_worker, w.capacity_per_pod) = (4, 8);
        let got = run(&f, &k, Thresholds::default());
        let g = &got[0];
        assert_eq!(g.evidence["needed_replicas"], 10);
        assert_eq!(g.evidence["capacity_per_pod"], 8);
        assert_eq!(g.evidence["threads_per_worker"], 4);
        assert_eq!(g.evidence["suggested_average_value"], "5600m");
        assert!(
            g.fix
                .contains("5.6 busy of 8 (2 workers × 4 threads) per pod"),
            "{}",
            g.fix
        );
        assert!(
            g.summary.contains("over 8 (2 workers × 4 threads) per pod"),
            "{}",
            g.summary
        );
        // Threads the server did not state are said to be assumed.
        let (mut f, k) = input(56.0, 4, Some(40), 2);
        f.clusters[0].workloads[0].threads_known = false;
        let g = &run(&f, &k, Thresholds::default())[0];
        assert!(
            g.fix
                .contains("of 4 workers, 1 thread each assumed per pod"),
            "{}",
            g.fix
        );
    }

    #[test]
    fn too_little_history_or_no_workload_says_nothing() {
        let (mut f, k) = input(56.0, 4, Some(200), 2);
        f.clusters[0].workloads[0].history_seconds = 60.0;
        assert!(run(&f, &k, Thresholds::default()).is_empty());
        f.clusters[0].workloads[0].history_seconds = 600.0;
        f.clusters[0].workloads[0].name = "other".into();
        assert!(run(&f, &k, Thresholds::default()).is_empty());
    }
}
