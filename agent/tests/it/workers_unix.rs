//! Listeners on unix domain sockets: nginx → unicorn over a socket in a shared directory, in a
//! pod network namespace with a kubelet-shaped cgroup. Ground truth: the requests the test
//! holds (each records the worker that started it) and raindrops' own
//! `Raindrops::Linux.unix_listener_stats`, run inside the namespace. Needs root.

use crate::common::*;
use crate::workers_prefork::{agent_once_as, Caps};
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{raindrops, Server};
use headroom_testbed::Need;
use std::collections::BTreeSet;

const WORKERS: usize = 4;
const BACKLOG: u32 = 8;
const UID: &str = "7c2e9a4b-1d3f-4b5a-8c6d-9e0f1a2b3c4d";
const CID: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";

#[test]
fn unicorn_over_a_unix_socket_behind_nginx_is_exact_and_equals_raindrops() {
    let needs = [
        Need::Root,
        Need::Tool("ip"),
        Need::Tool("unicorn"),
        Need::Tool("ruby"),
        Need::Tool("nginx"),
        Need::Tool("setpriv"),
    ];
    headroom_testbed::require_or_return!("unicorn_over_a_unix_socket_behind_nginx", &needs);
    let (ns, netns) = pod_netns("unixpod");
    let cg = headroom_testbed::cgroup::KubeCgroup::new(UID, CID).unwrap();
    let server =
        Server::unicorn_behind_nginx(&ns, WORKERS as u32, BACKLOG, |pid| cg.add(pid)).unwrap();
    let path = server.socket.clone().unwrap().display().to_string();
    let workers: BTreeSet<i32> = server.worker_pids();
    assert_eq!(workers.len(), WORKERS);
    for (i, n) in [0usize, 2, 4, 6].into_iter().enumerate() {
        for caps in [Caps::All, Caps::DaemonSet] {
            let tag = format!("u{i}{}", caps == Caps::All);
            let held = server.hold(&tag, n, WORKERS).unwrap();
            let busy: BTreeSet<i32> = server.started(&tag).into_iter().collect();
            let queued = n - busy.len();
            let report = agent_once_as(caps);
            let truth = raindrops(Some(&ns.name), &path);
            assert_eq!(server.started(&tag).len(), busy.len(), "held throughout");
            held.release().unwrap();
            assert_eq!(truth, (busy.len() as u64, queued as u64), "raindrops");
            let l = listener_at(&report, &path, netns);
            eprintln!("{n} slow requests ({}): busy {busy:?}, queued {queued}; raindrops {truth:?}; agent {l}", caps == Caps::All);
            assert!(l["port"].is_null());
            assert_eq!(u(&l["workers"]), WORKERS as u64);
            assert_eq!(
                worker_pid_set(&l),
                workers,
                "the master's children, not nginx"
            );
            assert_eq!(
                (u(&l["threads"]), l["threads_known"].as_bool()),
                (1, Some(true))
            );
            assert_eq!(u(&l["capacity"]), WORKERS as u64);
            assert_eq!(l["model"], "prefork");
            assert_eq!(l["busy_mean"].as_f64().unwrap(), busy.len() as f64);
            assert_eq!(u(&l["busy_max"]), busy.len() as u64);
            assert_eq!(u(&l["queue_max"]), queued as u64);
            // sock_diag gives the backlog; /proc/<pid>/net/unix has no reader for it (0: unknown).
            let backlog = if caps == Caps::All { BACKLOG as u64 } else { 0 };
            assert_eq!(u(&l["backlog"]), backlog);
            assert_eq!(l["pod"]["uid"], UID);
            assert_eq!(l["container"], CID);
            // nginx's own TCP listener, apart: an event loop holding the test's connections.
            let front = event_loop_front(&report, netns, n);
            assert!(front["process"].as_str().unwrap().starts_with("nginx"));
        }
    }
    drop(server);
    drop(cg);
}

/// The pool's workers: the master's children running pool `app` (the status pool's child apart).
fn fpm_pool(server: &Server) -> BTreeSet<i32> {
    server
        .worker_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("pool app"))
                .unwrap_or(false)
        })
        .collect()
}

/// php-fpm, a static pool of 4 on a unix socket behind nginx (issue 18 point 4): the master
/// holds the listener and never accepts, so it is no worker; busy equals php-fpm's own status
/// page (`active processes`), the queue raindrops' (php-fpm's `listen queue` reads TCP_INFO and
/// says 0 for a unix socket).
#[test]
fn php_fpm_pool_over_a_unix_socket_equals_its_status_page() {
    let needs = [
        Need::Root,
        Need::Tool("ip"),
        Need::Tool("php-fpm8.2"),
        Need::Tool("ruby"),
        Need::Tool("nginx"),
        Need::Tool("setpriv"),
    ];
    headroom_testbed::require_or_return!("php_fpm_pool_over_a_unix_socket", &needs);
    let (ns, netns) = pod_netns("fpmpod");
    let server = Server::php_fpm_behind_nginx(&ns, WORKERS as u32, BACKLOG, |_| Ok(())).unwrap();
    let path = server.socket.clone().unwrap().display().to_string();
    let pool = fpm_pool(&server);
    assert_eq!(pool.len(), WORKERS, "{:?}", server.worker_pids());
    for (i, n) in [0usize, 3, 6].into_iter().enumerate() {
        for caps in [Caps::All, Caps::DaemonSet] {
            let tag = format!("f{i}{}", caps == Caps::All);
            let held = server.hold(&tag, n, WORKERS).unwrap();
            let busy = server.started(&tag).len();
            let queued = n - busy;
            let report = agent_once_as(caps);
            let status = server.fpm_status().unwrap();
            let truth = raindrops(Some(&ns.name), &path);
            assert_eq!(server.started(&tag).len(), busy, "held throughout");
            held.release().unwrap();
            // php-fpm's `listen queue` is read with TCP_INFO, so it is 0 for a unix socket on
            // Linux: the queue's ground truth here is raindrops (the kernel's table).
            assert_eq!(status.0, busy as u64, "php-fpm's active processes");
            assert_eq!(truth, (busy as u64, queued as u64), "raindrops");
            let l = listener_at(&report, &path, netns);
            eprintln!(
                "php-fpm {n} slow requests: status page {status:?}, raindrops {truth:?}; agent {l}"
            );
            assert_eq!(
                worker_pid_set(&l),
                pool,
                "the pool's children, not the master"
            );
            assert_eq!(u(&l["workers"]), WORKERS as u64);
            assert_eq!(
                (u(&l["capacity"]), l["model"].as_str()),
                (WORKERS as u64, Some("prefork"))
            );
            assert_eq!(l["threads_known"], true);
            assert_eq!(l["busy_mean"].as_f64().unwrap(), busy as f64);
            assert_eq!(u(&l["busy_max"]), busy as u64);
            assert_eq!(u(&l["queue_max"]), queued as u64);
            let backlog = if caps == Caps::All { BACKLOG as u64 } else { 0 };
            assert_eq!(u(&l["backlog"]), backlog);
            assert!(l["process"].as_str().unwrap().starts_with("php-fpm"));
        }
    }
    drop(server);
}

/// Puma in cluster mode, 2 workers × 4 threads on a unix socket behind nginx (issue 18 point 2):
/// threads from the pool threads' names, capacity 8, busy = requests in flight (at most 8),
/// equal to `pumactl stats` (busy per worker = max_threads − pool_capacity; workers report every
/// 5 s, so the test waits for a fresh status).
#[test]
fn puma_threads_and_capacity_equal_pumactl_stats() {
    let needs = [
        Need::Root,
        Need::Tool("ip"),
        Need::Tool("puma"),
        Need::Tool("pumactl"),
        Need::Tool("nginx"),
        Need::Tool("setpriv"),
    ];
    headroom_testbed::require_or_return!("puma_threads_and_capacity_equal_pumactl_stats", &needs);
    let (ns, netns) = pod_netns("pumapod");
    let server = Server::puma_behind_nginx(&ns, 2, 4).unwrap();
    let path = server.socket.clone().unwrap().display().to_string();
    for (i, n) in [0usize, 5, 8].into_iter().enumerate() {
        let tag = format!("p{i}");
        let held = server.hold(&tag, n, 8).unwrap();
        let busy = server.started(&tag).len();
        assert_eq!(busy, n);
        let report = agent_once_as(Caps::DaemonSet);
        let t = std::time::Instant::now();
        let stats = loop {
            let s = server.puma_stats().unwrap();
            let b: u64 = s.iter().map(|(max, cap, _)| max - cap).sum();
            if b == busy as u64 || t.elapsed() > std::time::Duration::from_secs(12) {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        assert_eq!(server.started(&tag).len(), busy, "held throughout");
        held.release().unwrap();
        let puma_busy: u64 = stats.iter().map(|(max, cap, _)| max - cap).sum();
        let puma_capacity: u64 = stats.iter().map(|(max, _, _)| max).sum();
        let l = listener_at(&report, &path, netns);
        eprintln!("puma {n} slow requests: pumactl {stats:?}; agent {l}");
        assert_eq!(puma_busy, busy as u64, "pumactl stats");
        assert_eq!(u(&l["workers"]), 2);
        assert_eq!(
            (u(&l["threads"]), l["threads_known"].as_bool()),
            (4, Some(true))
        );
        assert_eq!(u(&l["capacity"]), puma_capacity);
        assert_eq!(l["model"], "threaded");
        assert_eq!(l["busy_mean"].as_f64().unwrap(), puma_busy as f64);
        assert_eq!(u(&l["busy_max"]), puma_busy);
        assert_eq!(u(&l["queue_max"]), 0);
    }
    drop(server);
}

/// One process in a pod namespace binds a unix listener whose path holds a newline, a byte
/// that is no UTF-8 and a space (`odd\n\xff sock`), accepts one connection on it, leaves one
/// more waiting, and listens on 5 000 more unix sockets (issue 18, bad input). With either
/// capability set the agent exits 0, names the odd listener exactly (escaped), measures it
/// (1 connection held, 1 queued: the test made them), keeps 64 listeners of the namespace (the per-pod
/// cap, busiest first) and counts the other 4 937 as left out.
#[test]
fn an_odd_socket_path_and_5000_unix_listeners() {
    headroom_testbed::require_or_return!(
        "an_odd_socket_path_and_5000_unix_listeners",
        &[
            Need::Root,
            Need::Tool("ip"),
            Need::Tool("python3"),
            Need::Tool("setpriv")
        ]
    );
    let ns = Netns::new("oddpod").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import os, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (12000, 12000))
d = sys.argv[1].encode()
odd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
odd.bind(d + b"/odd\n\xff sock")
odd.listen(8)
held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
held.connect(d + b"/odd\n\xff sock")
conn, _ = odd.accept()
waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
waiting.connect(d + b"/odd\n\xff sock")
many = []
for i in range(5000):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(d + b"/s%d" % i)
    s.listen(1)
    many.append(s)
open(os.path.join(sys.argv[1], "ready"), "w").close()
time.sleep(120)
"#;
    let mut cmd = ns.command("python3");
    cmd.args(["-c", script])
        .arg(dir.path())
        .stdout(std::process::Stdio::null());
    let _py =
        headroom_testbed::proc::Guard::spawn("python3 5000 unix listeners", &mut cmd).unwrap();
    headroom_testbed::wait_for(
        "the sockets bound",
        std::time::Duration::from_secs(30),
        || dir.path().join("ready").exists().then_some(()),
    );
    let want = format!("{}/odd\\n\\xff sock", dir.path().display());
    for caps in [Caps::All, Caps::DaemonSet] {
        let report = agent_once_as(caps);
        let mine: Vec<&serde_json::Value> = report["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                l["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&dir.path().display().to_string()))
            })
            .collect();
        let odd = mine
            .iter()
            .find(|l| l["address"] == want.as_str())
            .unwrap_or_else(|| panic!("no {want:?} among {} listeners", mine.len()));
        eprintln!("odd listener ({}): {odd}", caps == Caps::All);
        assert!(odd["port"].is_null());
        // One process serving alone: an event loop, its load the connection it holds.
        assert_eq!(
            (
                u(&odd["workers"]),
                u(&odd["busy_max"]),
                u(&odd["connections_max"]),
                &odd["model"]
            ),
            (1, 0, 1, &serde_json::json!("event_loop")),
            "{odd}"
        );
        assert_eq!(u(&odd["queue_max"]), 1, "{odd}");
        assert_eq!(mine.len(), 64, "the per-pod cap");
        let omitted = &report["listeners_omitted"];
        assert_eq!(u(&omitted["pod_cap"]), 5001 - 64, "{omitted}");
    }
}
