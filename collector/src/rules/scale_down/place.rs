//! "Can another node take this pod?", as the scheduler's filters would answer it for requests,
//! node selector, required node affinity and taints (not pod affinity, host ports or volume
//! topology). Each node is judged on its own against the cluster as it is: the pods of one
//! node reserve room on the nodes they would move to, other nodes' removal is not assumed.

use crate::kube::objects::NodeInfo;
use crate::kube::pod::{PodInfo, Scheduling};
use std::collections::HashMap;
use std::sync::Arc;

/// A node that could take pods: ready, schedulable, with its free requests.
pub struct Dest<'a> {
    pub node: &'a NodeInfo,
    pub free_cpu: i64,
    pub free_mem: i64,
}

/// The destinations and, per distinct scheduling constraint, the nodes it admits.
pub struct Placer<'a> {
    dests: Vec<Dest<'a>>,
    admits: HashMap<*const Scheduling, Vec<usize>>,
}

fn admits(s: &Scheduling, n: &NodeInfo) -> bool {
    s.node_selector
        .iter()
        .all(|(k, v)| n.labels.get(k) == Some(v))
        && s.required.as_ref().map_or(true, |terms| {
            terms.iter().any(|t| t.matches(&n.name, &n.labels))
        })
        && n.taints
            .iter()
            .filter(|t| t.repels())
            .all(|t| s.tolerations.iter().any(|tol| tol.taint(t)))
}

impl<'a> Placer<'a> {
    /// `requested`: (CPU m, memory) requested on each node now.
    pub fn new(nodes: &[&'a NodeInfo], requested: &HashMap<&str, (u64, u64)>) -> Placer<'a> {
        let mut dests: Vec<Dest> = nodes
            .iter()
            .filter(|n| n.ready && !n.unschedulable)
            .filter_map(|n| {
                let (cpu, mem) = requested.get(n.name.as_str()).copied().unwrap_or((0, 0));
                Some(Dest {
                    node: n,
                    free_cpu: n.cpu_m? as i64 - cpu as i64,
                    free_mem: n.memory? as i64 - mem as i64,
                })
            })
            .collect();
        // Roomiest first: most pods find a place at the first look.
        dests.sort_by(|a, b| {
            b.free_cpu
                .cmp(&a.free_cpu)
                .then(b.free_mem.cmp(&a.free_mem))
        });
        Placer {
            dests,
            admits: HashMap::new(),
        }
    }

    /// Finds a node other than `from` for `pod`, counting what `reserved` already holds there;
    /// reserves the room when found.
    pub fn place(
        &mut self,
        pod: &PodInfo,
        from: &str,
        reserved: &mut HashMap<usize, (i64, i64)>,
    ) -> bool {
        let key = Arc::as_ptr(&pod.scheduling);
        let dests = &self.dests;
        let list = self.admits.entry(key).or_insert_with(|| {
            (0..dests.len())
                .filter(|&i| admits(&pod.scheduling, dests[i].node))
                .collect()
        });
        let (cpu, mem) = (pod.cpu_m as i64, pod.memory as i64);
        for &i in list.iter() {
            let d = &dests[i];
            if d.node.name == from {
                continue;
            }
            let r = reserved.entry(i).or_insert((0, 0));
            if d.free_cpu - r.0 >= cpu && d.free_mem - r.1 >= mem {
                r.0 += cpu;
                r.1 += mem;
                return true;
            }
        }
        false
    }
}
