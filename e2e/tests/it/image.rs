//! The images built and run for real, without Docker (issue 24, point 5): `scripts/images.sh
//! --local` builds both images with buildah from deploy/docker's Dockerfiles (the binaries this
//! test runs, on a base made from their own shared libraries: no registry), in storage of the
//! test's own (vfs: no mounts left behind). Then the agent's image runs under podman exactly as
//! deploy/base/agent-daemonset.yaml runs it, every setting read from the manifest: its added
//! capabilities and nothing else, read-only root filesystem, no privilege escalation, user 0,
//! the host network (here: the bed's node namespace, which plays the host's), the host's /proc
//! and cgroups read-only at the manifest's paths, the ConfigMap's agent.toml. Two containers
//! (the runtime's own default seccomp profile, and that profile with the two rules containerd's
//! RuntimeDefault adds for these capabilities: `bpf` with CAP_BPF, `perf_event_open` with
//! CAP_PERFMON) and the bare binary measure the same window together while dnsperf sends at an
//! exact rate and a gunicorn pod's two workers are held: each must count exactly the packets
//! dnsperf sent and see the pod's two busy workers (ground truth: the requests its workers
//! started). The collector's image runs as its non-root user with a read-only root and
//! answers /healthz.
//!
//! The OCI runtime is crun where it runs; on a host with cgroups in hybrid mode (v1
//! controllers, a v2 hierarchy with a controller of its own, as on these machines) crun
//! refuses every container ("cgroups in hybrid mode not supported, drop all controllers from
//! cgroupv2") and runc (Debian) is used: the test prints which and why. Resource limits are
//! given at the current ones (processes at most pid_max): podman's defaults raise them, which a
//! sandbox without CAP_SYS_RESOURCE refuses. Needs root; skips with a reason outside CI, fails
//! in CI.

use crate::agent_common::{iface, u, AGENT, NO_IMDS};
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::cgroup::KubeCgroup;
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{children, Server};
use headroom_testbed::proc::Guard;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const UID: &str = "5a1d2e3f-0009-4a5b-8c6d-9e0f1a2b3c09";
const TAG: &str = "test";
/// dnsperf: queries per second, seconds.
const RATE: u32 = 400;
const SECONDS: u32 = 6;

fn root() -> PathBuf {
    headroom_testbed::bins::workspace_root()
}

/// The DaemonSet's pod spec and its agent container, as JSON (PyYAML from the project's
/// virtualenv reads the manifest).
fn daemonset() -> (Value, Value) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("deploy/base/agent-daemonset.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reading the manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pod = ds["spec"]["template"]["spec"].clone();
    let agent = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent")
        .cloned()
        .expect("the DaemonSet has an agent container");
    (pod, agent)
}

/// Podman and buildah with the test's own storage.
struct Store {
    dir: tempfile::TempDir,
    runtime: &'static str,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("storage.conf"), conf).unwrap();
        Store {
            dir,
            runtime: "crun",
        }
    }

    fn env(&self, c: &mut Command) {
        c.env(
            "CONTAINERS_STORAGE_CONF",
            self.dir.path().join("storage.conf"),
        );
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(["--runtime", self.runtime])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--tmpdir")
            .arg(self.dir.path().join("libpod"));
        self.env(&mut c);
        c
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Containers are run with --rm and named; anything left is removed before the storage.
        let _ = self
            .podman()
            .args(["rm", "--all", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let ours = self.dir.path().display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&ours)),
            "a mount is left under {ours}"
        );
    }
}

/// The current hard limit of `name` in /proc/self/limits ("Max open files" …).
fn limit(name: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/self/limits"));
    line[name.len()..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// `podman run` flags for the agent's container, every one read from the DaemonSet: its
/// security context, host network, and hostPath volumes at their mount paths (the export
/// queue's host path is a directory of the test's instead of the host's /var/lib).
fn daemonset_flags(
    pod: &Value,
    agent: &Value,
    bed: &Bed,
    queue: &Path,
    config: &Path,
) -> Vec<String> {
    let sc = &agent["securityContext"];
    let mut f: Vec<String> = Vec::new();
    assert_eq!(pod["hostNetwork"], true, "{pod}");
    f.push(format!("--network=ns:/run/netns/{}", bed.node.name));
    assert!(
        pod["hostPID"].as_bool() != Some(true),
        "hostPID: a private pid namespace"
    );
    if sc["readOnlyRootFilesystem"] == true {
        // As the kubelet does: no tmpfs on /tmp, /run … (podman's default with --read-only).
        f.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if sc["allowPrivilegeEscalation"] == false {
        f.push("--security-opt=no-new-privileges".into());
    }
    f.push(format!("--user={}", sc["runAsUser"].as_u64().unwrap()));
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    f.push("--cap-drop=all".into());
    let add: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    assert!(!add.is_empty());
    f.push(format!("--cap-add={}", add.join(",")));
    for m in agent["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        let mount = m["mountPath"].as_str().unwrap();
        let host = if vol["configMap"].is_object() {
            config.display().to_string()
        } else if let Some(p) = vol["hostPath"]["path"].as_str() {
            if m["readOnly"] == true {
                p.to_string()
            } else {
                queue.display().to_string()
            }
        } else {
            continue; // the collector token and CA: not read by `once`
        };
        f.push(format!("--volume={host}:{mount}{ro}"));
    }
    // The downward API's values as the kubelet fills them in, for this bed.
    for e in agent["env"].as_array().unwrap() {
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("spec.nodeName") => "node-1".to_string(),
            Some("status.hostIP") => bed::node_ip(0),
            other => panic!("an env var the test does not know how to fill: {other:?} in {e}"),
        };
        f.push(format!("--env={}={value}", e["name"].as_str().unwrap()));
    }
    f.extend(daemonset_limits());
    f
}

/// The runtime's default seccomp profile with `bpf` allowed under CAP_BPF and
/// `perf_event_open` under CAP_PERFMON, as containerd's RuntimeDefault generates them (taken
/// out of the rule that refuses them without CAP_SYS_ADMIN).
fn containerd_like_seccomp(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string("/usr/share/containers/seccomp.json").unwrap();
    let mut p: Value = serde_json::from_str(&text).unwrap();
    let gated = ["bpf", "perf_event_open"];
    for rule in p["syscalls"].as_array_mut().unwrap() {
        if rule["action"] == "SCMP_ACT_ERRNO" {
            if let Some(names) = rule["names"].as_array_mut() {
                names.retain(|n| !gated.contains(&n.as_str().unwrap_or("")));
            }
        }
    }
    let syscalls = p["syscalls"].as_array_mut().unwrap();
    syscalls.retain(|r| r["names"].as_array().is_some_and(|n| !n.is_empty()));
    for (name, cap) in [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")] {
        syscalls.push(
            json!({"names": [name], "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}),
        );
    }
    let path = dir.join("seccomp-containerd-like.json");
    std::fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    path
}

/// A `once` run and its log, started and capturing.
struct Run {
    name: &'static str,
    guard: Guard,
}

impl Run {
    fn start(name: &'static str, mut cmd: Command) -> Run {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut guard = Guard::spawn(name, &mut cmd).unwrap();
        guard.stderr_until("Capturing.", None);
        Run { name, guard }
    }

    fn report(self) -> Value {
        let out = self.guard.wait(Duration::from_secs(120)).unwrap();
        assert!(out.status.success(), "{}: {:?}", self.name, out.status);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e})", self.name))
    }
}

#[test]
fn images_built_with_buildah_and_the_agent_run_as_the_daemonset_runs_it() {
    headroom_testbed::require_or_return!(
        "images_built_with_buildah_and_the_agent_run_as_the_daemonset_runs_it",
        &headroom_testbed::root_and(&[
            "ip", "unbound", "dnsperf", "gunicorn", "python3", "curl", "buildah", "podman", "runc",
        ])
    );
    let start = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{what}: {:.1} s", start.elapsed().as_secs_f64());
    let agent_bin = PathBuf::from(&*AGENT);
    let collector_bin = headroom_testbed::bins::path("headroom-collector");
    assert_eq!(agent_bin.parent(), collector_bin.parent(), "one BIN_DIR");
    let mut store = Store::new();
    phase("binaries");

    // Both images, from the Dockerfiles, with buildah.
    let t = std::time::Instant::now();
    let mut build = Command::new(root().join("scripts/images.sh"));
    build
        .args(["--local", TAG])
        .env("BIN_DIR", agent_bin.parent().unwrap());
    store.env(&mut build);
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "scripts/images.sh --local: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("images built in {:.1} s", t.elapsed().as_secs_f64());
    let image = |c: &str| format!("localhost/headroom-{c}:{TAG}");

    // crun where it runs, else runc, saying why.
    let probe = store
        .podman()
        .args(["run", "--rm", "--network=none"])
        .args(daemonset_limits())
        .arg(image("agent"))
        .arg("--help")
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!(
            "NOTE crun cannot run a container here ({}); using runc",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        store.runtime = "runc";
    }

    phase("images built, runtime chosen");
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    phase("bed (after its lock)");
    // The pod: gunicorn, 2 sync workers, in its kubelet-shaped cgroup; both workers held.
    let pod_ns = Netns::new("imgpod").unwrap();
    let cg = KubeCgroup::new(UID, &"c".repeat(64)).unwrap();
    let server = Server::gunicorn(Some(&pod_ns), 2, 64).unwrap();
    let master = server.master_pid();
    for pid in std::iter::once(master).chain(children(master)) {
        cg.add(pid as u32).unwrap();
    }
    let held = server.hold("h", 2, 2).unwrap();

    let (pod, agent) = daemonset();
    let queue = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("deploy/base/agent.toml"),
        config.path().join("agent.toml"),
    )
    .unwrap();
    let flags = daemonset_flags(&pod, &agent, &bed, queue.path(), config.path());
    eprintln!("podman run {}", flags.join(" "));
    let seccomp = containerd_like_seccomp(store.dir.path());
    let duration = format!("{}s", SECONDS + 8);
    let container = |name: &str, extra: &[String]| {
        let mut c = store.podman();
        c.args(["run", "--rm", "--name", name])
            .args(&flags)
            .args(extra)
            .args(["--env", "RUST_LOG=info"])
            .arg(image("agent"));
        c.args(["once", "--config", "/etc/headroom/agent.toml"]);
        once_tail(&mut c, &duration);
        c
    };
    let pid = std::process::id();
    let default_seccomp = Run::start(
        "agent image, runtime default seccomp",
        container(&format!("hr-agent-default-{pid}"), &[]),
    );
    let containerd_seccomp = Run::start(
        "agent image, containerd-like seccomp",
        container(
            &format!("hr-agent-containerd-{pid}"),
            &[format!("--security-opt=seccomp={}", seccomp.display())],
        ),
    );
    let mut bare_cmd = bed.node.command(&AGENT);
    bare_cmd.arg("once");
    once_tail(&mut bare_cmd, &duration);
    bare_cmd.env("RUST_LOG", "info");
    let bare = Run::start("bare agent", bare_cmd);

    let perf = bed::run_dnsperf(
        &mut bed
            .dnsperf(bed::LINKLOCAL_RESOLVER, RATE, SECONDS, None)
            .unwrap(),
    )
    .unwrap();
    let reports: Vec<(&str, Value)> = [bare, default_seccomp, containerd_seccomp]
        .into_iter()
        .map(|r| (r.name, r.report()))
        .collect();
    phase("three reports");
    assert_eq!(
        server.started("h").len(),
        2,
        "ground truth: both workers held"
    );
    held.release().unwrap();

    let mut backlogs = Vec::new();
    for (name, r) in &reports {
        let i = iface(r, "eni0");
        eprintln!(
            "{name}: tap {}, {} link-local packets (dnsperf sent {}), peak {}/s",
            i["tap"], i["linklocal_packets"], perf.sent, i["peak_pps"]
        );
        assert_eq!(
            u(&i["linklocal_packets"]),
            perf.sent,
            "{name}: every packet"
        );
        let peak = u(&i["peak_pps"]) as f64;
        assert!(
            (peak - f64::from(RATE)).abs() <= f64::from(RATE) * 0.03,
            "{name}: peak {peak}/s at {RATE}/s (±3 %)"
        );
        let l = r["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["pod"]["uid"] == UID && l["port"] == server.port)
            .unwrap_or_else(|| panic!("{name}: no listener of the pod: {}", r["listeners"]));
        eprintln!("{name}: listener {l}");
        assert_eq!(
            (&l["model"], u(&l["workers"]), u(&l["busy_max"])),
            (&json!("prefork"), 2, 2),
            "{name}: the pod's two workers, both busy: {l}"
        );
        backlogs.push(u(&l["backlog"]));
    }
    // The backlog limit (gunicorn --backlog 64) is read through pidfd_getfd(2), which needs
    // the holder's pid in the agent's own pid namespace: the bare binary reads it; in the
    // container (hostPID off, as the DaemonSet runs) the host's pids are not the agent's to
    // open, so it is 0 (unknown) rather than some other process's socket's.
    assert_eq!(backlogs, [64, 0, 0], "backlog: bare, containers");
    // With the capabilities the manifest adds and bpf(2) allowed by seccomp, the eBPF tap
    // runs in the container; the bare binary (all of root's capabilities) uses it too.
    assert_eq!(iface(&reports[0].1, "eni0")["tap"], "ebpf");
    assert_eq!(iface(&reports[2].1, "eni0")["tap"], "ebpf");

    // The collector's image: its non-root user, a read-only root, /healthz answered.
    let name = format!("hr-collector-{pid}");
    let mut c = store.podman();
    c.args([
        "run",
        "--rm",
        "--name",
        &name,
        "--read-only",
        "--read-only-tmpfs=false",
    ])
    .arg(format!("--network=ns:/run/netns/{}", bed.node.name))
    .args(["--cap-drop=all", "--security-opt=no-new-privileges"])
    .args(daemonset_limits())
    .arg(image("collector"))
    .args(["--auth", "none", "--http-listen", "127.0.0.1:19564"])
    .args(["--otlp-grpc-listen", "127.0.0.1:19517"])
    .args(["--otlp-http-listen", "127.0.0.1:19518"])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let collector = Guard::spawn("collector image", &mut c).unwrap();
    headroom_testbed::scrape::wait_ok(
        &bed.node,
        "http://127.0.0.1:19564/healthz",
        "collector image",
        Duration::from_secs(30),
    );
    // Ground truth from the kernel: the container's process's real, effective, saved uids.
    let pid = store
        .podman()
        .args(["inspect", "--format", "{{.State.Pid}}", &name])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    eprintln!("collector image, pid {pid}: {uids}");
    assert_eq!(
        uids.split_whitespace().skip(1).take(3).collect::<Vec<_>>(),
        ["65532"; 3],
        "the collector runs as its image's user: {uids}"
    );
    let _ = store.podman().args(["stop", "--time", "5", &name]).status();
    drop(collector);
    phase("collector image checked");
}

/// The resource limits at their current values (see the module docs), for every container;
/// processes at most the kernel's pid_max (a higher value is refused here: measured, 32 768
/// taken and 32 769 refused with pid_max 32 768).
fn daemonset_limits() -> Vec<String> {
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let nproc = limit("Max processes")
        .parse::<u64>()
        .map_or(pid_max, |n| n.min(pid_max));
    vec![
        format!("--ulimit=nofile={0}:{0}", limit("Max open files")),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ]
}

/// The flags after `once --config …` shared with the bare run.
fn once_tail(c: &mut Command, duration: &str) {
    c.args(["--format", "json", "--duration", duration])
        .args(["--interface", "eni0", "--node-name", "node-1"])
        .args(NO_IMDS);
}
