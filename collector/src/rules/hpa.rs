//! HPAOverScaling: for each HorizontalPodAutoscaler, the replicas its workload's measured busy
//! workers need: needed = ceil(busy p95 / (capacity per pod × target utilization)), capacity
//! being workers × threads per worker (1 for prefork servers, Puma's pool size). Over-scaled
//! when replicas > needed × (1 + margin); "sustained" is the rule's `for`. The fix speaks the
//! HPA's own metric where it can ([`super::hpa_terms`]: a request-rate metric's new target as
//! a patch of the HPA, or why a cpu utilization target cannot be computed), then offers an
//! autoscaling/v2 HPA that scales on busy workers per pod (a Pods metric, AverageValue).

use super::hpa_terms::{self, Terms};
pub use super::kubeyaml::quantity;
use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::fleet::WorkloadSnapshot;
use crate::kube::HpaInfo;
use serde_json::json;
use std::time::{Duration, SystemTime};

pub struct OverScaling(pub Thresholds);

/// Between the HPA and its KEDA form in the fix (the HPA's name follows).
pub const KEDA_INTRO: &str = "With KEDA instead of prometheus-adapter, the same scaling as a ScaledObject (KEDA makes the HPA from it, so it replaces HPA ";

/// Replicas the requests in service need (at least 1).
pub fn needed(busy_p95: f64, capacity_per_pod: u32, target_utilization: f64) -> u32 {
    let per_pod = capacity_per_pod as f64 * target_utilization;
    if per_pod <= 0.0 {
        return 1;
    }
    // A hair of tolerance so 14.0000001 (sums of floats) does not become 15.
    ((busy_p95 / per_pod) - 1e-9).ceil().max(1.0) as u32
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

/// The pods of a `kind` named `name`, as a PromQL regular expression on the `pod` label:
/// Deployment pods are `NAME-HASH-SUFFIX`, StatefulSet pods `NAME-ORDINAL`. Names may hold dots
/// (DNS subdomains): `[.]` needs no escaping inside a PromQL string.
fn pods_regex(kind: &str, name: &str) -> String {
    let name = name.replace('.', "[.]");
    match kind {
        "Deployment" => format!("{name}-[a-z0-9]+-[a-z0-9]+"),
        "StatefulSet" => format!("{name}-[0-9]+"),
        "ReplicaSet" => format!("{name}-[a-z0-9]+"),
        _ => format!("{name}-.+"),
    }
}

/// The same scaling as a KEDA ScaledObject (Prometheus scaler, for clusters with KEDA and no
/// prometheus-adapter): the workload's summed busy workers (per pod the max over its series, as
/// the adapter rule in deploy/overlays/prometheus has it) with `metricType: AverageValue`,
/// which the HPA KEDA makes divides by the replicas, as the Pods metric does.
pub fn keda_yaml(
    h: &HpaInfo,
    metric: &str,
    server: &str,
    average: &str,
    min: u32,
    max: u32,
) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\n\
         kind: ScaledObject\n\
         metadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: {kind}\n    name: {target}\n\
         \x20 minReplicaCount: {min}\n  maxReplicaCount: {max}\n\
         \x20 triggers:\n  - type: prometheus\n    metricType: AverageValue\n    metadata:\n\
         \x20     serverAddress: {server}\n\
         \x20     query: 'sum(max by (pod) ({metric}{{namespace=\"{ns}\",pod=~\"{pods}\"}}))'\n\
         \x20     threshold: \"{average}\"\n",
        name = h.name,
        ns = h.namespace,
        kind = h.target_kind,
        target = h.target_name,
        pods = pods_regex(&h.target_kind, &h.target_name),
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

/// The fix's first part in the HPA's own metric (None: nothing to say in its terms), the new
/// averageValue when there is one, and why there is none.
fn own_terms(
    h: &HpaInfo,
    terms: &Terms,
    need: u32,
) -> (Option<String>, Option<String>, Option<String>) {
    let others = if h.metric_specs.len() > 1 {
        format!(
            " The HPA scales on the largest of its {} metrics: the others may still hold replicas up.",
            h.metric_specs.len()
        )
    } else {
        String::new()
    };
    match terms {
        Terms::Rate {
            metric,
            rate,
            average,
            patch,
        } => {
            let was = if metric.target_type == "Value" {
                format!(
                    " (a Value target compares the total with {} whatever the replicas: it becomes an AverageValue)",
                    metric.target
                )
            } else {
                format!(" (now {})", metric.target)
            };
            let how = match patch {
                Some(p) => format!(
                    " Only the target changes: kubectl patch hpa {} -n {} --type merge --patch-file hpa.yaml, with hpa.yaml:\n{}",
                    h.name,
                    h.namespace,
                    p.trim_end()
                ),
                None => String::new(),
            };
            let text = format!(
                "Keep scaling on {} metric {}: set its target to averageValue {average}{was}: the measured {:.1} requests/s (p95 of the workload's sum) over the {need} {} the busy workers need.{others}{how}",
                metric.type_,
                metric.name,
                rate,
                if need == 1 { "replica" } else { "replicas" }
            );
            (Some(text), Some(average.clone()), None)
        }
        Terms::RateNot { metric, why } => {
            let text = format!(
                "For {} metric {} (averageValue {}): {why}. With {need} {} needed, set its averageValue to the metric's own peak value ÷ {need}.{others}",
                metric.type_,
                metric.name,
                metric.target,
                if need == 1 { "replica" } else { "replicas" }
            );
            (Some(text), None, Some(why.clone()))
        }
        Terms::Utilization { metric, why } => {
            let text = format!(
                "For {} {} utilization: {why}.{others}",
                metric.type_, metric.name
            );
            (Some(text), None, Some(why.clone()))
        }
        Terms::Other => (None, None, None),
    }
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
            let keda = keda_yaml(
                h,
                &t.hpa_metric,
                &t.keda_prometheus_server,
                &average,
                min,
                max,
            );
            let pods_metric = format!(
                "Scale on busy workers instead: {} busy of {capacity} per pod ({:.0}% target utilization) needs {need} replicas for the measured busy p95 {:.1}.{}\n{yaml}{KEDA_INTRO}{}):\n{keda}",
                r3(per_pod),
                t.hpa_target_utilization * 100.0,
                w.busy_p95,
                if advice.is_empty() {
                    String::new()
                } else {
                    format!(" {}.", advice.join("; "))
                },
                h.name
            );
            let terms = hpa_terms::terms(h, w, need, &t.hpa_request_rate_pattern);
            let (own, new_average, why_not) = own_terms(h, &terms, need);
            let fix = match own {
                Some(own) => format!("{own}\nOr: {pods_metric}"),
                None => pods_metric,
            };
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
                    ("hpa_metric_terms", json!(terms.kind())),
                    ("hpa_metric", json!(terms.metric())),
                    ("new_target_average_value", json!(new_average)),
                    ("new_target_why_not", json!(why_not)),
                    ("requests_per_second_mean", json!(w.requests_per_second_mean.map(r3))),
                    ("requests_per_second_p95", json!(w.requests_per_second_p95.map(r3))),
                    ("requests_are_connections", json!(w.requests_are_connections)),
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
            requests_are_connections: true,
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
                ..Default::default()
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
        let (yaml, keda) = g
            .fix
            .split_once('\n')
            .unwrap()
            .1
            .split_once(KEDA_INTRO)
            .unwrap();
        let expect_keda = "web):\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicaCount: 200\n  maxReplicaCount: 300\n  triggers:\n  - type: prometheus\n    metricType: AverageValue\n    metadata:\n      serverAddress: http://prometheus-operated.monitoring.svc:9090\n      query: 'sum(max by (pod) (headroom_workers_busy{namespace=\"shop\",pod=~\"web-[a-z0-9]+-[a-z0-9]+\"}))'\n      threshold: \"2\"\n";
        assert_eq!(keda, expect_keda);
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

    /// The HPA `h` (a JSON object as the API server has it) replacing the input's.
    fn with_hpa(k: &mut KubeView, h: serde_json::Value) {
        let mut info = crate::kube::hpa_info(&serde_json::from_value(h).unwrap()).unwrap();
        info.current_replicas = Some(600);
        k.hpas = vec![info];
    }

    fn external_hpa(target: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 250, "maxReplicas": 300,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": "upstream_rq_total",
                        "selector": {"matchLabels": {"envoy_cluster_name": "web"}}},
                    "target": target}}]}})
    }

    /// The runbook's worked example: 400 requests/s over the workload, 4 processes per pod of
    /// which 2 should do the work (target utilization 0.5), busy p95 400 → 200 pods →
    /// averageValue 400 / 200 = 2 for the External metric the HPA already scales on; the patch
    /// is the HPA with only that target changed.
    #[test]
    fn a_request_rate_metric_gets_its_new_target() {
        let (mut f, mut k) = input(400.0, 4, Some(600), 250);
        f.clusters[0].workloads[0].requests_per_second_p95 = Some(400.0);
        f.clusters[0].workloads[0].requests_per_second_mean = Some(240.0);
        with_hpa(
            &mut k,
            external_hpa(json!({"type": "AverageValue", "averageValue": "1"})),
        );
        let t = Thresholds {
            hpa_target_utilization: 0.5,
            ..Thresholds::default()
        };
        let g = &run(&f, &k, t.clone())[0];
        let e = &g.evidence;
        assert_eq!(e["needed_replicas"], 200);
        assert_eq!(e["hpa_metric_terms"], "request_rate");
        assert_eq!(e["new_target_average_value"], "2");
        assert!(e["new_target_why_not"].is_null());
        assert_eq!(e["requests_per_second_p95"], 400.0);
        assert_eq!(e["hpa_metric"]["name"], "upstream_rq_total");
        assert!(
            g.fix.starts_with("Keep scaling on External metric upstream_rq_total: set its target to averageValue 2 (now 1): the measured 400.0 requests/s (p95 of the workload's sum) over the 200 replicas"),
            "{}",
            g.fix
        );
        let patch = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 600\n  maxReplicas: 300\n  metrics:\n  - external:\n      metric:\n        name: upstream_rq_total\n        selector:\n          matchLabels:\n            envoy_cluster_name: web\n      target:\n        averageValue: \"2\"\n        type: AverageValue\n    type: External\n  minReplicas: 250\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n";
        assert!(g.fix.contains(patch), "{}", g.fix);
        // Then the Pods-metric alternative, as before.
        assert!(
            g.fix
                .contains("\nOr: Scale on busy workers instead: 2 busy of 4 workers per pod"),
            "{}",
            g.fix
        );
        assert!(g.fix.contains("name: headroom_workers_busy"), "{}", g.fix);

        // A Value target becomes an AverageValue (a Value compares the total whatever the
        // replicas).
        with_hpa(
            &mut k,
            external_hpa(json!({"type": "Value", "value": "350"})),
        );
        let g = &run(&f, &k, t.clone())[0];
        assert_eq!(g.evidence["new_target_average_value"], "2");
        assert!(g.fix.contains("compares the total with 350"), "{}", g.fix);
        assert!(!g.fix.contains("value: \"350\""), "{}", g.fix);

        // A metric named otherwise counts through the annotation only.
        let mut h = external_hpa(json!({"type": "AverageValue", "averageValue": "1"}));
        h["spec"]["metrics"][0]["external"]["metric"]["name"] = json!("istio_calls");
        with_hpa(&mut k, h.clone());
        assert_eq!(
            run(&f, &k, t.clone())[0].evidence["hpa_metric_terms"],
            "other"
        );
        h["metadata"]["annotations"] = json!({"headroom.io/metric-kind": "request-rate"});
        with_hpa(&mut k, h);
        assert_eq!(
            run(&f, &k, t.clone())[0].evidence["new_target_average_value"],
            "2"
        );
    }

    #[test]
    fn a_request_rate_target_is_not_made_up() {
        let (mut f, mut k) = input(400.0, 4, Some(600), 250);
        with_hpa(
            &mut k,
            external_hpa(json!({"type": "AverageValue", "averageValue": "1"})),
        );
        let t = Thresholds {
            hpa_target_utilization: 0.5,
            ..Thresholds::default()
        };
        // No rate from the agents.
        let g = &run(&f, &k, t.clone())[0];
        assert!(g.evidence["new_target_average_value"].is_null());
        assert!(g.fix.contains("no request rate is measured"), "{}", g.fix);
        // Connections are not requests.
        let w = &mut f.clusters[0].workloads[0];
        w.requests_per_second_p95 = Some(400.0);
        w.requests_are_connections = false;
        let g = &run(&f, &k, t.clone())[0];
        assert!(g.evidence["new_target_average_value"].is_null());
        assert!(
            g.fix.contains("the request-rate target cannot be trusted"),
            "{}",
            g.fix
        );
        assert!(g.fix.contains("peak value ÷ 200"), "{}", g.fix);
        assert!(!g.fix.contains("--patch-file"), "{}", g.fix);
        assert!(g.fix.contains("Or: Scale on busy workers instead"));
    }

    #[test]
    fn a_cpu_utilization_hpa_is_told_why_no_target() {
        let (f, mut k) = input(400.0, 4, Some(600), 250);
        let mut h = external_hpa(json!({}));
        h["spec"]["metrics"] = json!([
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        with_hpa(&mut k, h);
        let g = &run(&f, &k, Thresholds::default())[0];
        assert_eq!(g.evidence["hpa_metric_terms"], "utilization");
        assert!(g.evidence["new_target_average_value"].is_null());
        let why = g.evidence["new_target_why_not"].as_str().unwrap();
        assert!(
            why.contains("cannot be computed") && why.contains("averageUtilization 50"),
            "{why}"
        );
        assert!(g.fix.contains("largest of its 2 metrics"), "{}", g.fix);
    }
}
