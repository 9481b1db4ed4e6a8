//! `headroom-bench-scaledown [--nodes 5000] [--pods-per-node 30] [--seconds 60] [--churn 50]
//! [--in-process-only 1]`:
//! the memory of the collector's Kubernetes view (pods, nodes, PDBs) and the time of its
//! evaluations on a large cluster. The fake API server (testbed) holds `--nodes` m5.4xlarge
//! nodes, each with 3 DaemonSet pods and `--pods-per-node` − 3 pods of 2 000 Deployments in 50
//! namespaces (each pod ~2.5 KB of JSON with managedFields, as the API server sends them), a
//! PDB per Deployment, and on every 7th node a kube-system pod without a PDB (so that many
//! ScaleDownBlocked findings are expected; every other node is under the threshold and
//! removable, so the placement check runs for all its pods). It starts `headroom-collector`
//! (release, next to this binary) with `KUBECONFIG` at the fake server, waits until the
//! expected findings are listed (the first paged list of every kind and one evaluation), then
//! updates `--churn` pods per second for `--seconds` (watch events), sampling the collector's
//! RSS. It prints the RSS after the first list and at the end (VmRSS, VmHWM), the same
//! collector's RSS with `kube = false` (the baseline), and the evaluation gauges from
//! `/metrics`. First, in this process, the same objects are decoded into the collector's
//! `ClusterState` and the rules alone are timed (ScaleDownBlocked and NodeGroupPacking, wall
//! and thread CPU), which a shared machine's load does not blur; `--in-process-only 1` stops
//! there. Traffic goes to 127.0.0.1 only; every loop is bounded in time.

#[allow(dead_code)] // rss_kib and text_flag are the other benches'.
mod common;

use common::{flag, status_kib};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::cluster::{node, pdb, pod, with_labels};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// CPU seconds (user + system) a process has used.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory-safety preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn get(addr: &str, path: &str) -> Option<(Vec<u8>, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    Some((resp[at..].to_vec(), t.elapsed()))
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// What a real pod carries besides its spec: managedFields of its two field managers.
fn managed_fields() -> Value {
    let fields = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
        "f:ownerReferences": {".": {}, "k:{\"uid\":\"x\"}": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:env": {}, "f:image": {},
            "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {"f:requests": {"f:cpu": {}, "f:memory": {}}}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}}});
    json!([{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:05Z",
        "fieldsType": "FieldsV1", "subresource": "status",
        "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}}])
}

fn workload_pod(ns: &str, dep: usize, i: usize, node: &str) -> Value {
    let hash = format!("{:010x}", dep * 7919);
    let mut p = with_labels(
        pod(
            ns,
            &format!("dep-{dep}-{hash}-{i:05}"),
            node,
            Some(("ReplicaSet", &format!("dep-{dep}-{hash}"))),
            Some(("100m", "128Mi")),
        ),
        &[("app", &format!("dep-{dep}")), ("pod-template-hash", &hash)],
    );
    p["metadata"]["managedFields"] = managed_fields();
    p["status"]["containerStatuses"] = json!([{"name": "main", "ready": true, "restartCount": 0,
        "image": "registry.example/app:1", "imageID": "registry.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}}}]);
    p
}

fn start_collector(
    exe: &std::path::Path,
    dir: &std::path::Path,
    kube: bool,
    kubeconfig: &std::path::Path,
) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let cfg = dir.join(format!("collector-{kube}.toml"));
    std::fs::write(&cfg, format!("kube = {kube}\nauth = \"none\"\n[rules]\nscale_down_for = \"0s\"\nstartup_grace = \"0s\"\n")).unwrap();
    let api = format!("127.0.0.1:{port}");
    let child = Command::new(exe)
        .args(["--config", cfg.to_str().unwrap(), "--http-listen", &api])
        .args(["--otlp-grpc-listen", &free(), "--otlp-http-listen", &free()])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("headroom-collector starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&api, "/readyz").is_none() {
        assert!(Instant::now() < deadline, "collector never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, api)
}

const DEPLOYMENTS: usize = 2000;

fn node_name(n: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.ec2.internal",
        n / 65536,
        n / 256 % 256,
        n % 256
    )
}

/// Every object of the bench cluster, in order, to `out`.
fn cluster(nodes: usize, per_node: usize, now_s: i64, out: &mut dyn FnMut(Value)) {
    for n in 0..nodes {
        let name = node_name(n);
        out(node(
            &name,
            "m5.4xlarge",
            "15890m",
            "57691Mi",
            now_s - 86_400,
        ));
        for ds in ["aws-node", "kube-proxy", "ebs-csi-node"] {
            out(with_labels(
                pod(
                    "kube-system",
                    &format!("{ds}-{n:05}"),
                    &name,
                    Some(("DaemonSet", ds)),
                    Some(("25m", "64Mi")),
                ),
                &[("k8s-app", ds)],
            ));
        }
        let mut rest = per_node - 3;
        if n % 7 == 0 {
            out(with_labels(
                pod(
                    "kube-system",
                    &format!("metrics-server-7d8f9c-{n:05}"),
                    &name,
                    Some(("ReplicaSet", "metrics-server-7d8f9c")),
                    Some(("100m", "200Mi")),
                ),
                &[
                    ("k8s-app", "metrics-server"),
                    ("pod-template-hash", "7d8f9c"),
                ],
            ));
            rest -= 1;
        }
        for j in 0..rest {
            let dep = (n * per_node + j) % DEPLOYMENTS;
            out(workload_pod(
                &format!("ns-{}", dep % 50),
                dep,
                n * per_node + j,
                &name,
            ));
        }
    }
    for dep in 0..DEPLOYMENTS {
        out(pdb(
            &format!("ns-{}", dep % 50),
            &format!("dep-{dep}"),
            json!({"app": format!("dep-{dep}")}),
            json!({"maxUnavailable": 1}),
            1,
            5,
        ));
    }
}

/// This thread's CPU seconds.
fn thread_cpu_s() -> f64 {
    common::cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) as f64 / 1e9
}

/// The rule alone, in this process: the same cluster decoded into the collector's
/// `ClusterState`, then ScaleDownBlocked judged 10 times; wall and this thread's CPU time per
/// evaluation (CPU time does not count waiting for a core on a shared machine). Returns the
/// pod count and one workload pod's JSON size.
fn judge_in_process(nodes: usize, per_node: usize, now_s: i64) -> (usize, usize) {
    use headroom_collector::kube::cluster::ClusterState;
    use headroom_collector::rules::{scale_down::Blocked, Thresholds};
    let mut state = ClusterState::default();
    let (mut pods, mut sample) = (0, 0);
    let t = Instant::now();
    cluster(nodes, per_node, now_s, &mut |o| match o["kind"].as_str() {
        Some("Node") => state.apply_node(&serde_json::from_value(o).unwrap()),
        Some("PodDisruptionBudget") => state.apply_pdb(&serde_json::from_value(o).unwrap()),
        _ => {
            pods += 1;
            if sample == 0 && o["metadata"]["namespace"] != "kube-system" {
                sample = o.to_string().len();
            }
            state.apply_pod(&serde_json::from_value(o).unwrap());
        }
    });
    let decode = t.elapsed();
    let state = state.all_listed();
    let (labels, constraints, strings) = state.interned();
    let rule = Blocked {
        t: Thresholds::default(),
        catalog: headroom_collector::catalog::Catalog::builtin(),
    };
    let now = UNIX_EPOCH + Duration::from_secs(now_s as u64);
    let (mut walls, mut cpus, mut found) = (Vec::new(), Vec::new(), 0);
    for _ in 0..10 {
        let (w, c) = (Instant::now(), thread_cpu_s());
        found = rule.judge(&state, &|_| "bench".to_string(), now).len();
        cpus.push(thread_cpu_s() - c);
        walls.push(w.elapsed().as_secs_f64());
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    println!(
        "in process: {pods} pods decoded into the view in {:.1}s ({labels} label sets, {constraints} constraint sets, {strings} strings interned); \
         ScaleDownBlocked over {nodes} nodes: {found} findings, median {:.0} ms wall / {:.0} ms CPU, max {:.0} ms wall",
        decode.as_secs_f64(),
        walls[5] * 1000.0,
        cpus[5] * 1000.0,
        walls[9] * 1000.0
    );
    // NodeGroupPacking over the same view (no agents: the DNS part is the small one).
    let packing = headroom_collector::rules::packing::Packing {
        t: Thresholds::default(),
        catalog: headroom_collector::catalog::Catalog::builtin(),
    };
    let fleet = headroom_collector::fleet::FleetSnapshot::one_cluster("bench", vec![], vec![]);
    let rec = headroom_collector::rules::packing::plan::Recommended::new();
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (w, c) = (Instant::now(), thread_cpu_s());
        found = packing.judge(&state, &fleet, &rec, now).len();
        cpus.push(thread_cpu_s() - c);
        walls.push(w.elapsed().as_secs_f64());
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    println!(
        "in process: NodeGroupPacking over {nodes} nodes: {found} findings, median {:.0} ms wall / {:.0} ms CPU, max {:.0} ms wall",
        walls[5] * 1000.0,
        cpus[5] * 1000.0,
        walls[9] * 1000.0
    );
    (pods, sample)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = flag(&args, "--nodes", 5000) as usize;
    let per_node = flag(&args, "--pods-per-node", 30).max(4) as usize;
    let seconds = flag(&args, "--seconds", 60);
    let churn = flag(&args, "--churn", 50).max(1);
    if flag(&args, "--in-process-only", 0) == 1 {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        judge_in_process(nodes, per_node, now_s);
        return;
    }
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("headroom-collector");
    if !exe.is_file() {
        eprintln!(
            "no {}: build the collector first (cargo build --release -p headroom-collector)",
            exe.display()
        );
        std::process::exit(64);
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (pods, sample_json) = judge_in_process(nodes, per_node, now_s);
    let api = ApiServer::start(None).unwrap();
    let built = Instant::now();
    cluster(nodes, per_node, now_s, &mut |o| {
        api.apply(o);
    });
    // The history of those applies is not a watch's business: only the state is listed.
    api.expire();
    let expected = nodes.div_ceil(7);
    println!(
        "fake API server: {nodes} nodes, {pods} pods (~{sample_json} B of JSON each), {DEPLOYMENTS} PDBs, built in {:.1}s; expecting {expected} ScaleDownBlocked findings",
        built.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();

    // The baseline: the same collector without Kubernetes watches, after two evaluations.
    let (mut base, _) = start_collector(&exe, dir.path(), false, &kubeconfig);
    std::thread::sleep(Duration::from_secs(12));
    let base_rss = status_kib(base.id(), "VmRSS:");
    let _ = base.kill();
    let _ = base.wait();

    let started = Instant::now();
    let (mut child, addr) = start_collector(&exe, dir.path(), true, &kubeconfig);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut found = 0;
    while found != expected {
        assert!(
            Instant::now() < deadline,
            "only {found} of {expected} findings after 600 s"
        );
        std::thread::sleep(Duration::from_millis(500));
        if let Some((body, _)) = get(&addr, "/api/v1/findings") {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            found = v["findings"].as_array().map_or(0, |f| {
                f.iter()
                    .filter(|f| f["rule"] == "ScaleDownBlocked" && f["state"] == "firing")
                    .count()
            });
        }
    }
    let listed_s = started.elapsed().as_secs_f64();
    let (rss_listed, hwm_listed) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    let cpu_listed = cpu_s(pid);
    println!("listed and evaluated in {listed_s:.1}s ({cpu_listed:.1} s of the collector's CPU; the rest is the fake server paging its list): RSS {} MiB, peak {} MiB (baseline without kube {} MiB)", rss_listed / 1024, hwm_listed / 1024, base_rss / 1024);

    // Steady state: `churn` pod updates per second through the watch.
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut updates = 0u64;
    let mut max_rss = 0;
    let tick = Duration::from_secs_f64(1.0 / churn as f64);
    let mut next = Instant::now();
    while Instant::now() < end {
        let n = (updates as usize * 7919) % nodes;
        let name = format!(
            "ip-10-{}-{}-{}.ec2.internal",
            n / 65536,
            n / 256 % 256,
            n % 256
        );
        let j = (updates as usize) % (per_node - 4);
        let dep = (n * per_node + j) % DEPLOYMENTS;
        let mut p = workload_pod(&format!("ns-{}", dep % 50), dep, n * per_node + j, &name);
        p["metadata"]["annotations"]["bench/update"] = json!(updates.to_string());
        api.apply(p);
        updates += 1;
        if updates.is_multiple_of(churn * 5) {
            max_rss = max_rss.max(status_kib(pid, "VmRSS:"));
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let (metrics, took) = get(&addr, "/metrics").expect("/metrics");
    let text = String::from_utf8_lossy(&metrics);
    let (rss_end, hwm_end) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    let cpu_steady = (cpu_s(pid) - cpu_listed) / seconds.max(1) as f64;
    println!(
        "after {seconds}s of {churn} pod updates/s ({updates} updates): RSS {} MiB (max sampled {} MiB), peak {} MiB; evaluation last {:.0} ms, max {:.0} ms; /metrics {} ms; collector CPU {:.1} % of a core",
        rss_end / 1024,
        max_rss / 1024,
        hwm_end / 1024,
        gauge(&text, "headroom_collector_evaluation_seconds").unwrap_or(f64::NAN) * 1000.0,
        gauge(&text, "headroom_collector_evaluation_seconds_max").unwrap_or(f64::NAN) * 1000.0,
        took.as_millis(),
        cpu_steady * 100.0
    );
    println!(
        "kube view ≈ {} MiB (RSS at the end − baseline)",
        (rss_end.saturating_sub(base_rss)) / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}
