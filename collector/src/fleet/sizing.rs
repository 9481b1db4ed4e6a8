//! Sizing history (RequestsRightSizing reads it): per workload and container, what its pods
//! used, hour by hour over `sizing_history`, from the agents' pod-use points. An hour of one
//! container is 16 bytes whatever its pod count: the busiest report window's mean CPU of any of
//! its pods, the busiest second, the highest memory; the requests and limits are the newest
//! sent. Per workload and hour, the co-burst share: the most of its pods above their CPU request
//! at the same second on one node (the window's p95) over the pods measured there.

use super::otlp::{get, Attrs};
use headroom_signals::attr;
use std::collections::{BTreeMap, HashMap, VecDeque};

otlp_names! {
    pub fn takes;
    POD_CPU, POD_CPU_BUSIEST_SECOND, POD_MEMORY_PEAK, POD_CPU_REQUEST, POD_CPU_LIMIT,
    POD_MEMORY_REQUEST, POD_MEMORY_LIMIT, WORKLOAD_PODS, WORKLOAD_PODS_ABOVE_REQUEST_P95,
    POD_CPU_THROTTLED, POD_MEMORY, WORKLOAD_PODS_ABOVE_REQUEST_MAX
}

/// The pod-use metrics the history reads; the fleet takes the others of [`takes`] too (a
/// node's pods' series would otherwise fill the latest-value store) and drops them here.
const USED: [&str; 9] = [
    POD_CPU,
    POD_CPU_BUSIEST_SECOND,
    POD_MEMORY_PEAK,
    POD_CPU_REQUEST,
    POD_CPU_LIMIT,
    POD_MEMORY_REQUEST,
    POD_MEMORY_LIMIT,
    WORKLOAD_PODS,
    WORKLOAD_PODS_ABOVE_REQUEST_P95,
];

/// (namespace, kind, name) of a workload.
pub type WorkloadKey = (String, String, String);

/// Most workloads kept per cluster, and containers per workload.
pub const MAX_WORKLOADS: usize = 200_000;
pub const MAX_CONTAINERS: usize = 16;

/// One container's hour: 16 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hour {
    /// Hours since the Unix epoch.
    pub hour: u32,
    pub cpu_mean_max: f32,
    pub cpu_peak: f32,
    pub memory_peak: f32,
}

#[derive(Debug, Clone, Default)]
struct Container {
    hours: VecDeque<Hour>,
    /// Newest cpu request, cpu limit, memory request, memory limit (NaN: not set).
    resources: [f32; 4],
}

#[derive(Debug, Clone, Default)]
struct Workload {
    containers: BTreeMap<String, Container>,
    /// (hour, highest co-burst share in it).
    co_burst: VecDeque<(u32, f32)>,
    /// Newest node a pod of it ran on (prices the node share it frees).
    node: String,
    pods: u32,
    /// Per node: a window's p95 and pods, until both arrived.
    pending: HashMap<String, (u64, f32, f32)>,
}

/// One cluster's sizing history.
#[derive(Debug, Clone, Default)]
pub struct Sizing {
    workloads: HashMap<WorkloadKey, Workload>,
    /// Points refused by the caps.
    pub refused: u64,
}

/// What a container used over the history.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ContainerUse {
    /// 95th percentile (nearest rank) over the hours of the busiest window's mean, cores.
    pub cpu_mean_p95: f64,
    /// The busiest second over the history, cores.
    pub cpu_peak: f64,
    pub memory_peak: u64,
    pub cpu_request: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_request: Option<u64>,
    pub memory_limit: Option<u64>,
}

/// What a workload used over the history: what RequestsRightSizing reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadUse {
    pub containers: BTreeMap<String, ContainerUse>,
    /// Hours with figures.
    pub hours: usize,
    /// Highest share of its pods on one node above their request at once (None: never sent).
    pub co_burst: Option<f64>,
    /// Newest pods measured on one node, and that node.
    pub pods: u32,
    pub node: String,
}

fn nan_none(x: f32) -> Option<f64> {
    (!x.is_nan()).then_some(x as f64)
}

impl Sizing {
    /// One point of a pod-use metric at `end` (ns) from `node`.
    pub fn take(&mut self, node: &str, name: &str, a: &Attrs, v: f64, end: u64, keep_hours: u32) {
        if !USED.contains(&name) {
            return;
        }
        let (Some(ns), Some(kind), Some(wl)) = (
            get(a, attr::NAMESPACE),
            get(a, attr::WORKLOAD_KIND),
            get(a, attr::WORKLOAD),
        ) else {
            return;
        };
        if wl.is_empty() || !v.is_finite() || v < 0.0 {
            return;
        }
        let key = (ns.to_string(), kind.to_string(), wl.to_string());
        if !self.workloads.contains_key(&key) && self.workloads.len() >= MAX_WORKLOADS {
            self.refused += 1;
            return;
        }
        let hour = (end / 3_600_000_000_000) as u32;
        let w = self.workloads.entry(key).or_default();
        if w.node != node {
            w.node = node.to_string();
        }
        if name == WORKLOAD_PODS || name == WORKLOAD_PODS_ABOVE_REQUEST_P95 {
            if w.pending.len() >= MAX_CONTAINERS && !w.pending.contains_key(node) {
                w.pending.clear();
            }
            let e = w
                .pending
                .entry(node.to_string())
                .or_insert((end, f32::NAN, f32::NAN));
            if e.0 != end {
                *e = (end, f32::NAN, f32::NAN);
            }
            if name == WORKLOAD_PODS {
                e.2 = v as f32;
            } else {
                e.1 = v as f32;
            }
            let (p95, pods) = (e.1, e.2);
            if !p95.is_nan() && !pods.is_nan() {
                w.pending.remove(node);
                w.pods = pods as u32;
                let share = if pods > 0.0 {
                    (p95 / pods).min(1.0)
                } else {
                    0.0
                };
                match w.co_burst.back_mut() {
                    Some((h, s)) if *h == hour => *s = s.max(share),
                    Some((h, _)) if *h > hour => {}
                    _ => w.co_burst.push_back((hour, share)),
                }
                while w
                    .co_burst
                    .front()
                    .is_some_and(|(h, _)| h + keep_hours <= hour)
                {
                    w.co_burst.pop_front();
                }
            }
            return;
        }
        let Some(c) = get(a, attr::CONTAINER).filter(|c| !c.is_empty()) else {
            return; // the pod's own cgroup: the patch is per container
        };
        if !w.containers.contains_key(c) && w.containers.len() >= MAX_CONTAINERS {
            self.refused += 1;
            return;
        }
        let c = w
            .containers
            .entry(c.to_string())
            .or_insert_with(|| Container {
                hours: VecDeque::new(),
                resources: [f32::NAN; 4],
            });
        let slot = match name {
            POD_CPU_REQUEST => Some(0),
            POD_CPU_LIMIT => Some(1),
            POD_MEMORY_REQUEST => Some(2),
            POD_MEMORY_LIMIT => Some(3),
            _ => None,
        };
        if let Some(i) = slot {
            c.resources[i] = v as f32;
            return;
        }
        if c.hours.back().map_or(true, |h| h.hour < hour) {
            c.hours.push_back(Hour {
                hour,
                ..Hour::default()
            });
        }
        let Some(h) = c.hours.iter_mut().rev().find(|h| h.hour == hour) else {
            return; // older than the newest hour kept and not in it: a late point, dropped
        };
        let v = v as f32;
        match name {
            POD_CPU => h.cpu_mean_max = h.cpu_mean_max.max(v),
            POD_CPU_BUSIEST_SECOND => h.cpu_peak = h.cpu_peak.max(v),
            POD_MEMORY_PEAK => h.memory_peak = h.memory_peak.max(v),
            _ => {}
        }
        while c.hours.front().is_some_and(|h| h.hour + keep_hours <= hour) {
            c.hours.pop_front();
        }
    }

    /// Every workload's use over the history kept.
    pub fn summary(&self) -> BTreeMap<WorkloadKey, WorkloadUse> {
        self.workloads
            .iter()
            .filter(|(_, w)| !w.containers.is_empty())
            .map(|(k, w)| {
                let containers: BTreeMap<String, ContainerUse> = w
                    .containers
                    .iter()
                    .map(|(n, c)| {
                        let mut means: Vec<f32> = c.hours.iter().map(|h| h.cpu_mean_max).collect();
                        means.sort_by(f32::total_cmp);
                        let rank = (means.len() * 95).div_ceil(100).max(1);
                        let fold = |f: fn(&Hour) -> f32| c.hours.iter().map(f).fold(0f32, f32::max);
                        let r = c.resources;
                        (
                            n.clone(),
                            ContainerUse {
                                cpu_mean_p95: means.get(rank - 1).copied().unwrap_or(0.0) as f64,
                                cpu_peak: fold(|h| h.cpu_peak) as f64,
                                memory_peak: fold(|h| h.memory_peak) as u64,
                                cpu_request: nan_none(r[0]),
                                cpu_limit: nan_none(r[1]),
                                memory_request: nan_none(r[2]).map(|b| b as u64),
                                memory_limit: nan_none(r[3]).map(|b| b as u64),
                            },
                        )
                    })
                    .collect();
                let hours = w
                    .containers
                    .values()
                    .map(|c| c.hours.len())
                    .max()
                    .unwrap_or(0);
                let co_burst = w.co_burst.iter().map(|(_, s)| *s as f64).reduce(f64::max);
                let use_ = WorkloadUse {
                    containers,
                    hours,
                    co_burst,
                    pods: w.pods,
                    node: w.node.clone(),
                };
                (k.clone(), use_)
            })
            .collect()
    }

    /// Bytes the history holds (hours and co-burst entries; keys and map overhead not counted).
    pub fn history_bytes(&self) -> usize {
        self.workloads
            .values()
            .map(|w| {
                w.co_burst.len() * std::mem::size_of::<(u32, f32)>()
                    + w.containers
                        .values()
                        .map(|c| c.hours.len() * std::mem::size_of::<Hour>())
                        .sum::<usize>()
            })
            .sum()
    }

    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000_000_000;

    fn attrs(container: &str) -> Vec<(String, String)> {
        [
            (attr::NAMESPACE, "shop"),
            (attr::WORKLOAD_KIND, "Deployment"),
            (attr::WORKLOAD, "api"),
            (attr::CONTAINER, container),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// 30 hours of one container, one pod: the oldest 6 fall out of a 24-hour history; the p95
    /// of the hourly busiest means, the peaks and the newest requests are what is left.
    #[test]
    fn hours_roll_and_summarize() {
        let mut s = Sizing::default();
        for h in 0..30u64 {
            let end = (1000 + h) * H + 5;
            let cpu = if h < 6 { 9.0 } else { 0.1 + h as f64 / 100.0 };
            s.take("n1", POD_CPU, &attrs("app"), cpu, end, 24);
            s.take("n1", POD_CPU, &attrs("app"), cpu / 2.0, end + 1, 24);
            s.take(
                "n1",
                POD_CPU_BUSIEST_SECOND,
                &attrs("app"),
                2.0 * cpu,
                end,
                24,
            );
            s.take(
                "n1",
                POD_MEMORY_PEAK,
                &attrs("app"),
                1e6 * h as f64,
                end,
                24,
            );
            s.take("n1", POD_CPU_REQUEST, &attrs("app"), 1.0, end, 24);
            s.take("n1", POD_CPU, &attrs(""), 5.0, end, 24); // pod level: not a container
        }
        s.take(
            "n1",
            WORKLOAD_PODS_ABOVE_REQUEST_P95,
            &attrs(""),
            2.0,
            1029 * H,
            24,
        );
        s.take("n1", WORKLOAD_PODS, &attrs(""), 4.0, 1029 * H, 24);
        let u = &s.summary()[&("shop".into(), "Deployment".into(), "api".into())];
        assert_eq!(u.hours, 24);
        let c = &u.containers["app"];
        // Hours 6..30: means 0.16..0.39; rank 23 of 24 is hour 28's 0.38.
        assert!((c.cpu_mean_p95 - 0.38).abs() < 1e-6, "{c:?}");
        assert!((c.cpu_peak - 0.78).abs() < 1e-6);
        assert_eq!(c.memory_peak, 29_000_000);
        assert_eq!((c.cpu_request, c.cpu_limit), (Some(1.0), None));
        assert_eq!((u.co_burst, u.pods, u.node.as_str()), (Some(0.5), 4, "n1"));
        assert_eq!(u.containers.len(), 1);
        assert_eq!(s.history_bytes(), 24 * 16 + 8);
    }
}
