//! `headroom-bench-pod-use [PODS] [SECONDS] [FDS|-] [nolist]`: the pod-use source's sampling
//! cost at the default 5 Hz on a node with PODS pods, their pod list filled as the agent's pod
//! watcher fills it (`nolist`: without, as an agent without Kubernetes access runs). Makes PODS
//! real kubelet-shaped pods, each with one container and the sandbox's pause container as
//! containerd makes them (the systemd driver's path in cgroup v2 and, on hybrid machines, the
//! cgroupfs driver's in the v1 cpu, cpuacct and memory hierarchies: `headroom_testbed::cgroup`),
//! each container holding one sleeping process; runs the agent's pod-use sampler for SECONDS
//! in this process and prints its CPU (user + sys of this thread, `RUSAGE_THREAD`) and the
//! files read. Needs root. The cgroups and processes go when the bench ends.

use headroom_agent::pod::{PodRef, Workload};
use headroom_agent::sources::pod_use::{
    PodSpec, PodSpecs, PodUseConfig, PodUseSpec, Resources, Sampler,
};
use headroom_testbed::cgroup::KubeCgroup;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    // SAFETY: getrusage(2) fills the struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pods: u16 = args.get(1).map_or(Ok(200), |a| a.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(30), |a| a.parse())?;
    let list = args.get(4).map(String::as_str) != Some("nolist");
    let specs = PodSpecs::default();
    let mut cgs = Vec::new();
    let mut sandboxes = Vec::new();
    let mut sleepers = Vec::new();
    for i in 0..pods {
        let uid = format!("b0b0{i:04x}-0000-4000-8000-000000000000");
        let cid = format!("{i:04x}{}", "c".repeat(60));
        let cg = KubeCgroup::new(&uid, &cid)?;
        let sandbox = KubeCgroup::new(&uid, &format!("{i:04x}{}", "5".repeat(60)))?;
        if list {
            let r = Resources {
                cpu_request: Some(0.1),
                cpu_limit: Some(0.5),
                memory_request: Some(64 << 20),
                memory_limit: Some(128 << 20),
            };
            specs.insert(PodSpec {
                pod: PodRef {
                    namespace: "bench".into(),
                    name: format!("app-{i}"),
                    uid: uid.clone(),
                },
                workload: Some(Workload {
                    kind: "Deployment".into(),
                    name: format!("app-{}", i % 20),
                }),
                resources: r,
                containers: [("app".to_string(), r)].into(),
                ids: [(cid.clone(), "app".to_string())].into(),
            });
        }
        let s = Sleeper(
            Command::new("sleep")
                .arg((seconds + 30).to_string())
                .spawn()?,
        );
        cg.add(s.0.id())?;
        cgs.push(cg);
        sleepers.push(s);
        let pause = Sleeper(
            Command::new("sleep")
                .arg((seconds + 30).to_string())
                .spawn()?,
        );
        sandbox.add(pause.0.id())?;
        sandboxes.push(sandbox);
        sleepers.push(pause);
    }
    let interval = Duration::from_millis(200);
    let spec = PodUseSpec {
        cgroup_root: "/sys/fs/cgroup".into(),
        interval,
        caps: PodUseConfig::default(),
    };
    // FDS (optional third argument): most cgroup files kept open (default: from the file limit;
    // 0 measures the open/read/close path).
    let mut s = match args.get(3).filter(|a| *a != "-") {
        Some(n) => Sampler::with_fd_budget(&spec, specs.clone(), n.parse()?),
        None => Sampler::new(&spec, specs.clone()),
    };
    s.sample(); // discovery and first reads
    let (cpu0, t0, c0) = (thread_cpu(), Instant::now(), s.cost);
    let mut next = Instant::now();
    while t0.elapsed() < Duration::from_secs(seconds) {
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        s.sample();
    }
    let (cpu, wall, c) = (thread_cpu() - cpu0, t0.elapsed(), s.cost);
    let (report, omitted, _) = s.cut();
    let ours = report.iter().filter(|p| p.uid.starts_with("b0b0")).count();
    println!(
        "pods {pods}{} (found {ours}, on node {}, omitted {}): {} samples, {} files read ({} opened by path, {} descriptors kept), {} discoveries; CPU {:.3} s / {:.1} s = {:.2} % of one core; {:.0} µs a sample",
        if list { ", pod list" } else { ", no pod list" },
        report.len(),
        omitted.total(),
        c.samples - c0.samples,
        c.reads - c0.reads,
        c.opens - c0.opens,
        c.fds_held,
        c.discoveries - c0.discoveries,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / (c.samples - c0.samples) as f64,
    );
    drop(sleepers);
    // The sandboxes' leaves first: the pod directories are the app containers' to remove.
    drop(sandboxes);
    drop(cgs);
    Ok(())
}
