//! The report's `pod_use`, `pod_use_omitted` and `co_burst` sections (field names are a
//! public contract: docs/reference.md).

use crate::pod::Workload;
use serde::Serialize;

/// One pod's use in the window, with its containers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodUse {
    pub uid: String,
    /// From the pod list; null without Kubernetes access or for a pod not (yet) listed.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub workload: Option<Workload>,
    pub cpu: CpuUse,
    pub memory: MemoryUse,
    pub containers: Vec<ContainerUse>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerUse {
    /// The runtime's container id (from the cgroup path).
    pub id: String,
    /// The container's name, from the pod list.
    pub name: Option<String>,
    pub cpu: CpuUse,
    pub memory: MemoryUse,
}

/// CPU in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuUse {
    /// Mean over the window (null with fewer than two samples).
    pub mean_cores: Option<f64>,
    /// The busiest second: the highest rate over about a second between one-second samples.
    pub busiest_second_cores: Option<f64>,
    pub request_cores: Option<f64>,
    pub limit_cores: Option<f64>,
    /// CFS periods and throttled periods in the window, and throttled time (null without a
    /// CPU controller).
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryUse {
    /// At the window's last sample.
    pub current_bytes: Option<u64>,
    /// Highest in the window: the kernel's peak when it rose in the window, else the highest sample.
    pub peak_bytes: Option<u64>,
    pub request_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

/// Pods and containers the `[pod_use]` caps left out (not measured).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PodUseOmitted {
    pub pod_cap: u64,
    pub container_cap: u64,
}

impl PodUseOmitted {
    pub fn total(&self) -> u64 {
        self.pod_cap + self.container_cap
    }
}

/// Whether the node's pods burst together, over the window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CoBurst {
    /// Pods measured at the one-second sample before the busiest second's end.
    pub pods: u32,
    /// The node's pod CPU over its busiest second: the kubelet's top cgroup (the kernel's sum
    /// of every pod) at the sampler's steps, or without one the pods' rates summed.
    pub cpu_busiest_second_cores: f64,
    /// Sums of the CPU requests and limits of the pods measured at that second (limits: of
    /// the pods that have one).
    pub cpu_requests_cores: f64,
    pub cpu_limits_cores: f64,
    pub pods_without_cpu_limit: u32,
    /// The node's summed pod memory at its highest sample, and the sum of memory requests.
    pub memory_peak_bytes: u64,
    pub memory_requests_bytes: u64,
    pub workloads: Vec<WorkloadCoBurst>,
}

/// Per workload: how many of its pods on this node were above their CPU request at the same
/// second (pods with a request only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkloadCoBurst {
    pub namespace: String,
    pub workload: Workload,
    /// Most pods of the workload measured at one sample.
    pub pods: u32,
    pub above_request_max: u32,
    /// 95th percentile over the window's samples.
    pub above_request_p95: u32,
}
