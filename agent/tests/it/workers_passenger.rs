//! Phusion Passenger (Debian's `passenger`, Standalone with the builtin engine) in a pod network
//! namespace with a kubelet-shaped cgroup (issue 18 point 3). Its app processes do not hold the
//! public listener and its request queue lives inside the core, so the agent reads the core's
//! pool as `passenger-status` does. Ground truth: `passenger-status` itself (its text view, a
//! rendering apart from the pool.xml the agent reads), taken before and after the agent's
//! window, and the requests the test holds (each records the process that started it). Root.

use crate::common::*;
use crate::workers_prefork::{agent_once_as, Caps};
use headroom_testbed::prefork::{PassengerGroup, Server};
use headroom_testbed::Need;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PROCESSES: usize = 3;
/// Pod uid and container id, one pair per test (tests run in parallel).
const POD: (&str, &str) = (
    "5d1c8b2a-9e7f-4a3b-8c2d-1e0f9a8b7c6d",
    "b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6",
);
const PIDNS_POD: (&str, &str) = (
    "6e2d9c3b-0f8a-4b4c-9d3e-2f1a0b9c8d7e",
    "c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7",
);

/// `passenger-status` once it shows `busy` sessions and `queue` waiting (at most 10 s).
fn settled(server: &Server, busy: u64, queue: u64) -> PassengerGroup {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = server.passenger_status().unwrap();
        assert_eq!(g.len(), 1, "one app group: {g:?}");
        let sessions: u64 = g[0].processes.iter().map(|p| p.1).sum();
        if (sessions, g[0].queue) == (busy, queue) {
            return g[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "passenger-status never showed {busy} sessions and {queue} queued: {g:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The processes of `pid`'s pid namespace by their pid in it (the watchdog daemonizes, so
/// they are not all its descendants).
fn by_ns_pid(pid: i32) -> BTreeMap<i32, i32> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let target = ns(&pid.to_string()).expect("a pid namespace");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(host) = name.parse::<i32>() else {
            continue;
        };
        if ns(&name).as_ref() != Some(&target) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
        if let Some(inner) = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last()?.parse().ok())
        {
            out.insert(inner, host);
        }
    }
    out
}

/// Passenger with 3 processes in a pod (`own_pid_ns`: in a pid namespace of its own, as pods
/// have); for each count of slow requests and each capability set, the agent's app group
/// against `passenger-status` at the same moment.
fn passenger_pod(
    name: &str,
    (uid, cid): (&str, &str),
    own_pid_ns: bool,
    counts: &[usize],
    capsets: &[Caps],
) {
    let needs = [
        Need::Root,
        Need::Tool("ip"),
        Need::Tool("passenger"),
        Need::Tool("passenger-status"),
        Need::Tool("setpriv"),
        Need::Tool("unshare"),
    ];
    headroom_testbed::require_or_return!(name, &needs);
    let (ns, netns) = pod_netns(name);
    let cg = headroom_testbed::cgroup::KubeCgroup::new(uid, cid).unwrap();
    let server = Server::passenger(&ns, PROCESSES as u32, own_pid_ns, |pid| cg.add(pid)).unwrap();
    let app = server.dir.path().display().to_string();
    // passenger-status's PIDs are the core's pid namespace's; the agent's, the host's. In its
    // own namespace the guarded `unshare`'s child is that namespace's first process.
    let inside = if own_pid_ns {
        *headroom_testbed::prefork::children(server.master_pid())
            .first()
            .expect("unshare's child")
    } else {
        server.master_pid()
    };
    let host = by_ns_pid(inside);
    let ns_pids: BTreeSet<i32> = settled(&server, 0, 0)
        .processes
        .iter()
        .map(|p| p.0)
        .collect();
    let procs: BTreeSet<i32> = ns_pids.iter().map(|p| host[p]).collect();
    assert_eq!(procs.len(), PROCESSES);
    if own_pid_ns {
        assert!(procs.is_disjoint(&ns_pids), "pids differ: {host:?}");
    }
    for (i, &n) in counts.iter().enumerate() {
        for &caps in capsets {
            let tag = format!("p{i}{}", caps == Caps::All);
            let held = server.hold(&tag, n, PROCESSES).unwrap();
            let busy = server.started(&tag).len();
            let queued = n - busy;
            assert_eq!(busy, n.min(PROCESSES));
            let before = settled(&server, busy as u64, queued as u64);
            let report = agent_once_as(caps);
            let after = server.passenger_status().unwrap();
            assert_eq!(server.started(&tag).len(), busy, "held throughout");
            held.release().unwrap();
            assert_eq!(
                after,
                std::slice::from_ref(&before),
                "passenger-status steady over the window"
            );
            let l = listener_at(&report, &app, netns);
            eprintln!(
                "Passenger {n} slow requests ({}): passenger-status {before:?}; agent {l}",
                caps == Caps::All
            );
            assert!(l["port"].is_null());
            assert_eq!(l["process"], "passenger");
            assert_eq!(u(&l["workers"]), PROCESSES as u64);
            assert_eq!(worker_pid_set(&l), procs, "passenger-status's PIDs");
            assert_eq!(
                (u(&l["threads"]), l["threads_known"].as_bool()),
                (1, Some(true))
            );
            assert_eq!(u(&l["capacity"]), PROCESSES as u64);
            assert_eq!(l["model"], "prefork");
            let sessions: u64 = before.processes.iter().map(|p| p.1).sum();
            assert_eq!(l["busy_mean"].as_f64().unwrap(), sessions as f64);
            assert_eq!(u(&l["busy_max"]), sessions);
            assert_eq!(u(&l["connections_max"]), sessions);
            assert_eq!(u(&l["queue_max"]), before.queue);
            assert_eq!((sessions, before.queue), (busy as u64, queued as u64));
            let saturated = if busy == PROCESSES { 2.0 } else { 0.0 };
            assert_eq!(l["saturated_seconds"].as_f64().unwrap(), saturated);
            assert_eq!(l["pod"]["uid"], uid);
            assert_eq!(l["container"], cid);
            // The core's public listener: an event loop holding the test's connections.
            let front = event_loop_front(&report, netns, n);
            // Passenger's plumbing (the app processes' own sockets, the core's and the
            // preloader's in the instance directory) is no listener of its own.
            let others: Vec<&serde_json::Value> = report["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["netns"] == netns && **x != l && **x != front)
                .collect();
            assert!(
                others.is_empty(),
                "only the group and the core: {others:#?}"
            );
        }
    }
    drop(server);
    drop(cg);
}

#[test]
fn passenger_app_group_busy_and_queue_equal_passenger_status() {
    passenger_pod(
        "pgpod",
        POD,
        false,
        &[0, 2, 3, 5],
        &[Caps::All, Caps::DaemonSet],
    );
}

#[test]
fn passenger_in_a_pid_namespace_of_its_own() {
    passenger_pod("pgpidns", PIDNS_POD, true, &[0, 5], &[Caps::DaemonSet]);
}
