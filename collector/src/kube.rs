//! The Kubernetes objects HPAOverScaling and DNSConsolidationRisk read: autoscaling/v2
//! HorizontalPodAutoscalers, their scale targets (apps/v1 Deployments and StatefulSets) and
//! node labels, each through a kube-rs watcher feeding a reflector store. What the rules see is
//! [`KubeView`], plain data built from those stores. When the API server goes away each watcher
//! keeps its last state and retries with backoff; the other rules never wait for it.
//! ScaleDownBlocked's pods, nodes and PodDisruptionBudgets live in [`cluster`], compact.

pub mod cluster;
pub mod intern;
pub mod objects;
pub mod pod;
/// Resource quantities, shared with the agent (its pod-use source reads requests and limits).
pub use headroom_service::quantity;
pub mod select;

use ::kube::runtime::watcher;
use ::kube::{Api, Client, Resource};
use headroom_service::kube::reflect;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec, MetricTarget};
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// One HorizontalPodAutoscaler, as the rules need it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HpaInfo {
    pub namespace: String,
    pub name: String,
    /// `scaleTargetRef`: kind (Deployment, StatefulSet, …) and name, same namespace.
    pub target_kind: String,
    pub target_name: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `status.currentReplicas`, when the controller has set it.
    pub current_replicas: Option<u32>,
    pub desired_replicas: Option<u32>,
    /// Each metric of the spec in one line, e.g. `Resource cpu Utilization 50`.
    pub metrics: Vec<String>,
    /// The same metrics as data: type, metric name, target type and value.
    pub metric_specs: Vec<HpaMetric>,
    /// The annotation [`METRIC_KIND_ANNOTATION`] (e.g. `request-rate`), if set.
    pub metric_kind: Option<String>,
    /// The HPA's `spec` as the API server has it (JSON): the fix patches it.
    pub spec: serde_json::Value,
}

/// The HPA annotation saying what its metric measures where the name does not
/// (`request-rate`: the HPA's Pods/Object/External metric is a request rate).
pub const METRIC_KIND_ANNOTATION: &str = "headroom.io/metric-kind";

/// One metric of an HPA's spec, as the rules read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HpaMetric {
    /// Resource, ContainerResource, Pods, Object or External.
    #[serde(rename = "type")]
    pub type_: String,
    /// The resource (`cpu`, `memory`) or the metric's name.
    pub name: String,
    /// Utilization, AverageValue or Value.
    pub target_type: String,
    /// The target: averageUtilization as a number, or the quantity (`"1"`, `"500m"`).
    pub target: String,
}

/// A scale target's replicas.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetInfo {
    /// `spec.replicas` (what the HPA last set).
    pub spec_replicas: Option<u32>,
    /// `status.replicas` and `status.readyReplicas`.
    pub replicas: Option<u32>,
    pub ready_replicas: Option<u32>,
}

/// What the collector knows from the Kubernetes API, for one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KubeView {
    pub hpas: Vec<HpaInfo>,
    /// (kind, namespace, name) → replicas.
    pub targets: BTreeMap<(String, String, String), TargetInfo>,
    /// Node name → labels.
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods, nodes and PDBs for ScaleDownBlocked (shared, read under a lock, never copied).
    #[serde(skip)]
    pub cluster: cluster::Cluster,
}

impl KubeView {
    /// A scale target by kind (case-insensitive), namespace and name.
    pub fn target(&self, kind: &str, namespace: &str, name: &str) -> Option<&TargetInfo> {
        self.targets
            .iter()
            .find(|((k, ns, n), _)| k.eq_ignore_ascii_case(kind) && ns == namespace && n == name)
            .map(|(_, t)| t)
    }
}

fn quantity_target(t: &MetricTarget) -> String {
    match t.type_.as_str() {
        "Utilization" => format!(
            "Utilization {}",
            t.average_utilization
                .map(|u| u.to_string())
                .unwrap_or_default()
        ),
        "AverageValue" => format!(
            "AverageValue {}",
            t.average_value
                .as_ref()
                .map(|q| q.0.clone())
                .unwrap_or_default()
        ),
        other => format!(
            "{other} {}",
            t.value.as_ref().map(|q| q.0.clone()).unwrap_or_default()
        ),
    }
}

/// A metric spec as data (None for a type this version does not know).
fn metric_of(m: &MetricSpec) -> Option<HpaMetric> {
    let (name, t) = match m.type_.as_str() {
        "Resource" => m.resource.as_ref().map(|r| (r.name.clone(), &r.target))?,
        "ContainerResource" => m
            .container_resource
            .as_ref()
            .map(|r| (r.name.clone(), &r.target))?,
        "Pods" => m
            .pods
            .as_ref()
            .map(|p| (p.metric.name.clone(), &p.target))?,
        "Object" => m
            .object
            .as_ref()
            .map(|o| (o.metric.name.clone(), &o.target))?,
        "External" => m
            .external
            .as_ref()
            .map(|e| (e.metric.name.clone(), &e.target))?,
        _ => return None,
    };
    let target = match t.type_.as_str() {
        "Utilization" => t.average_utilization.map(|u| u.to_string()),
        "AverageValue" => t.average_value.as_ref().map(|q| q.0.clone()),
        _ => t.value.as_ref().map(|q| q.0.clone()),
    };
    Some(HpaMetric {
        type_: m.type_.clone(),
        name,
        target_type: t.type_.clone(),
        target: target.unwrap_or_default(),
    })
}

fn describe(m: &MetricSpec) -> String {
    let (name, target) = match m.type_.as_str() {
        "Resource" => m
            .resource
            .as_ref()
            .map(|r| (r.name.clone(), quantity_target(&r.target))),
        "ContainerResource" => m.container_resource.as_ref().map(|r| {
            (
                format!("{}/{}", r.container, r.name),
                quantity_target(&r.target),
            )
        }),
        "Pods" => m
            .pods
            .as_ref()
            .map(|p| (p.metric.name.clone(), quantity_target(&p.target))),
        "Object" => m
            .object
            .as_ref()
            .map(|o| (o.metric.name.clone(), quantity_target(&o.target))),
        "External" => m
            .external
            .as_ref()
            .map(|e| (e.metric.name.clone(), quantity_target(&e.target))),
        _ => None,
    }
    .unwrap_or_default();
    format!("{} {name} {target}", m.type_).trim().to_string()
}

/// Pure: an HPA object as the rules see it.
pub fn hpa_info(h: &HorizontalPodAutoscaler) -> Option<HpaInfo> {
    let spec = h.spec.as_ref()?;
    let u = |v: Option<i32>| v.map(|x| x.max(0) as u32);
    Some(HpaInfo {
        namespace: h
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: h.metadata.name.clone()?,
        target_kind: spec.scale_target_ref.kind.clone(),
        target_name: spec.scale_target_ref.name.clone(),
        min_replicas: u(spec.min_replicas).unwrap_or(1),
        max_replicas: spec.max_replicas.max(0) as u32,
        current_replicas: h.status.as_ref().and_then(|s| u(s.current_replicas)),
        desired_replicas: h.status.as_ref().and_then(|s| u(Some(s.desired_replicas))),
        metrics: spec.metrics.iter().flatten().map(describe).collect(),
        metric_specs: spec
            .metrics
            .iter()
            .flatten()
            .map(|m| metric_of(m).unwrap_or_default())
            .collect(),
        metric_kind: h
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(METRIC_KIND_ANNOTATION).cloned()),
        spec: serde_json::to_value(spec).unwrap_or_default(),
    })
}

fn key_of<K: Resource>(o: &K) -> Option<(String, String)> {
    let m = o.meta();
    Some((
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.name.clone()?,
    ))
}

/// Pure: a Deployment's replicas.
pub fn deployment_info(d: &Deployment) -> TargetInfo {
    let u = |v: Option<i32>| v.map(|x| x.max(0) as u32);
    TargetInfo {
        spec_replicas: u(d.spec.as_ref().and_then(|s| s.replicas)),
        replicas: u(d.status.as_ref().and_then(|s| s.replicas)),
        ready_replicas: u(d.status.as_ref().and_then(|s| s.ready_replicas)),
    }
}

/// Pure: a StatefulSet's replicas.
pub fn statefulset_info(d: &StatefulSet) -> TargetInfo {
    let u = |v: Option<i32>| v.map(|x| x.max(0) as u32);
    TargetInfo {
        spec_replicas: u(d.spec.as_ref().and_then(|s| s.replicas)),
        replicas: d.status.as_ref().map(|s| s.replicas.max(0) as u32),
        ready_replicas: u(d.status.as_ref().and_then(|s| s.ready_replicas)),
    }
}

/// What the watchers fill and the engine reads; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SharedView(Arc<RwLock<KubeView>>);

impl SharedView {
    pub fn get(&self) -> KubeView {
        self.0.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut KubeView)) {
        if let Ok(mut v) = self.0.write() {
            f(&mut v);
        }
    }
}

/// Starts one watcher per kind; each runs until `stop`.
pub fn start(client: Client, view: SharedView, stop: CancellationToken) {
    cluster::start(client.clone(), view.get().cluster, stop.clone());
    let v = view.clone();
    tokio::spawn(reflect(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        watcher::Config::default(),
        "HorizontalPodAutoscaler",
        strip_hpa,
        move |store| {
            let items = store.state();
            let hpas = items.iter().filter_map(|h| hpa_info(h)).collect();
            v.update(|k| k.hpas = hpas);
        },
        stop.clone(),
    ));
    watch_targets(
        &client,
        &view,
        "Deployment",
        strip_deployment,
        deployment_info,
        &stop,
    );
    watch_targets(
        &client,
        &view,
        "StatefulSet",
        strip_statefulset,
        statefulset_info,
        &stop,
    );
    let v = view;
    tokio::spawn(reflect(
        Api::<Node>::all(client),
        watcher::Config::default(),
        "Node",
        strip_node,
        move |store| {
            let items = store.state();
            let labels = items
                .iter()
                .filter_map(|n| {
                    Some((
                        n.metadata.name.clone()?,
                        n.metadata.labels.clone().unwrap_or_default(),
                    ))
                })
                .collect();
            v.update(|k| k.node_labels = labels);
        },
        stop,
    ));
}

/// What the store keeps of an object: never managedFields or annotations (the
/// last-applied-configuration can be large); the kind-specific strips below drop the rest the
/// rules never read, so thousands of Deployments stay small.
fn strip_meta<K: Resource>(o: &mut K) {
    let m = o.meta_mut();
    m.managed_fields = None;
    m.annotations = None;
}

/// Keeps of the annotations only [`METRIC_KIND_ANNOTATION`] (short values only).
fn strip_hpa(h: &mut HorizontalPodAutoscaler) {
    let kind = h
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(METRIC_KIND_ANNOTATION))
        .filter(|v| v.len() <= 64)
        .cloned();
    strip_meta(h);
    h.metadata.annotations = kind.map(|k| [(METRIC_KIND_ANNOTATION.to_string(), k)].into());
}

fn strip_deployment(d: &mut Deployment) {
    strip_meta(d);
    if let Some(s) = d.spec.as_mut() {
        s.template = Default::default();
    }
}

fn strip_statefulset(d: &mut StatefulSet) {
    strip_meta(d);
    if let Some(s) = d.spec.as_mut() {
        s.template = Default::default();
        s.volume_claim_templates = None;
    }
}

fn strip_node(n: &mut Node) {
    strip_meta(n);
    n.spec = None;
    n.status = None;
}

/// A watcher of one kind of scale target (Deployment, StatefulSet) that keeps that kind's
/// replicas in the view.
fn watch_targets<K>(
    client: &Client,
    view: &SharedView,
    kind: &'static str,
    strip: fn(&mut K),
    info: fn(&K) -> TargetInfo,
    stop: &CancellationToken,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let v = view.clone();
    tokio::spawn(reflect(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        kind,
        strip,
        move |store| {
            let items = store.state();
            let t: Vec<_> = items
                .iter()
                .filter_map(|d| Some((key_of(d.as_ref())?, info(d))))
                .collect();
            v.update(|k| replace_targets(k, kind, t));
        },
        stop.clone(),
    ));
}

fn replace_targets(k: &mut KubeView, kind: &str, t: Vec<((String, String), TargetInfo)>) {
    k.targets.retain(|(kd, _, _), _| kd != kind);
    for ((ns, name), info) in t {
        k.targets.insert((kind.to_string(), ns, name), info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_objects_become_plain_data() {
        let h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 3, "maxReplicas": 40,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "100"}}}
                ]},
            "status": {"currentReplicas": 20, "desiredReplicas": 22}
        }))
        .unwrap();
        let i = hpa_info(&h).unwrap();
        assert_eq!(
            (
                i.min_replicas,
                i.max_replicas,
                i.current_replicas,
                i.desired_replicas
            ),
            (3, 40, Some(20), Some(22))
        );
        assert_eq!(
            i.metrics,
            ["Resource cpu Utilization 50", "Pods rps AverageValue 100"]
        );
        assert_eq!(
            (i.target_kind.as_str(), i.target_name.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(
            i.metric_specs[1],
            HpaMetric {
                type_: "Pods".into(),
                name: "rps".into(),
                target_type: "AverageValue".into(),
                target: "100".into(),
            }
        );
        assert_eq!(i.metric_specs[0].target, "50");
        assert_eq!(i.spec["metrics"][1]["pods"]["metric"]["name"], "rps");
        assert_eq!(i.spec["maxReplicas"], 40);
        assert_eq!(i.metric_kind, None);
    }

    #[test]
    fn the_store_keeps_only_the_metric_kind_annotation() {
        let mut h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web", "annotations": {
                "headroom.io/metric-kind": "request-rate",
                "kubectl.kubernetes.io/last-applied-configuration": "{…}"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4}
        }))
        .unwrap();
        strip_hpa(&mut h);
        assert_eq!(h.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        assert_eq!(
            hpa_info(&h).unwrap().metric_kind.as_deref(),
            Some("request-rate")
        );
    }
}
