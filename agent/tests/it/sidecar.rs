//! Sidecar mode (EKS Fargate: no DaemonSets, one ENI per pod): the real agent binary inside a
//! bed pod's own network namespace (`ip netns exec`, `--mode sidecar`), its pod read with `get`
//! from the fake API server, its identity from downward-API-shaped env. Ground truth: tcpdump in
//! the pod's namespace, the probed server's own request log, gunicorn's own record of which
//! workers are busy. Needs root; skips with a reason outside CI, fails in CI.

use crate::common::*;
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::Server;
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POD_IP: &str = "10.244.0.5";
const WORKERS: usize = 4;
const BACKLOG: u32 = 8;

fn needs() -> Vec<Need> {
    headroom_testbed::root_and(&[
        "ip", "unbound", "dnsperf", "tcpdump", "python3", "gunicorn", "unshare",
    ])
}

/// The pod as the API server returns it: a readiness probe on the app's port 8080.
fn pod_object() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "web-0", "uid": "uid-web-0",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                          "uid": "sts", "controller": true}]},
        "spec": {"nodeName": "fargate-ip-10-244-0-5.ec2.internal", "containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 8080}],
             "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                "timeoutSeconds": 1, "periodSeconds": 1, "failureThreshold": 3}},
            {"name": "headroom-agent", "image": "headroom-agent:0.1.0"}
        ]},
        "status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}
    })
}

/// A plain HTTP app on the pod IP (python's http.server), logging each request to stderr:
/// the probe attempts that really reached it.
struct App {
    _guard: Guard,
    log: Arc<Mutex<String>>,
}

impl App {
    fn start(pod: &Netns, dir: &std::path::Path) -> App {
        let mut cmd = pod.command("python3");
        cmd.args(["-m", "http.server", "--bind", POD_IP, "8080", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut g = Guard::spawn("python3 http.server", &mut cmd).unwrap();
        let err = g.child.as_mut().unwrap().stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                *l += &line;
                l.push('\n');
            }
        });
        // Up once it answers inside the pod.
        headroom_testbed::wait_for("the app answers", Duration::from_secs(10), || {
            pod.command("python3")
                .args(["-c", &format!("import urllib.request; urllib.request.urlopen('http://{POD_IP}:8080/', timeout=1)")])
                .status()
                .ok()
                .filter(|s| s.success())
        });
        log.lock().unwrap().clear();
        App { _guard: g, log }
    }

    /// Requests of `/` answered 200 so far.
    fn gets(&self) -> u64 {
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200"))
            .count() as u64
    }
}

/// `headroom-agent --mode sidecar once` in the pod's namespace, as a sidecar container sees it:
/// downward-API env, the API server through KUBECONFIG; `own_pid_ns`: under
/// `unshare --pid --fork --mount-proc`, so it sees no process but itself (no
/// `shareProcessNamespace`). Waits until it captures.
fn sidecar_once(pod: &Netns, kubeconfig: &std::path::Path, seconds: u32, own_pid_ns: bool) -> Once {
    let mut cmd = pod.command(if own_pid_ns {
        "unshare"
    } else {
        AGENT.as_str()
    });
    if own_pid_ns {
        cmd.args(["--pid", "--fork", "--mount-proc", AGENT.as_str()]);
    }
    cmd.args(["--mode", "sidecar", "once", "--format", "json"])
        .args(["--duration", &format!("{seconds}s")])
        .args(NO_IMDS)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "web-0")
        .env("POD_NAMESPACE", "shop")
        .env("POD_UID", "uid-web-0")
        .env("POD_IP", POD_IP)
        .env("NODE_NAME", "fargate-ip-10-244-0-5.ec2.internal");
    Once::command(cmd)
}

fn listener(report: &Value, port: u16) -> &Value {
    report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == port)
        .unwrap_or_else(|| panic!("no listener :{port}: {:#}", report["listeners"]))
}

struct Pod {
    bed: Bed,
    pod: Netns,
    _api: ApiServer,
    kubeconfig: std::path::PathBuf,
    app: App,
}

fn setup() -> Pod {
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let pod = bed.pod(POD_IP).unwrap();
    let api = ApiServer::start(Some(&pod)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    api.apply(pod_object());
    let www = bed.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "ok\n").unwrap();
    let app = App::start(&pod, &www);
    Pod {
        bed,
        pod,
        _api: api,
        kubeconfig,
        app,
    }
}

/// In the pod's own namespace the sidecar measures the pod's eth0 (a veth: no device behind
/// it, which the node default would skip): link-local packets exactly as tcpdump saw them
/// leave, the busiest second within one 10 ms step; its readiness probe shadowed against the
/// pod IP (every attempt one the app logged); `node` says sidecar with the pod's identity.
#[test]
fn sidecar_counts_its_pods_packets_and_shadows_its_probe() {
    headroom_testbed::require_or_return!("sidecar_counts_its_pods_packets", &needs());
    let p = setup();
    let dump = p
        .bed
        .tcpdump_in(&p.pod, "eth0", "dst host 169.254.169.253")
        .unwrap();
    let agent = sidecar_once(&p.pod, &p.kubeconfig, 8, false);
    agent.wait_log(&["Mode.", "sidecar"], Duration::from_secs(5));
    let mut bg = p
        .bed
        .dnsperf_in(&p.pod, bed::LINKLOCAL_RESOLVER, 100, 5, None)
        .unwrap();
    let bg = std::thread::spawn(move || bed::run_dnsperf(&mut bg).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let mut burst = p
        .bed
        .dnsperf_in(&p.pod, bed::LINKLOCAL_RESOLVER, 600, 1, None)
        .unwrap();
    let burst = bed::run_dnsperf(&mut burst).unwrap();
    let bg = bg.join().unwrap();
    let report = agent.report();
    let served = p.app.gets();
    let ts = dump.stop_and_timestamps().unwrap();
    let truth = headroom_testbed::pcap::busiest_second(&ts);

    assert_eq!(report["node"]["mode"], "sidecar");
    assert_eq!(report["node"]["name"], "fargate-ip-10-244-0-5.ec2.internal");
    let own = &report["node"]["pod"];
    assert_eq!(
        (&own["namespace"], &own["name"], &own["uid"], &own["ip"]),
        (
            &json!("shop"),
            &json!("web-0"),
            &json!("uid-web-0"),
            &json!(POD_IP)
        )
    );
    let names: Vec<&str> = report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eth0"], "every interface but lo");
    let i = iface(&report, "eth0");
    assert_eq!(
        i["tap"], "af_packet",
        "a sidecar's tap needs only CAP_NET_RAW"
    );
    let (counted, peak) = (u(&i["linklocal_packets"]), u(&i["peak_pps"]));
    eprintln!(
        "sidecar: dnsperf bg {bg:?} burst {burst:?}; tcpdump {} packets, busiest second {truth}; agent {counted}, peak {peak}",
        ts.len()
    );
    assert_eq!(
        counted,
        ts.len() as u64,
        "every packet tcpdump saw leave eth0"
    );
    assert_eq!(
        counted,
        bg.sent + burst.sent,
        "one packet per UDP query sent"
    );
    assert_eq!(u(&i["kernel_drops"]), 0);
    assert!(
        i["allowance"].is_null(),
        "a veth has no ENA allowance counters: null, not zeros"
    );
    // Never above the busiest second, below by at most one 10 ms step at 700/s.
    let step = 700u64.div_ceil(100) + 1;
    assert!(
        peak <= truth && peak + step >= truth,
        "peak {peak} vs tcpdump's busiest second {truth} (one 10 ms step: {step})"
    );

    let probe = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "readiness")
        .unwrap_or_else(|| panic!("no readiness probe: {:#}", report["probes"]));
    eprintln!("probe {probe}; the app served {served} GET /");
    assert_eq!(probe["pod"]["name"], "web-0");
    assert_eq!(probe["target"], format!("http://{POD_IP}:8080/"));
    let attempts = u(&probe["attempts"]);
    // Every attempt in the report reached the app; one more may have run between the cut
    // and the agent's exit.
    assert!(
        attempts == served || attempts + 1 == served,
        "attempts {attempts} vs requests the app served {served}"
    );
    // Period 1 s over the 8 s window: at least 5 (the pod is read first, the machine is busy).
    assert!(attempts >= 5, "attempts {attempts}");
    assert_eq!(u(&probe["timeouts"]), 0);
}

/// gunicorn (4 sync workers, backlog 8) in the pod, holding 2, 4 and 6 slow requests (6: two
/// wait in the accept queue). Sharing the pid namespace the sidecar sees the workers: busy from
/// processes, exact. Alone in its pid namespace (`unshare --pid --mount-proc`) it sees none:
/// busy inferred from the connections accepted on the port, still exact for sync workers, and
/// the report says so; queue and backlog exact either way; the listener is the pod's.
#[test]
fn sidecar_busy_workers_with_and_without_the_pods_processes() {
    headroom_testbed::require_or_return!("sidecar_busy_workers", &needs());
    let p = setup();
    let server = Server::gunicorn(Some(&p.pod), WORKERS as u32, BACKLOG).unwrap();
    let workers: BTreeSet<i32> = server.worker_pids();
    assert_eq!(workers.len(), WORKERS);
    for (own_pid_ns, tag, n) in [
        (false, "a", 2),
        (false, "b", 6),
        (true, "c", 2),
        (true, "d", 4),
        (true, "e", 6),
    ] {
        let held = server.hold(tag, n, WORKERS).unwrap();
        let busy = server.started(tag).len() as u64;
        let queued = n as u64 - busy;
        let report = sidecar_once(&p.pod, &p.kubeconfig, 2, own_pid_ns).report();
        assert_eq!(server.started(tag).len() as u64, busy, "held throughout");
        held.release().unwrap();
        let l = listener(&report, server.port);
        eprintln!("own pid ns {own_pid_ns}, {n} held: busy {busy}, queued {queued}; agent {l}");
        assert_eq!(l["address"], "127.0.0.1");
        assert_eq!(l["busy_mean"].as_f64().unwrap(), busy as f64);
        assert_eq!(u(&l["busy_max"]), busy);
        assert_eq!(u(&l["queue_max"]), queued);
        assert_eq!(u(&l["backlog"]), BACKLOG as u64);
        assert_eq!(
            l["pod"]["name"], "web-0",
            "the sidecar's listeners are its pod's"
        );
        assert_eq!(l["workload"]["kind"], "StatefulSet");
        if own_pid_ns {
            assert_eq!(l["busy_source"], "connections");
            assert_eq!(u(&l["workers"]), 0, "workers out of sight: unknown");
            assert!(l["worker_pids"].as_array().unwrap().is_empty());
        } else {
            assert_eq!(l["busy_source"], "processes");
            assert_eq!(u(&l["workers"]), WORKERS as u64);
            let pids: BTreeSet<i32> = l["worker_pids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap() as i32)
                .collect();
            assert_eq!(pids, workers);
        }
        // Only the pod's own namespace: no listener of the host or the bed's node.
        let netns = report["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| u(&l["netns"]))
            .collect::<BTreeSet<u64>>();
        assert_eq!(netns.len(), 1, "{:#}", report["listeners"]);
    }
    drop(server);
}

/// Without CAP_NET_RAW a sidecar stops at once: one line naming the capability and the fix,
/// exit 77 (EX_NOPERM).
#[test]
fn sidecar_without_cap_net_raw_says_so() {
    headroom_testbed::require_or_return!(
        "sidecar_without_cap_net_raw_says_so",
        &headroom_testbed::root_and(&["ip", "setpriv"])
    );
    let ns = Netns::new("sidecar").unwrap();
    let out = ns
        .command("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-net_raw", "--"])
        .arg(AGENT.as_str())
        .args(["--mode", "sidecar", "once", "--duration", "1s"])
        .args(NO_IMDS)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("headroom-agent:"))
        .collect();
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("CAP_NET_RAW") && lines[0].contains("capabilities.add"),
        "{err}"
    );
    // The same binary with the capability gets past it (and finds only lo: a usage error).
    let ok = ns
        .command(AGENT.as_str())
        .args(["--mode", "sidecar", "once", "--duration", "1s"])
        .args(NO_IMDS)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(!err.contains("CAP_NET_RAW"), "{err}");
    assert_eq!(ok.status.code(), Some(64), "{err}");
    assert!(err.contains("no interface but loopback"), "{err}");
}

/// A sidecar on an EC2 node whose IMDS answers pods (hop limit 2): its eth0 is a veth, whose
/// MAC IMDS does not know, so it is named by the ENI that holds the pod's IP among its
/// addresses; the instance's identity comes along.
#[test]
fn sidecar_names_its_eni_from_the_pods_view_of_imds() {
    headroom_testbed::require_or_return!("sidecar_names_its_eni", &needs());
    use headroom_testbed::imds::{FakeEni, FakeImds, Instance};
    let p = setup();
    let eni = |mac: &str, id: &str, dev: u32, ips: &[&str]| FakeEni {
        mac: mac.into(),
        interface_id: id.into(),
        device_number: dev,
        subnet_cidr: "10.0.0.0/16".into(),
        vpc_cidrs: vec!["10.0.0.0/16".into()],
        local_ipv4s: ips.iter().map(|s| s.to_string()).collect(),
    };
    let instance = Instance {
        instance_id: "i-0sidecar".into(),
        instance_type: "m6i.large".into(),
        availability_zone: "eu-west-1a".into(),
        enis: vec![
            eni("02:00:00:00:0a:01", "eni-0primary", 0, &["10.0.0.10"]),
            eni("02:00:00:00:0b:01", "eni-0pods", 1, &["10.0.1.10", POD_IP]),
        ],
    };
    let _imds = FakeImds::new(
        &instance,
        "169.254.169.254:80".parse().unwrap(),
        Some(&p.bed.vpc.name),
    )
    .unwrap();
    let mut cmd = p.pod.command(AGENT.as_str());
    cmd.args([
        "--mode",
        "sidecar",
        "once",
        "--format",
        "json",
        "--duration",
        "2s",
    ])
    .env("KUBECONFIG", &p.kubeconfig)
    .env("POD_NAME", "web-0")
    .env("POD_NAMESPACE", "shop")
    .env("POD_UID", "uid-web-0")
    .env("POD_IP", POD_IP);
    let report = Once::command(cmd).report();
    let i = iface(&report, "eth0");
    eprintln!("node {} eth0 {}", report["node"], i);
    assert_eq!(i["eni_id"], "eni-0pods", "the ENI holding the pod IP");
    assert_eq!(u(&i["device_number"]), 1);
    assert_eq!(report["node"]["instance_id"], "i-0sidecar");
    assert_eq!(report["node"]["mode"], "sidecar");
}
