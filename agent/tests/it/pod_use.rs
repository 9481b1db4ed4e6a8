//! Pod use from real kubelet-shaped cgroups (systemd driver path in cgroup v2; cgroupfs driver
//! paths in the v1 cpu and memory hierarchies on hybrid machines): busy loops capped at half a
//! core with the CFS quota (`cpu.max`, or v1 `cpu.cfs_quota_us`). Ground truth: the cgroup's
//! own `usage_usec` and memory counters, read by the test around the sampler's first and last
//! samples, and the load the quota sets. Needs root.

use headroom_agent::pod::{PodRef, Workload};
use headroom_agent::sources::pod_use::{
    PodSpec, PodSpecs, PodUse, PodUseConfig, PodUseSpec, Resources, Sampler,
};
use headroom_testbed::cgroup::KubeCgroup;
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INTERVAL: Duration = Duration::from_millis(200);

/// These tests burn up to 1.5 of the machine's cores and read the node's summed pod CPU: one
/// at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
/// Half a core: 50 ms of every 100 ms period.
const QUOTA_US: u64 = 50_000;
const LOAD: f64 = 0.5;

fn cid(i: u8) -> String {
    format!("{:x}{}", i, "e".repeat(63))
}

fn uid(i: u8) -> String {
    format!("5e1d0c{i:02x}-2b3a-4c5d-8e6f-7a8b9c0d1e2f")
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A python process in `cg` that waits until `at` (Unix seconds), then spins for `spin` seconds
/// (at most what the quota allows), then sleeps until `end`; it first holds `mib` MiB written
/// byte by byte once it is inside the cgroup. Niced up, and its cgroups given the highest CPU
/// weight ([`KubeCgroup::favour`]), so other work on the machine does not take its half core.
fn spinner(cg: &KubeCgroup, at: f64, spin: f64, end: f64, mib: u32) -> Guard {
    let py = format!(
        "import time\ntime.sleep(0.3)\nb = b'x' * ({mib} << 20)\n\
         time.sleep(max(0, {at} - time.time()))\nt = time.time() + {spin}\n\
         while time.time() < t: pass\ntime.sleep(max(0, {end} - time.time()))"
    );
    let g = Guard::spawn(
        "python3",
        Command::new("nice").args(["-n", "-10", "python3", "-c", &py]),
    )
    .unwrap();
    cg.add(g.pid()).unwrap();
    g
}

fn sampler(specs: PodSpecs) -> Sampler {
    let spec = PodUseSpec {
        cgroup_root: "/sys/fs/cgroup".into(),
        interval: INTERVAL,
        caps: PodUseConfig::default(),
    };
    Sampler::new(&spec, specs)
}

/// Samples at the interval for `d`.
fn run(s: &mut Sampler, d: Duration) {
    let end = Instant::now() + d;
    let mut next = Instant::now();
    while Instant::now() < end {
        next += INTERVAL;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        s.sample();
    }
}

fn find<'a>(pods: &'a [PodUse], uid: &str) -> &'a PodUse {
    pods.iter()
        .find(|p| p.uid == uid)
        .unwrap_or_else(|| panic!("pod {uid} not in {pods:?}"))
}

fn within(x: f64, want: f64, tol: f64) -> bool {
    (x - want).abs() <= tol * want
}

/// A busiest second at the quota's load: the quota is per 100 ms period, and a window of about
/// a second (at least 0.9 s: a second less half a sample interval) can hold one more period's
/// quota (50 ms) at its edges, so up to 0.05 / 0.9 core over the load; at least 5 % under it.
fn busiest_at_load(x: f64) -> bool {
    (0.95 * LOAD..=LOAD + 0.05 / 0.9).contains(&x)
}

/// One pod spinning at its half-core quota for the whole window, holding 64 MiB; another
/// idle but for a 2-second burst. CPU within ±5 % of the cgroup's own usage_usec delta (over
/// the test's reads around the first and last sample) and of the set load; memory within
/// ±1 % of the cgroup's own counter read right after the last sample; the burst is the
/// busiest second of the second pod.
#[test]
fn pod_cpu_and_memory_match_the_cgroups_own_counters() {
    let needs = [Need::Root, Need::Tool("python3"), Need::Tool("nice")];
    headroom_testbed::require_or_return!(
        "pod_cpu_and_memory_match_the_cgroups_own_counters",
        &needs
    );
    let _serial = serial();
    let (mut steady, mut bursty) = (
        KubeCgroup::new(&uid(1), &cid(1)).unwrap(),
        KubeCgroup::new(&uid(2), &cid(2)).unwrap(),
    );
    steady.favour().unwrap();
    bursty.favour().unwrap();
    steady.cpu_quota(QUOTA_US).unwrap();
    bursty.cpu_quota(QUOTA_US).unwrap();
    let t0 = now_s();
    let a = spinner(&steady, t0 + 1.0, 8.0, t0 + 9.0, 64);
    let b = spinner(&bursty, t0 + 3.5, 2.0, t0 + 9.0, 8);
    std::thread::sleep(Duration::from_millis(1500));
    let th0 = steady.cpu_stat().unwrap();
    let mut s = sampler(PodSpecs::default());
    s.sample();
    let (u0, i0) = (steady.usage_usec().unwrap(), Instant::now());
    run(&mut s, Duration::from_secs(5));
    let (u1, i1) = (steady.usage_usec().unwrap(), Instant::now());
    let mem = steady.memory_current().unwrap();
    let (pods, omitted, co) = s.cut();
    let th1 = steady.cpu_stat().unwrap();
    let truth = (u1 - u0) as f64 / 1e6 / (i1 - i0).as_secs_f64();
    let (p, q) = (find(&pods, &uid(1)), find(&pods, &uid(2)));
    eprintln!("steady: cgroup {truth:.4} cores, {mem} B; agent {p:?}");
    eprintln!("bursty: agent {q:?}; omitted {omitted:?}; co-burst {co:?}");
    drop((a, b));
    // The container and its pod level see the same processes.
    let c = &p.containers[0];
    assert_eq!(c.id, cid(1));
    for (what, cpu) in [("pod", &p.cpu), ("container", &c.cpu)] {
        let mean = cpu.mean_cores.unwrap();
        assert!(
            within(mean, truth, 0.05),
            "{what} mean {mean} vs cgroup {truth}"
        );
        assert!(
            within(mean, LOAD, 0.05),
            "{what} mean {mean} vs load {LOAD}"
        );
        let busiest = cpu.busiest_second_cores.unwrap();
        assert!(busiest_at_load(busiest), "{what} busiest {busiest}");
    }
    // Throttling where the quota is (the container's cgroup): some of its periods, within
    // what cpu.stat counted around the window (the agent's baseline is the first sample).
    let throttled = c.cpu.throttled_periods.unwrap();
    assert!(
        throttled > 0 && throttled <= th1.1 - th0.1,
        "throttled {throttled} vs cgroup {th0:?} → {th1:?}"
    );
    let got = c.memory.current_bytes.unwrap() as f64;
    assert!(
        within(got, mem as f64, 0.01),
        "memory {got} vs cgroup {mem}"
    );
    assert!(got >= 64.0 * 1048576.0, "the 64 MiB held: {got}");
    // The burst: half a core for its second, well above the window's mean.
    let busiest = q.cpu.busiest_second_cores.unwrap();
    let mean = q.cpu.mean_cores.unwrap();
    assert!(busiest_at_load(busiest), "burst {busiest}");
    assert!(mean < 0.5 * busiest, "mean {mean} vs burst {busiest}");
    drop((steady, bursty));
}

/// Memory that rose and fell inside the window: the peak is the cgroup's own highest
/// (`memory.max_usage_in_bytes` / `memory.peak`, which the new cgroup reached in this window)
/// within ±1 %, and well above what it holds at the end.
#[test]
fn a_memory_spike_inside_the_window_is_its_peak() {
    let needs = [Need::Root, Need::Tool("python3")];
    headroom_testbed::require_or_return!("a_memory_spike_inside_the_window_is_its_peak", &needs);
    let _serial = serial();
    let cg = KubeCgroup::new(&uid(9), &cid(9)).unwrap();
    let py = "import time\ntime.sleep(1.5)\nb = b'x' * (96 << 20)\ntime.sleep(0.3)\ndel b\ntime.sleep(5)";
    let g = Guard::spawn("python3", Command::new("python3").args(["-c", py])).unwrap();
    cg.add(g.pid()).unwrap();
    let mut s = sampler(PodSpecs::default());
    s.sample();
    run(&mut s, Duration::from_secs(3));
    let (peak, now) = (cg.memory_peak().unwrap(), cg.memory_current().unwrap());
    let (pods, _, _) = s.cut();
    drop(g);
    let m = &find(&pods, &uid(9)).containers[0].memory;
    eprintln!("cgroup peak {peak} now {now}; agent {m:?}");
    let got = m.peak_bytes.unwrap() as f64;
    assert!(
        within(got, peak as f64, 0.01),
        "peak {got} vs cgroup {peak}"
    );
    assert!(got > 96.0 * 1048576.0 && m.current_bytes.unwrap() < 48 << 20);
    drop(cg);
}

fn spec(i: u8) -> PodSpec {
    PodSpec {
        pod: PodRef {
            namespace: "team".into(),
            name: format!("burst-{i}"),
            uid: uid(10 + i),
        },
        workload: Some(Workload {
            kind: "Deployment".into(),
            name: "burst".into(),
        }),
        resources: Resources {
            cpu_request: Some(0.1),
            cpu_limit: Some(LOAD),
            memory_request: None,
            memory_limit: None,
        },
        containers: Default::default(),
        ids: Default::default(),
    }
}

/// Three pods of one Deployment (request 0.1 core, quota half a core): bursting 2 s each in
/// turn, 1.4 s apart (no one-second window holds two bursts), at most 1 pod is above its
/// request at any second; bursting together, 3. The node's busiest second sums every pod on
/// the machine (other tests' pods too, which can only add): at least one pod's half core vs at
/// least all three's 1.5 cores (−10 %), and together at least 0.8 core above in turn.
#[test]
fn co_burst_in_turn_is_one_together_is_three() {
    let needs = [Need::Root, Need::Tool("python3"), Need::Tool("nice")];
    headroom_testbed::require_or_return!("co_burst_in_turn_is_one_together_is_three", &needs);
    let _serial = serial();
    let cgs: Vec<KubeCgroup> = (0..3)
        .map(|i| {
            let mut cg = KubeCgroup::new(&uid(10 + i), &cid(10 + i)).unwrap();
            cg.cpu_quota(QUOTA_US).unwrap();
            cg.favour().unwrap();
            cg
        })
        .collect();
    let specs = PodSpecs::default();
    (0..3).for_each(|i| specs.insert(spec(i)));
    let mut results = Vec::new();
    for (label, starts) in [("in turn", [1.5, 4.9, 8.3]), ("together", [1.5, 1.5, 1.5])] {
        let t0 = now_s();
        let end = t0 + starts[2] + 3.0;
        let procs: Vec<Guard> = cgs
            .iter()
            .zip(starts)
            .map(|(cg, at)| spinner(cg, t0 + at, 2.0, end, 1))
            .collect();
        std::thread::sleep(Duration::from_millis(1000));
        let mut s = sampler(specs.clone());
        s.sample();
        s.cut(); // the window starts with every process waiting
        run(&mut s, Duration::from_secs_f64(end - now_s() - 0.3));
        let (_, _, co) = s.cut();
        drop(procs);
        let co = co.unwrap();
        eprintln!("{label}: {co:?}");
        let w = co
            .workloads
            .iter()
            .find(|w| w.namespace == "team" && w.workload.name == "burst")
            .unwrap();
        assert_eq!(w.pods, 3, "{label}");
        assert!(w.above_request_p95 <= w.above_request_max);
        results.push((w.above_request_max, co.cpu_busiest_second_cores));
    }
    assert_eq!((results[0].0, results[1].0), (1, 3), "{results:?}");
    assert!(results[0].1 >= 0.9 * LOAD, "{results:?}");
    assert!(results[1].1 >= 0.9 * 3.0 * LOAD, "{results:?}");
    assert!(
        results[1].1 - results[0].1 >= 0.8 * 2.0 * LOAD,
        "{results:?}"
    );
    drop(cgs);
}

/// Kept descriptors: a pod whose cgroup is removed while the sampler holds its files open is
/// noticed by the failing read and walked out at the next sample a second after the last
/// discovery (not at the 10 s walk).
#[test]
fn a_removed_cgroup_is_noticed_through_its_kept_files() {
    let needs = [Need::Root];
    headroom_testbed::require_or_return!(
        "a_removed_cgroup_is_noticed_through_its_kept_files",
        &needs
    );
    let _serial = serial();
    let cg = KubeCgroup::new(&uid(0x20), &cid(0x20)).unwrap();
    let mut s = sampler(PodSpecs::default());
    s.sample();
    run(&mut s, Duration::from_millis(1200));
    let (d0, held0) = (s.cost.discoveries, s.cost.fds_held);
    let (pods, _, _) = s.cut();
    let p = find(&pods, &uid(0x20));
    assert!(
        p.cpu.mean_cores.is_some() && p.containers.len() == 1,
        "{p:?}"
    );
    // Pod and container CPU time and memory kept open (other pods on the node add theirs).
    assert!(held0 >= 4, "descriptors held {held0}");
    // The kubelet's rmdir must not be held up by the agent's open files: every directory of
    // the pod (each hierarchy) is gone once the test bed's removal returns.
    let dirs: Vec<std::path::PathBuf> = [
        Some(cg.v2.clone()),
        cg.v1_cpu.clone(),
        cg.v1_cpuacct.clone(),
        cg.v1_memory.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    drop(cg);
    for d in &dirs {
        assert!(
            !d.exists(),
            "{} still there while the sampler holds its files",
            d.display()
        );
    }
    run(&mut s, Duration::from_millis(1600));
    let (pods, _, _) = s.cut();
    assert!(
        s.cost.discoveries > d0,
        "a walk within 1.6 s of the removal, not at the 10 s one"
    );
    assert!(
        pods.iter().all(|p| p.uid != uid(0x20)),
        "the removed pod is gone"
    );
}
