//! The pod-use sampler: reads every pod's and container's counters at each sample, keeps the
//! window's figures per cgroup and the node's co-burst, and cuts them into report sections.

use super::report::{
    CoBurst, ContainerUse, CpuUse, MemoryUse, PodUse, PodUseOmitted, WorkloadCoBurst,
};
use super::specs::{PodSpec, PodSpecs, Resources};
use super::{PodUseSpec, DISCOVER_INTERVAL, DISCOVER_SAFETY};
use crate::pod::Workload;
use crate::sys::cgroup::{self, CgroupFiles, CpuStat, FdBudget, Kept};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work done so far (for the benchmark and the agent's own figures).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub samples: u64,
    /// Cgroup files read.
    pub reads: u64,
    /// Of these, files opened by path (first reads, and every read past the descriptor budget);
    /// the rest re-read a kept descriptor.
    pub opens: u64,
    /// Descriptors kept open now.
    pub fds_held: usize,
    pub discoveries: u64,
}

/// One cgroup's window.
#[derive(Debug, Default)]
struct Use {
    files: CgroupFiles,
    /// The CPU time and current memory files, kept open (the rest are read once a window).
    usage: Option<Kept>,
    memory: Option<Kept>,
    /// Recent (time, usage µs): the oldest is the newest sample at least a second old.
    ring: VecDeque<(Instant, u64)>,
    start: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
    /// Cores over the last second at the latest sample (None until a second is covered).
    rate_now: Option<f64>,
    busiest: Option<f64>,
    mem_now: Option<u64>,
    mem_max: Option<u64>,
    peak_start: Option<u64>,
    throttle_start: Option<CpuStat>,
    /// Found in the last discovery.
    seen: bool,
}

impl Use {
    fn new(files: CgroupFiles) -> Use {
        let mut u = Use {
            usage: files
                .usage
                .as_ref()
                .map(|f| Kept::new(f.path().to_path_buf())),
            memory: files.memory_current.clone().map(Kept::new),
            files,
            seen: true,
            ..Use::default()
        };
        u.peak_start = u.files.memory_peak.as_deref().and_then(cgroup::read_u64);
        u.throttle_start = u.throttle_now();
        u
    }

    fn throttle_now(&self) -> Option<CpuStat> {
        cgroup::parse_cpu_stat(&cgroup::read_small(self.files.throttling.as_deref()?)?)
    }

    /// Reads the CPU counter at `now`; returns the files read.
    fn sample_cpu(&mut self, now: Instant, interval: Duration, fds: &Arc<FdBudget>) -> u64 {
        self.rate_now = None;
        let (Some(k), Some(f)) = (self.usage.as_mut(), self.files.usage.as_ref()) else {
            return 0;
        };
        let Some(u) = k.read(fds, |t| f.parse_usec(t)) else {
            return 1;
        };
        if self.last.is_some_and(|(_, l)| u < l) {
            // A new cgroup at the same path: start again.
            self.ring.clear();
            self.start = None;
        }
        self.ring.push_back((now, u));
        self.start.get_or_insert((now, u));
        self.last = Some((now, u));
        // A sample is "a second old" from half an interval short of a second.
        let second = Duration::from_secs(1).saturating_sub(interval / 2);
        while self.ring.len() > 2 && now.duration_since(self.ring[1].0) >= second {
            self.ring.pop_front();
        }
        if let Some(&(t0, u0)) = self.ring.front() {
            let dt = now.duration_since(t0);
            if dt >= second && !dt.is_zero() {
                let r = u.saturating_sub(u0) as f64 / 1e6 / dt.as_secs_f64();
                self.rate_now = Some(r);
                self.busiest = Some(self.busiest.map_or(r, |b| b.max(r)));
            }
        }
        1
    }

    /// Reads current memory; returns the files read.
    fn sample_memory(&mut self, fds: &Arc<FdBudget>) -> u64 {
        let Some(k) = self.memory.as_mut() else {
            return 0;
        };
        if let Some(m) = k.read(fds, |t| t.trim().parse().ok()) {
            self.mem_now = Some(m);
            self.mem_max = Some(self.mem_max.map_or(m, |x| x.max(m)));
        }
        1
    }

    /// The window's figures; the next window starts at the last sample.
    fn cut(&mut self, r: &Resources) -> (CpuUse, MemoryUse) {
        let mean = match (self.start, self.last) {
            (Some((t0, u0)), Some((t1, u1))) if t1 > t0 => {
                Some(u1.saturating_sub(u0) as f64 / 1e6 / t1.duration_since(t0).as_secs_f64())
            }
            _ => None,
        };
        let throttle = self.throttle_now();
        let d = match (throttle, self.throttle_start) {
            (Some(now), Some(then)) => Some(now.since(&then)),
            _ => None,
        };
        self.throttle_start = throttle.or(self.throttle_start);
        let peak_now = self.files.memory_peak.as_deref().and_then(cgroup::read_u64);
        let peak = match (peak_now, self.peak_start) {
            (Some(p), Some(s)) if p > s => Some(p.max(self.mem_max.unwrap_or(0))),
            _ => self.mem_max,
        };
        self.peak_start = peak_now.or(self.peak_start);
        let cpu = CpuUse {
            mean_cores: mean.map(round4),
            busiest_second_cores: self.busiest.map(round4),
            request_cores: r.cpu_request,
            limit_cores: r.cpu_limit,
            periods: d.map(|d| d.nr_periods),
            throttled_periods: d.map(|d| d.nr_throttled),
            throttled_seconds: d.map(|d| d.throttled_usec as f64 / 1e6),
        };
        let mem = MemoryUse {
            current_bytes: self.mem_now,
            peak_bytes: peak,
            request_bytes: r.memory_request,
            limit_bytes: r.memory_limit,
        };
        self.start = self.last;
        self.busiest = None;
        self.mem_max = self.mem_now;
        (cpu, mem)
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[derive(Debug, Default)]
struct PodState {
    pod: Use,
    containers: BTreeMap<String, Use>,
}

type WorkloadKey = (String, Workload);

/// Per workload: most pods at one sample, and how many samples had n pods above request.
#[derive(Debug, Default)]
struct WorkloadAcc {
    pods: u32,
    above: Vec<u32>,
}

#[derive(Debug, Default)]
struct NodeAcc {
    best: Option<CoBurst>,
    memory_peak: u64,
    memory_requests: u64,
}

/// The pods measured at the last one-second sample: how many, and their requests and limits.
#[derive(Debug, Default, Clone, Copy)]
struct PodSums {
    pods: u32,
    rate: f64,
    requests: f64,
    limits: f64,
    without_limit: u32,
}

/// Samples every pod's cgroups; cut windows with [`Sampler::cut`].
pub struct Sampler {
    spec: PodUseSpec,
    specs: PodSpecs,
    pods: HashMap<String, PodState>,
    /// The kubelet's top cgroup: every pod's CPU summed by the kernel, read at every sample.
    kubepods: Option<Use>,
    /// The pods at the last one-second sample, for the co-burst at the node's busiest second.
    sums: PodSums,
    discovered: Option<Instant>,
    /// `specs.generation()` at the last discovery: a changed pod list means pods or
    /// containers came or went.
    generation: u64,
    /// The last sample that read containers and memory too (see [`Sampler::sample`]).
    full: Option<Instant>,
    omitted: PodUseOmitted,
    node: NodeAcc,
    workloads: HashMap<WorkloadKey, WorkloadAcc>,
    /// Descriptors of kept cgroup files, bounded by the process's file limit.
    fds: Arc<FdBudget>,
    /// `fds.vanished()` at the last discovery: a kept file failing means a cgroup went.
    vanished: u64,
    pub cost: Cost,
}

impl Sampler {
    pub fn new(spec: &PodUseSpec, specs: PodSpecs) -> Sampler {
        Sampler {
            spec: spec.clone(),
            specs,
            pods: HashMap::new(),
            kubepods: None,
            sums: PodSums::default(),
            discovered: None,
            generation: 0,
            full: None,
            omitted: PodUseOmitted::default(),
            node: NodeAcc::default(),
            workloads: HashMap::new(),
            fds: FdBudget::from_rlimit(),
            vanished: 0,
            cost: Cost::default(),
        }
    }

    /// The same with at most `max_fds` cgroup files kept open (tests and the benchmark).
    pub fn with_fd_budget(spec: &PodUseSpec, specs: PodSpecs, max_fds: usize) -> Sampler {
        Sampler {
            fds: FdBudget::new(max_fds),
            ..Sampler::new(spec, specs)
        }
    }

    /// Walks the cgroup trees again: new pods and containers start, vanished ones go.
    pub fn discover(&mut self) {
        self.generation = self.specs.generation();
        let caps = self.spec.caps;
        let mut found = cgroup::find_pods(
            &self.spec.cgroup_root,
            caps.max_pods as usize,
            caps.max_containers_per_pod as usize,
        );
        let node = std::mem::take(&mut found.node).files();
        self.omitted = PodUseOmitted {
            pod_cap: found.pods_cut,
            container_cap: found.containers_cut,
        };
        for p in self.pods.values_mut() {
            p.pod.seen = false;
            p.containers.values_mut().for_each(|c| c.seen = false);
        }
        for (uid, pc) in found.pods {
            let state = self.pods.entry(uid).or_insert_with(|| PodState {
                pod: Use::new(pc.dirs.files()),
                containers: BTreeMap::new(),
            });
            state.pod.seen = true;
            for (id, dirs) in pc.containers {
                state
                    .containers
                    .entry(id)
                    .or_insert_with(|| Use::new(dirs.files()))
                    .seen = true;
            }
            state.containers.retain(|_, c| c.seen);
        }
        self.pods.retain(|_, p| p.pod.seen);
        let same = |u: &Use| u.files.usage == node.usage;
        if node.usage.is_none() {
            self.kubepods = None;
        } else if !self.kubepods.as_ref().is_some_and(same) {
            self.kubepods = Some(Use::new(node));
        }
        self.discovered = Some(Instant::now());
        self.vanished = self.fds.vanished();
        self.cost.discoveries += 1;
    }

    /// One sample: the node's pod CPU (the kubelet's top cgroup, one file) at every sample,
    /// so the co-burst's busiest second slides in the sampler's steps; about once a second
    /// every pod's and container's CPU and all memory. A pod's or container's busiest second
    /// is then its highest rate over about a second between one-second samples; memory peaks
    /// between samples are the kernel's own. Files are kept open and re-read (the node's and
    /// pods' CPU first, so they keep their descriptors when the budget is short). The trees
    /// are walked again when the pod list changed or a kept file failed to read (a cgroup
    /// removed), at most once a second, else every [`DISCOVER_SAFETY`] ([`DISCOVER_INTERVAL`]
    /// without a pod list).
    pub fn sample(&mut self) {
        let due = |t: Instant, after: Duration| t.elapsed() >= after;
        let generation = self.specs.generation();
        let event = self.fds.vanished() != self.vanished || generation != self.generation;
        let quiet = if generation == 0 {
            DISCOVER_INTERVAL
        } else {
            DISCOVER_SAFETY
        };
        if self.discovered.map_or(true, |t| {
            due(t, quiet) || (event && due(t, Duration::from_secs(1)))
        }) {
            self.discover();
        }
        let now = Instant::now();
        let interval = self.spec.interval;
        let second = Duration::from_secs(1).saturating_sub(interval / 2);
        let full = self.full.map_or(true, |t| now.duration_since(t) >= second);
        if full {
            self.full = Some(now);
        }
        let fds = &self.fds;
        let opens = fds.opens();
        if let Some(k) = self.kubepods.as_mut() {
            self.cost.reads += k.sample_cpu(now, interval, fds);
        }
        // One snapshot of the pod list serves the one-second sample's reads and sums.
        let specs = if full {
            self.specs.snapshot()
        } else {
            HashMap::new()
        };
        if full {
            for p in self.pods.values_mut() {
                self.cost.reads += p.pod.sample_cpu(now, interval, fds);
            }
            for (uid, p) in &mut self.pods {
                self.cost.reads += p.pod.sample_memory(fds);
                let spec = specs.get(uid);
                for (id, c) in &mut p.containers {
                    if !measured(spec, id) {
                        continue;
                    }
                    self.cost.reads += c.sample_cpu(now, interval, fds);
                    self.cost.reads += c.sample_memory(fds);
                }
            }
        }
        self.cost.opens += fds.opens() - opens;
        self.cost.fds_held = fds.held();
        self.cost.samples += 1;
        if full {
            self.pods_now(&specs);
        }
        self.co_burst_now(full);
    }

    /// At a one-second sample: the pods measured, their sums, the node's memory, and per
    /// workload how many pods were above their CPU request over that same second.
    fn pods_now(&mut self, specs: &HashMap<String, Arc<PodSpec>>) {
        let mut sums = PodSums::default();
        let mut above: HashMap<WorkloadKey, (u32, u32)> = HashMap::new();
        let (mut mem, mut mem_req) = (0u64, 0u64);
        for (uid, p) in &self.pods {
            let spec = specs.get(uid);
            mem += p.pod.mem_now.unwrap_or(0);
            mem_req += spec.and_then(|s| s.resources.memory_request).unwrap_or(0);
            let Some(rate) = p.pod.rate_now else { continue };
            sums.pods += 1;
            sums.rate += rate;
            let r = spec.map(|s| s.resources).unwrap_or_default();
            sums.requests += r.cpu_request.unwrap_or(0.0);
            match r.cpu_limit {
                Some(l) => sums.limits += l,
                None => sums.without_limit += 1,
            }
            if let Some((s, w, req)) =
                spec.and_then(|s| Some((s, s.workload.clone()?, s.resources.cpu_request?)))
            {
                let e = above.entry((s.pod.namespace.clone(), w)).or_default();
                e.0 += 1;
                e.1 += u32::from(rate > req);
            }
        }
        self.sums = sums;
        if mem >= self.node.memory_peak {
            self.node.memory_peak = mem;
            self.node.memory_requests = mem_req;
        }
        for (k, (pods, n)) in above {
            let acc = self.workloads.entry(k).or_default();
            acc.pods = acc.pods.max(pods);
            if acc.above.len() <= n as usize {
                acc.above.resize(n as usize + 1, 0);
            }
            acc.above[n as usize] += 1;
        }
    }

    /// The node's pod CPU over the last second: the kubelet's top cgroup at every sample, or
    /// (without one) the pods' rates summed at one-second samples.
    fn co_burst_now(&mut self, full: bool) {
        let rate = match &self.kubepods {
            Some(k) => k.rate_now,
            None if full => Some(self.sums.rate),
            None => None,
        };
        let (Some(rate), sums) = (rate, self.sums) else {
            return;
        };
        if sums.pods > 0
            && self
                .node
                .best
                .as_ref()
                .map_or(true, |b| rate > b.cpu_busiest_second_cores)
        {
            self.node.best = Some(CoBurst {
                pods: sums.pods,
                cpu_busiest_second_cores: rate,
                cpu_requests_cores: sums.requests,
                cpu_limits_cores: sums.limits,
                pods_without_cpu_limit: sums.without_limit,
                ..CoBurst::default()
            });
        }
    }

    /// The window's pods (by namespace and name, then uid) and co-burst; starts the next.
    pub fn cut(&mut self) -> (Vec<PodUse>, PodUseOmitted, Option<CoBurst>) {
        let specs = self.specs.snapshot();
        let mut out: Vec<PodUse> = self
            .pods
            .iter_mut()
            .map(|(uid, p)| pod_use(uid, p, specs.get(uid)))
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        let mut co = self.node.best.take();
        if let Some(c) = co.as_mut() {
            c.cpu_busiest_second_cores = round4(c.cpu_busiest_second_cores);
            c.cpu_requests_cores = round4(c.cpu_requests_cores);
            c.cpu_limits_cores = round4(c.cpu_limits_cores);
            c.memory_peak_bytes = self.node.memory_peak;
            c.memory_requests_bytes = self.node.memory_requests;
            let mut w: Vec<WorkloadCoBurst> = self
                .workloads
                .drain()
                .map(|((namespace, workload), acc)| WorkloadCoBurst {
                    namespace,
                    workload,
                    pods: acc.pods,
                    above_request_max: (acc.above.len() as u32).saturating_sub(1),
                    above_request_p95: p95(&acc.above),
                })
                .collect();
            w.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
            c.workloads = w;
        }
        self.workloads.clear();
        self.node = NodeAcc::default();
        (out, self.omitted, co)
    }
}

/// The 95th percentile (nearest rank) of a histogram: `hist[n]` samples had value n.
fn p95(hist: &[u32]) -> u32 {
    let total: u64 = hist.iter().map(|&c| c as u64).sum();
    let rank = (total * 95).div_ceil(100).max(1);
    let mut seen = 0;
    for (n, &c) in hist.iter().enumerate() {
        seen += c as u64;
        if seen >= rank {
            return n as u32;
        }
    }
    0
}

/// Whether a pod's container cgroup is measured: every one while the pod list does not have
/// the pod, else those it names. The rest is the pod's sandbox (the runtime's pause
/// container, idle, a cgroup of its own beside the containers) or a container that exited:
/// two reads a second each for nothing.
fn measured(spec: Option<&Arc<PodSpec>>, id: &str) -> bool {
    spec.map_or(true, |s| s.ids.contains_key(id))
}

fn pod_use(uid: &str, p: &mut PodState, spec: Option<&Arc<PodSpec>>) -> PodUse {
    let r = spec.map(|s| s.resources).unwrap_or_default();
    let (cpu, memory) = p.pod.cut(&r);
    let containers = p
        .containers
        .iter_mut()
        .filter(|(id, _)| measured(spec, id))
        .map(|(id, c)| {
            let name = spec.and_then(|s| s.ids.get(id)).cloned();
            let r = name
                .as_ref()
                .and_then(|n| spec?.containers.get(n).copied())
                .unwrap_or_default();
            let (cpu, memory) = c.cut(&r);
            ContainerUse {
                id: id.clone(),
                name,
                cpu,
                memory,
            }
        })
        .collect();
    PodUse {
        uid: uid.to_string(),
        namespace: spec.map(|s| s.pod.namespace.clone()),
        name: spec.map(|s| s.pod.name.clone()),
        workload: spec.and_then(|s| s.workload.clone()),
        cpu,
        memory,
        containers,
    }
}

#[cfg(test)]
pub(super) fn p95_of(hist: &[u32]) -> u32 {
    p95(hist)
}
