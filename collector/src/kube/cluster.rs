//! The cluster's pods, nodes and PodDisruptionBudgets, kept compact for ScaleDownBlocked: one
//! kube-rs watcher per kind (paged first list, then watch; 410 and errors relist with
//! backoff), each event turned into a [`PodInfo`], [`NodeInfo`] or [`PdbInfo`] at once, so no
//! full object is kept. Memory is bounded: at most [`MAX_PODS`], [`MAX_NODES`] and
//! [`MAX_PDBS`] objects (further ones are refused and counted), a few labels and volumes per
//! pod (`pod::MAX_LABELS`, `select::MAX_ITEMS`), labels and constraints shared between pods.
//! The rules read it under a read lock ([`Cluster::read`]); nothing is copied per evaluation.

use super::objects::{NodeInfo, PdbInfo};
use super::pod::{Interner, PodInfo, PodLite};
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::{Api, Client};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio_util::sync::CancellationToken;

pub const MAX_PODS: usize = 500_000;
pub const MAX_NODES: usize = 20_000;
pub const MAX_PDBS: usize = 100_000;

/// One kind's objects, and its relist bookkeeping.
#[derive(Debug)]
pub struct Mirror<K, V> {
    pub items: HashMap<K, V>,
    /// The first list is complete.
    pub listed: bool,
    /// Objects not kept because `max` was reached.
    pub refused: u64,
    max: usize,
    /// During a (re)list: the keys listed so far; the rest are gone at its end.
    seen: Option<HashSet<K>>,
}

impl<K: Hash + Eq + Clone, V> Mirror<K, V> {
    pub fn new(max: usize) -> Self {
        Mirror {
            items: HashMap::new(),
            listed: false,
            refused: 0,
            max,
            seen: None,
        }
    }

    fn apply(&mut self, key: K, value: Option<V>) {
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(key.clone());
        }
        match value {
            None => {
                self.items.remove(&key);
            }
            Some(v) => {
                if self.items.len() >= self.max && !self.items.contains_key(&key) {
                    self.refused += 1;
                    return;
                }
                self.items.insert(key, v);
            }
        }
    }

    fn delete(&mut self, key: &K) {
        self.items.remove(key);
    }

    fn relist(&mut self) {
        self.seen = Some(HashSet::new());
    }

    fn listed_all(&mut self) {
        if let Some(seen) = self.seen.take() {
            self.items.retain(|k, _| seen.contains(k));
        }
        self.listed = true;
    }
}

/// A pod's key: namespace and name.
pub type PodKey = (Arc<str>, Box<str>);

/// What the watchers keep.
#[derive(Debug)]
pub struct ClusterState {
    pub pods: Mirror<PodKey, PodInfo>,
    pub nodes: Mirror<String, NodeInfo>,
    pub pdbs: Mirror<(String, String), PdbInfo>,
    interner: Interner,
    removed_since_sweep: usize,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            pods: Mirror::new(MAX_PODS),
            nodes: Mirror::new(MAX_NODES),
            pdbs: Mirror::new(MAX_PDBS),
            interner: Interner::default(),
            removed_since_sweep: 0,
        }
    }
}

impl ClusterState {
    /// Every kind has been listed once: before that, a missing PDB may only be unlisted.
    pub fn listed(&self) -> bool {
        self.pods.listed && self.nodes.listed && self.pdbs.listed
    }

    /// A pod as the API server sends it (None: it was terminal, so it is dropped).
    pub fn apply_pod(&mut self, p: &PodLite) {
        let Some(key) = self.pod_key(p) else { return };
        let info = PodInfo::from_lite(p, &mut self.interner);
        if info.is_none() {
            self.removed(1);
        }
        self.pods.apply(key, info);
    }

    pub fn delete_pod(&mut self, p: &PodLite) {
        if let Some(key) = self.pod_key(p) {
            self.pods.delete(&key);
            self.removed(1);
        }
    }

    fn pod_key(&mut self, p: &PodLite) -> Option<PodKey> {
        let m = &p.metadata;
        Some((
            self.interner
                .text
                .text(m.namespace.as_deref().unwrap_or("default")),
            m.name.as_deref()?.into(),
        ))
    }

    pub fn apply_node(&mut self, n: &Node) {
        if let Some(i) = NodeInfo::from_k8s(n) {
            self.nodes.apply(i.name.clone(), Some(i));
        }
    }

    pub fn apply_pdb(&mut self, p: &PodDisruptionBudget) {
        if let Some(i) = PdbInfo::from_k8s(p) {
            self.pdbs
                .apply((i.namespace.clone(), i.name.clone()), Some(i));
        }
    }

    /// Marks every kind listed (tests that state a cluster by hand).
    pub fn all_listed(mut self) -> Self {
        self.pods.listed_all();
        self.nodes.listed_all();
        self.pdbs.listed_all();
        self
    }

    /// Labels and constraints no pod holds any more are dropped now and then.
    fn removed(&mut self, n: usize) {
        self.removed_since_sweep += n;
        if self.removed_since_sweep >= 10_000 {
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        self.interner.sweep();
        self.removed_since_sweep = 0;
    }

    /// Shared values held (labels sets, constraint sets, strings), for the benchmark.
    pub fn interned(&self) -> (usize, usize, usize) {
        (
            self.interner.labels.len(),
            self.interner.scheduling.len(),
            self.interner.text.len(),
        )
    }
}

/// The watchers' state, shared with the rules; cheap to clone.
#[derive(Clone, Default)]
pub struct Cluster(Arc<RwLock<ClusterState>>);

impl Cluster {
    /// A cluster stated by hand.
    pub fn from_state(s: ClusterState) -> Cluster {
        Cluster(Arc::new(RwLock::new(s)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, f: impl FnOnce(&mut ClusterState)) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }
}

impl PartialEq for Cluster {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read();
        write!(
            f,
            "Cluster {{ pods: {}, nodes: {}, pdbs: {}, listed: {} }}",
            s.pods.items.len(),
            s.nodes.items.len(),
            s.pdbs.items.len(),
            s.listed()
        )
    }
}

/// How one kind's events change the state.
struct Handler<K> {
    apply: fn(&mut ClusterState, &K),
    delete: fn(&mut ClusterState, &K),
    relist: fn(&mut ClusterState),
    listed: fn(&mut ClusterState),
}

/// Starts the pod, node and PDB watchers; each runs until `stop`.
pub fn start(client: Client, cluster: Cluster, stop: CancellationToken) {
    tokio::spawn(watch(
        Api::<PodLite>::all(client.clone()),
        "Pod",
        cluster.clone(),
        Handler {
            apply: ClusterState::apply_pod,
            delete: ClusterState::delete_pod,
            relist: |s| s.pods.relist(),
            listed: |s| {
                s.pods.listed_all();
                s.sweep();
            },
        },
        stop.clone(),
    ));
    tokio::spawn(watch(
        Api::<Node>::all(client.clone()),
        "Node (scale-down)",
        cluster.clone(),
        Handler {
            apply: ClusterState::apply_node,
            delete: |s, n| {
                if let Some(name) = &n.metadata.name {
                    s.nodes.delete(name);
                }
            },
            relist: |s| s.nodes.relist(),
            listed: |s| s.nodes.listed_all(),
        },
        stop.clone(),
    ));
    tokio::spawn(watch(
        Api::<PodDisruptionBudget>::all(client),
        "PodDisruptionBudget",
        cluster,
        Handler {
            apply: ClusterState::apply_pdb,
            delete: |s, p| {
                let m = &p.metadata;
                if let Some(name) = &m.name {
                    let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
                    s.pdbs.delete(&(ns, name.clone()));
                }
            },
            relist: |s| s.pdbs.relist(),
            listed: |s| s.pdbs.listed_all(),
        },
        stop,
    ));
}

/// One kind's watch loop: events in batches (one write lock per batch), errors retried with
/// kube-rs' default backoff, one warning per outage; the last state stays meanwhile.
async fn watch<K>(
    api: Api<K>,
    kind: &'static str,
    cluster: Cluster,
    h: Handler<K>,
    stop: CancellationToken,
) where
    K: ::kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .ready_chunks(256);
    futures::pin_mut!(stream);
    let mut failing = false;
    loop {
        let batch = tokio::select! {
            b = stream.next() => b,
            _ = stop.cancelled() => return,
        };
        let Some(batch) = batch else { return };
        let mut error = None;
        cluster.write(|s| {
            for ev in batch {
                match ev {
                    Err(e) => error = Some(e),
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (h.apply)(s, &o),
                    Ok(watcher::Event::Delete(o)) => (h.delete)(s, &o),
                    Ok(watcher::Event::Init) => (h.relist)(s),
                    Ok(watcher::Event::InitDone) => (h.listed)(s),
                }
            }
        });
        match error {
            Some(error) if !failing => {
                tracing::warn!(message = %format_args!("{kind} watch failed; keeping the last known objects and retrying with backoff."), %error);
                failing = true;
            }
            Some(_) => {}
            None if failing => {
                tracing::info!(message = %format_args!("{kind} watch resumed."));
                failing = false;
            }
            None => {}
        }
    }
}
