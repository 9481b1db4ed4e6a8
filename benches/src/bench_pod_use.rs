//! `headroom-bench-pod-use [PODS] [SECONDS] [FDS]`: the pod-use source's sampling cost at the default
//! 5 Hz on a node with PODS pods. Makes PODS real kubelet-shaped cgroups (one container each:
//! the systemd driver's path in cgroup v2 and, on hybrid machines, the cgroupfs driver's in the
//! v1 cpu and memory hierarchies, as `headroom_testbed::cgroup` makes them), each holding one
//! sleeping process, then runs the agent's pod-use sampler for SECONDS in this process and
//! prints its CPU (user + sys of this thread, `RUSAGE_THREAD`) and the files read. Needs root.
//! The cgroups and processes go when the bench ends.

use headroom_agent::sources::pod_use::{PodSpecs, PodUseConfig, PodUseSpec, Sampler};
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
    let mut cgs = Vec::new();
    let mut sleepers = Vec::new();
    for i in 0..pods {
        let uid = format!("b0b0{i:04x}-0000-4000-8000-000000000000");
        let cid = format!("{i:04x}{}", "c".repeat(60));
        let cg = KubeCgroup::new(&uid, &cid)?;
        let s = Sleeper(
            Command::new("sleep")
                .arg((seconds + 30).to_string())
                .spawn()?,
        );
        cg.add(s.0.id())?;
        cgs.push(cg);
        sleepers.push(s);
    }
    let interval = Duration::from_millis(200);
    let spec = PodUseSpec {
        cgroup_root: "/sys/fs/cgroup".into(),
        interval,
        caps: PodUseConfig::default(),
    };
    // FDS (optional third argument): most cgroup files kept open (default: from the file limit;
    // 0 measures the open/read/close path).
    let mut s = match args.get(3) {
        Some(n) => Sampler::with_fd_budget(&spec, PodSpecs::default(), n.parse()?),
        None => Sampler::new(&spec, PodSpecs::default()),
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
        "pods {pods} (found {ours}, on node {}, omitted {}): {} samples, {} files read ({} opened by path, {} descriptors kept), {} discoveries; CPU {:.3} s / {:.1} s = {:.2} % of one core; {:.0} µs a sample",
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
    drop(cgs);
    Ok(())
}
