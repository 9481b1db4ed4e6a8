//! Request rate per pod (issue 26): accepted connections per second from each pod network
//! namespace's `PassiveOpens`, against a paced load loop whose every connection the test
//! timed (ground truth), and `requests_are_connections` with a keep-alive front.
//! Needs root; skips with a reason outside CI, fails in CI.

use crate::common::*;
use headroom_testbed::cgroup::KubeCgroup;
use headroom_testbed::load::{Conn, Load, Sent};
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{children, Server};
use headroom_testbed::proc::Guard;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// `once` for `seconds` from the host namespace (the sampler reads every namespace).
fn once(seconds: u32) -> Value {
    let mut cmd = Command::new(AGENT.as_str());
    cmd.args([
        "once",
        "--format",
        "json",
        "--interface",
        "lo",
        "--duration",
    ])
    .arg(format!("{seconds}s"))
    .args(NO_IMDS)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let out = Guard::spawn("headroom-agent", &mut cmd)
        .unwrap()
        .wait(Duration::from_secs(30 + u64::from(seconds)))
        .unwrap();
    assert!(out.status.success(), "agent failed: {:?}", out.status);
    serde_json::from_slice(&out.stdout).expect("agent prints JSON")
}

/// The report's window as wall-clock times.
fn window(report: &Value) -> (SystemTime, SystemTime) {
    let start = humantime::parse_rfc3339(report["window"]["start"].as_str().unwrap()).unwrap();
    let secs = report["window"]["seconds"].as_f64().unwrap();
    (start, start + Duration::from_secs_f64(secs))
}

/// The most connections the load made in any one second of `[from, to)`.
fn busiest_second(sent: &Sent, from: SystemTime, to: SystemTime) -> usize {
    let mut t: Vec<SystemTime> = sent
        .connects
        .iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect();
    t.sort();
    (0..t.len())
        .map(|i| t[i..].partition_point(|x| *x < t[i] + Duration::from_secs(1)))
        .max()
        .unwrap_or(0)
}

fn pod_listener<'a>(report: &'a Value, uid: &str, what: &dyn Fn(&Value) -> bool) -> &'a Value {
    report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["pod"]["uid"] == uid && what(l))
        .unwrap_or_else(|| panic!("no listener of pod {uid}: {report:#}"))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b
}

/// Moves a server's master and its workers into the pod's cgroup.
fn into_pod(server: &Server, cg: &KubeCgroup) {
    let master = server.master_pid();
    for pid in std::iter::once(master).chain(children(master)) {
        cg.add(pid as u32).unwrap();
    }
}

const UIDS: [&str; 3] = [
    "1a2b3c4d-0001-4e5f-8a9b-0c1d2e3f4a01",
    "1a2b3c4d-0002-4e5f-8a9b-0c1d2e3f4a02",
    "1a2b3c4d-0003-4e5f-8a9b-0c1d2e3f4a03",
];

/// Three gunicorn pods (4 sync workers, kubelet-shaped cgroups), 60 requests/s in total (20
/// each, a new connection per request, each holding a worker 20 ms): each pod's
/// `accepts_per_second` within 5 % of the connections the load made in the agent's window,
/// its busiest second within 15 % of the load's (the agent's seconds are spans between 5 Hz
/// samples), the listener's own (one TCP port) and connections are requests.
#[test]
fn accepted_connections_per_pod_match_the_load() {
    let needs = headroom_testbed::root_and(&["ip", "gunicorn"]);
    headroom_testbed::require_or_return!("accepted_connections_per_pod_match_the_load", &needs);
    const SECONDS: u32 = 10;
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod").unwrap()).collect();
    let cgs: Vec<KubeCgroup> = (0..3)
        .map(|i| KubeCgroup::new(UIDS[i], &format!("{i}").repeat(64)).unwrap())
        .collect();
    let servers: Vec<Server> = pods
        .iter()
        .map(|ns| Server::gunicorn(Some(ns), 4, 64).unwrap())
        .collect();
    for (s, cg) in servers.iter().zip(&cgs) {
        into_pod(s, cg);
    }
    let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    let per_pod = (SECONDS as usize + 8) * 20;
    let loads: Vec<Load> = pods
        .iter()
        .map(|ns| {
            Load::start(
                Some(&ns.name),
                addr,
                "/work?ms=20",
                20.0,
                Conn::PerRequest,
                per_pod,
                Duration::from_secs(u64::from(SECONDS) + 8),
            )
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let report = once(SECONDS);
    let sent: Vec<Sent> = loads.into_iter().map(|l| l.stop().unwrap()).collect();
    let (from, to) = window(&report);
    let secs = report["window"]["seconds"].as_f64().unwrap();
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(s.failed, 0, "pod {i}: every request answered");
        let truth = s.connects_between(from, to) as f64 / secs;
        let truth_max = busiest_second(s, from, to) as f64;
        let l = pod_listener(&report, UIDS[i], &|l| l["port"] == 8000);
        eprintln!("pod {i}: load {truth:.2}/s (busiest second {truth_max}); agent {l}");
        let mean = l["accepts_per_second"].as_f64().unwrap();
        let max = l["accepts_per_second_max"].as_f64().unwrap();
        assert!(rel(mean, truth) <= 0.05, "pod {i}: {mean} vs {truth}");
        assert!(rel(max, truth_max) <= 0.15, "pod {i}: {max} vs {truth_max}");
        assert_eq!(l["accepts_scope"], "listener");
        assert_eq!(l["requests_are_connections"], true);
        assert_eq!(l["connections_kept_max"], 0);
        assert_eq!(l["model"], "prefork");
    }
    drop(servers);
    drop(cgs);
}

/// gunicorn on a unix socket behind nginx in one pod: with a new connection per request,
/// connections are requests (nginx's port is the namespace's only TCP port, and the rate is
/// the load's); with the same requests on one kept-alive connection, nginx holds it between
/// requests: `requests_are_connections` false on every listener of the pod, the kept
/// connection counted, and hardly any connection accepted.
#[test]
fn a_keep_alive_front_makes_connections_not_requests() {
    let needs = headroom_testbed::root_and(&["ip", "gunicorn", "nginx"]);
    headroom_testbed::require_or_return!(
        "a_keep_alive_front_makes_connections_not_requests",
        &needs
    );
    const SECONDS: u32 = 4;
    let uid = UIDS[0];
    let ns = Netns::new("pod").unwrap();
    let cg = KubeCgroup::new(uid, &"e".repeat(64)).unwrap();
    let server = Server::gunicorn_behind_nginx(&ns, 4, 64).unwrap();
    into_pod(&server, &cg);
    for pid in server.front.as_ref().map(|f| f.pid() as i32).into_iter() {
        cg.add(pid as u32).unwrap();
        for c in children(pid) {
            cg.add(c as u32).unwrap();
        }
    }
    let sock = server.socket.clone().unwrap().display().to_string();
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let run = |conn: Conn| -> (Value, Sent) {
        let load = Load::start(
            Some(&ns.name),
            addr,
            "/work?ms=20",
            20.0,
            conn,
            (SECONDS as usize + 6) * 20,
            Duration::from_secs(u64::from(SECONDS) + 6),
        )
        .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let report = once(SECONDS);
        let sent = load.stop().unwrap();
        assert_eq!(sent.failed, 0, "{conn:?}: every request answered");
        (report, sent)
    };

    let (report, sent) = run(Conn::PerRequest);
    let (from, to) = window(&report);
    let secs = report["window"]["seconds"].as_f64().unwrap();
    let truth = sent.connects_between(from, to) as f64 / secs;
    let front = pod_listener(&report, uid, &|l| l["port"] == 8080);
    let app = pod_listener(&report, uid, &|l| l["address"] == sock.as_str());
    eprintln!("per request: load {truth:.2}/s; nginx {front}; gunicorn {app}");
    assert_eq!(front["model"], "event_loop");
    assert_eq!(
        (&front["accepts_scope"], &app["accepts_scope"]),
        (&"listener".into(), &"namespace".into())
    );
    for l in [front, app] {
        let mean = l["accepts_per_second"].as_f64().unwrap();
        assert!(rel(mean, truth) <= 0.05, "{mean} vs {truth}: {l}");
        assert_eq!(l["requests_are_connections"], true, "{l}");
    }

    let (report, sent) = run(Conn::KeepAlive);
    let (from, to) = window(&report);
    let answered = sent.answered_between(from, to) as f64 / secs;
    let front = pod_listener(&report, uid, &|l| l["port"] == 8080);
    let app = pod_listener(&report, uid, &|l| l["address"] == sock.as_str());
    eprintln!(
        "kept alive: {answered:.2} requests/s on 1 connection; nginx {front}; gunicorn {app}"
    );
    assert_eq!(sent.connects.len(), 1, "one connection for every request");
    // Only that the load ran (the figures below are held to `answered` itself); a loaded
    // 2-core fresh machine got 14.25/s of the paced 20.
    assert!(answered >= 10.0, "the requests went through: {answered}/s");
    assert_eq!(front["connections_kept_max"], 1, "{front}");
    for l in [front, app] {
        assert_eq!(l["requests_are_connections"], false, "{l}");
        // The one connection was made before the window: none in it.
        assert_eq!(l["accepts_per_second"].as_f64(), Some(0.0), "{l}");
    }
    drop(server);
    drop(cg);
}
