//! Pod use: what each pod on the node (and each of its containers) really uses, from its own
//! cgroup, and whether the node's pods burst together.
//!
//! The pod and container cgroups are found by walking the kubelet's trees (v1 and v2, both
//! drivers; [`crate::sys::cgroup`]) when the pod list changes or a kept file fails to read (a
//! cgroup removed), else every [`DISCOVER_SAFETY`] ([`DISCOVER_INTERVAL`] without a pod list).
//! Every sample (the worker sampler's cadence, 5 Hz by default) reads the node's pod CPU: the
//! kubelet's top cgroup (`kubepods[.slice]`), whose counter the kernel keeps as the sum of every
//! pod's. About once a second each pod's and container's cumulative CPU time (v1
//! `cpuacct.usage` where a hybrid machine has it, the cheaper read, else v2 `cpu.stat`
//! `usage_usec`) and all memory (`memory.current`, or v1 `memory.usage_in_bytes`). These files
//! are kept open and re-read ([`crate::sys::cgroup::Kept`], within a descriptor budget). From
//! these, per window: mean cores, the busiest second (the highest rate over about a second
//! between one-second samples), memory now and its peak (the kernel's own `memory.peak` /
//! `memory.max_usage_in_bytes` when it rose in the window, else the highest sample), and the
//! throttling of `cpu.stat` as the listeners report it. Requests and limits come from the pod
//! list ([`specs::PodSpecs`], filled by the pod watcher).
//!
//! Co-burst ([`report::CoBurst`]): the node's busiest second is the top cgroup's highest
//! one-second rate at any sample (sliding in the sampler's steps), against the sums of the
//! requests and limits of the pods measured; per workload, the pods above their CPU request
//! over the same second are counted at every one-second sample (max and p95 over the window).
//! Reading pods at 1 Hz and only the top cgroup at 5 Hz is what keeps the source at ≈ 0.3 % of
//! a core with 200 pods (benches/README.md).

pub mod report;
mod sampler;
mod source;
pub mod specs;

pub use report::{CoBurst, ContainerUse, CpuUse, MemoryUse, PodUse, PodUseOmitted};
pub use sampler::{Cost, Sampler};
pub use source::PodUseSource;
pub use specs::{PodSpec, PodSpecs, Resources};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How often the cgroup trees are walked for pods and containers that came or went, without
/// a pod list to say when.
pub const DISCOVER_INTERVAL: Duration = Duration::from_secs(10);

/// How often they are walked anyway with a pod list (its changes and removed cgroups bring a
/// walk forward): the walk is most of the source's cost at 10 s (benches/README.md).
pub const DISCOVER_SAFETY: Duration = Duration::from_secs(60);

/// `[pod_use]` in the config file.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PodUseConfig {
    /// Most pods measured and reported (a node runs up to a few hundred).
    pub max_pods: u32,
    /// Most containers measured and reported per pod.
    pub max_containers_per_pod: u32,
}

impl Default for PodUseConfig {
    fn default() -> Self {
        PodUseConfig {
            max_pods: 512,
            max_containers_per_pod: 16,
        }
    }
}

/// Highest cap accepted for either field.
pub const MAX_CAP: u32 = 4096;

impl PodUseConfig {
    /// Every problem, one line each, naming the fix.
    pub fn validate(&self) -> Vec<String> {
        [
            ("max_pods", self.max_pods),
            ("max_containers_per_pod", self.max_containers_per_pod),
        ]
        .into_iter()
        .filter(|(_, v)| !(1..=MAX_CAP).contains(v))
        .map(|(n, v)| format!("invalid pod_use.{n} {v}: must be between 1 and {MAX_CAP}"))
        .collect()
    }
}

/// Where the pod-use source reads from and how often.
#[derive(Debug, Clone)]
pub struct PodUseSpec {
    pub cgroup_root: PathBuf,
    pub interval: Duration,
    pub caps: PodUseConfig,
}

#[cfg(test)]
mod tests;
