//! The pods' requests and limits, names and workloads, from the pod list: the pod watcher
//! replaces the map on every change; the sampler reads it at each sample (co-burst needs a pod's
//! request at the second it bursts).

use crate::pod::{workload_of, PodRef, Workload};
use headroom_service::quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Most pods kept from one list (a node runs at most a few hundred).
pub const MAX_PODS: usize = 4096;

/// Requests and limits: CPU in cores, memory in bytes; None where not set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu_request: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_request: Option<u64>,
    pub memory_limit: Option<u64>,
}

/// What the pod list says about one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    pub pod: PodRef,
    pub workload: Option<Workload>,
    /// The pod's sums over its containers: a request where any container has one; a limit only
    /// where every container has one (one unlimited container makes the pod unlimited).
    pub resources: Resources,
    /// Container name → its own.
    pub containers: BTreeMap<String, Resources>,
    /// Container runtime id (without `containerd://`) → container name.
    pub ids: HashMap<String, String>,
}

/// Pod uid → spec; cheap to clone, shared by the pod watcher and the sampler.
#[derive(Debug, Clone, Default)]
pub struct PodSpecs(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    map: RwLock<HashMap<String, Arc<PodSpec>>>,
    /// Bumped when a spec came, went or changed (a new container id too): the sampler walks
    /// the cgroup trees then, instead of on a short timer.
    generation: AtomicU64,
}

impl PodSpecs {
    /// Replaces the map with these pods' (at most [`MAX_PODS`]).
    pub fn set<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) {
        let map: HashMap<String, Arc<PodSpec>> = pods
            .into_iter()
            .filter_map(spec_of)
            .take(MAX_PODS)
            .map(|s| (s.pod.uid.clone(), Arc::new(s)))
            .collect();
        if let Ok(mut m) = self.0.map.write() {
            if *m != map {
                *m = map;
                self.0.generation.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds one pod's spec (a pod list of one; tests use it as the watcher's stand-in).
    pub fn insert(&self, spec: PodSpec) {
        if let Ok(mut m) = self.0.map.write() {
            if m.len() < MAX_PODS || m.contains_key(&spec.pod.uid) {
                let spec = Arc::new(spec);
                if m.insert(spec.pod.uid.clone(), spec.clone()).as_ref() != Some(&spec) {
                    self.0.generation.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn get(&self, uid: &str) -> Option<Arc<PodSpec>> {
        self.0.map.read().ok()?.get(uid).cloned()
    }

    /// The whole map, for one sample.
    pub fn snapshot(&self) -> HashMap<String, Arc<PodSpec>> {
        self.0.map.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// How many times the map changed (0: never filled, e.g. without Kubernetes access).
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Relaxed)
    }
}

fn resources(c: &Container) -> Resources {
    let r = c.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let m = if limits {
            r?.limits.as_ref()
        } else {
            r?.requests.as_ref()
        };
        m?.get(name).map(|q| q.0.as_str())
    };
    Resources {
        cpu_request: get(false, "cpu")
            .and_then(quantity::millicores)
            .map(|m| m as f64 / 1000.0),
        cpu_limit: get(true, "cpu")
            .and_then(quantity::millicores)
            .map(|m| m as f64 / 1000.0),
        memory_request: get(false, "memory").and_then(quantity::units),
        memory_limit: get(true, "memory").and_then(quantity::units),
    }
}

/// Pure: the spec of one pod; None without a name or uid, or when it finished.
pub fn spec_of(pod: &Pod) -> Option<PodSpec> {
    let r = PodRef::of(pod).filter(|r| !r.uid.is_empty())?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let containers: BTreeMap<String, Resources> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| (c.name.clone(), resources(c)))
        .collect();
    let sum_any = |f: fn(&Resources) -> Option<f64>| {
        let v: Vec<f64> = containers.values().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>())
    };
    let sum_all = |f: fn(&Resources) -> Option<f64>| {
        let v: Option<Vec<f64>> = containers.values().map(f).collect();
        v.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>())
    };
    let resources = Resources {
        cpu_request: sum_any(|r| r.cpu_request),
        cpu_limit: sum_all(|r| r.cpu_limit),
        memory_request: sum_any(|r| r.memory_request.map(|b| b as f64)).map(|b| b as u64),
        memory_limit: sum_all(|r| r.memory_limit.map(|b| b as f64)).map(|b| b as u64),
    };
    let ids = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| {
            let id = c.container_id.as_deref()?;
            Some((id.rsplit("://").next()?.to_string(), c.name.clone()))
        })
        .collect();
    Some(PodSpec {
        workload: workload_of(pod),
        pod: r,
        resources,
        containers,
        ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the API server returns it: two containers, one without a CPU limit.
    #[test]
    fn pod_sums_requests_and_limits_as_the_scheduler_does() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "api-7d9f8b6c5-x2k4p", "uid": "u1",
                "labels": {"pod-template-hash": "7d9f8b6c5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-7d9f8b6c5", "uid": "rs", "controller": true}]},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                                              "limits": {"cpu": "1", "memory": "512Mi"}}},
                {"name": "sidecar", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                                  "limits": {"memory": "64Mi"}}}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "containerID": "containerd://abc"}]}
        }))
        .unwrap();
        let s = spec_of(&pod).unwrap();
        assert_eq!(s.workload.as_ref().unwrap().kind, "Deployment");
        assert!((s.resources.cpu_request.unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(s.resources.cpu_limit, None, "sidecar has no CPU limit");
        assert_eq!(s.resources.memory_request, Some(320 << 20));
        assert_eq!(s.resources.memory_limit, Some(576 << 20));
        assert_eq!(s.containers["app"].cpu_limit, Some(1.0));
        assert_eq!(s.ids["abc"], "app");
        let specs = PodSpecs::default();
        specs.set([&pod]);
        assert_eq!(specs.get("u1").unwrap().pod.name, "api-7d9f8b6c5-x2k4p");
        let mut done = pod.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(spec_of(&done), None);
    }
}
