//! The sampler on fixture trees (/proc and cgroup) with a fake sock_diag: exact figures, caching,
//! and processes or namespaces that vanish.

use super::*;
use crate::sys::sock::{Diag, Sock, SockState};
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Mutex;

mod passenger;

const NS: u64 = 4026532001;
const NS_GONE: u64 = 4026532999;
const UID: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
const CID: &str = "3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";

type Table = Arc<Mutex<HashMap<u64, Vec<Sock>>>>;

struct FakeDiag(Table);

impl FakeDiag {
    fn of(&self, netns: u64, state: SockState) -> io::Result<Vec<Sock>> {
        let t = self.0.lock().unwrap();
        let all = t
            .get(&netns)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(all.iter().filter(|s| s.state == state).copied().collect())
    }
}

impl Diag for FakeDiag {
    fn listeners(&mut self, netns: u64, _: &Path) -> io::Result<Vec<Sock>> {
        self.of(netns, SockState::Listen)
    }
    fn connected(&mut self, netns: u64, _: &Path, _: bool, _: bool) -> io::Result<Vec<Sock>> {
        self.of(netns, SockState::Connected)
    }
    fn retain(&mut self, _: &HashSet<u64>) {}
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fx.dir.path().join("proc")).unwrap();
        std::fs::create_dir_all(fx.dir.path().join("cgroup")).unwrap();
        fx
    }
    fn pid_dir(&self, pid: i32) -> PathBuf {
        self.dir.path().join("proc").join(pid.to_string())
    }
    fn process(&self, pid: i32, ppid: i32, comm: &str, netns: u64, socks: &[u64], cg: &str) {
        self.process_started(pid, ppid, 1000 + pid as u64, comm, netns, socks, cg);
    }
    /// A process with its start time (clock ticks after boot), as `stat` has it in field 22.
    #[allow(clippy::too_many_arguments)]
    fn process_started(
        &self,
        pid: i32,
        ppid: i32,
        start: u64,
        comm: &str,
        netns: u64,
        socks: &[u64],
        cg: &str,
    ) {
        let d = self.pid_dir(pid);
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::create_dir_all(d.join("ns")).unwrap();
        symlink(format!("net:[{netns}]"), d.join("ns/net")).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 1 0 {start} 999 1"),
        )
        .unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(d.join("cgroup"), cg).unwrap();
        symlink("/dev/null", d.join("fd/0")).unwrap();
        for (i, s) in socks.iter().enumerate() {
            self.fd(pid, 3 + i as u32, *s);
        }
    }
    fn fd(&self, pid: i32, fd: u32, ino: u64) {
        symlink(
            format!("socket:[{ino}]"),
            self.pid_dir(pid).join(format!("fd/{fd}")),
        )
        .unwrap();
    }
    fn spec(&self) -> WorkersSpec {
        WorkersSpec {
            proc_root: self.dir.path().join("proc"),
            cgroup_root: self.dir.path().join("cgroup"),
            own_netns_only: false,
            interval: Duration::from_millis(200),
            caps: Default::default(),
        }
    }
    fn cpu_stat(&self, rel: &str, periods: u64, throttled: u64, usec: u64) {
        let d = self.dir.path().join("cgroup").join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("cpu.stat"),
            format!("usage_usec 1\nnr_periods {periods}\nnr_throttled {throttled}\nthrottled_usec {usec}\n"),
        )
        .unwrap();
    }
}

fn listen(addr: &str, inode: u64, q: u32, backlog: u32) -> Sock {
    Sock {
        state: SockState::Listen,
        local: addr.parse().unwrap(),
        inode,
        rqueue: q,
        wqueue: backlog,
    }
}

fn conn(addr: &str, inode: u64) -> Sock {
    Sock {
        state: SockState::Connected,
        local: addr.parse().unwrap(),
        inode,
        rqueue: 0,
        wqueue: 0,
    }
}

fn systemd_cgroup() -> (String, String) {
    let rel = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
        UID.replace('-', "_")
    );
    (format!("0::/{rel}\n"), rel)
}

/// A gunicorn-shaped pod: master 100 and workers 101–104 share listener 5000; workers 101 and
/// 102 hold accepted connections 6001 and 6002; one connection waits in the queue (inode 0);
/// process 200 is a client whose socket's *remote* port is 8000 (local port 45000).
fn gunicorn_pod() -> (Fx, Table) {
    let fx = Fx::new();
    let (cg, rel) = systemd_cgroup();
    fx.process(100, 1, "gunicorn", NS, &[5000], &cg);
    fx.process(101, 100, "gunicorn", NS, &[5000, 6001], &cg);
    fx.process(102, 100, "gunicorn", NS, &[5000, 6002], &cg);
    fx.process(103, 100, "gunicorn", NS, &[5000], &cg);
    fx.process(104, 100, "gunicorn", NS, &[5000], &cg);
    fx.process(200, 1, "curl", NS, &[7000], "0::/\n");
    fx.cpu_stat(&rel, 100, 10, 50_000);
    let table: Table = Arc::default();
    table.lock().unwrap().insert(
        NS,
        vec![
            listen("0.0.0.0:8000", 5000, 1, 16),
            listen("127.0.0.1:9999", 5999, 0, 4), // held by nobody known
            conn("10.1.0.5:8000", 6001),
            conn("10.1.0.5:8000", 6002),
            conn("10.1.0.5:8000", 0),
            conn("10.1.0.5:45000", 7000),
        ],
    );
    (fx, table)
}

/// A sidecar's pod behind a cgroup namespace (/proc/PID/cgroup says `/`): with its own uid
/// set, the probes' lookup finds its wildcard listener by that uid.
#[test]
fn a_sidecars_listeners_are_its_pods_whatever_the_cgroup_says() {
    let fx = Fx::new();
    fx.process(100, 1, "gunicorn", NS, &[5000], "0::/\n");
    fx.process(101, 100, "gunicorn", NS, &[5000, 6001], "0::/\n");
    let table: Table = Arc::default();
    let socks = vec![
        listen("0.0.0.0:8000", 5000, 0, 16),
        conn("10.1.0.5:8000", 6001),
    ];
    table.lock().unwrap().insert(NS, socks);
    let ip: std::net::IpAddr = "10.1.0.5".parse().unwrap();
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    s.sample();
    assert!(s.latest().find(UID, ip, 8000).is_none(), "no pod in sight");
    s.set_own_pod(Some(UID.into()));
    s.sample();
    let hit = s.latest().find(UID, ip, 8000).unwrap();
    assert_eq!(
        (hit.workers, hit.busy, hit.pod_uid.as_deref()),
        (1, 1, Some(UID))
    );
}

#[test]
fn workers_busy_queue_backlog_pod_and_throttling_are_exact() {
    let (fx, table) = gunicorn_pod();
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    for _ in 0..5 {
        s.sample();
    }
    // Throttling grows between baseline (first sight) and the cut.
    let (_, rel) = systemd_cgroup();
    fx.cpu_stat(&rel, 150, 14, 80_000);
    let ls = s.cut(1.0);
    assert_eq!(ls.len(), 1, "{ls:?}");
    let l = &ls[0];
    assert_eq!((l.address.as_str(), l.port), ("0.0.0.0", Some(8000)));
    assert_eq!(l.process, "gunicorn");
    assert_eq!(l.workers, 4);
    assert_eq!(l.worker_pids, [101, 102, 103, 104], "master 100 excluded");
    assert_eq!((l.busy_mean, l.busy_max), (2.0, 2));
    assert_eq!((l.queue_max, l.backlog), (1, 16));
    assert_eq!(l.utilization, 0.5);
    assert_eq!((l.samples, l.saturated_seconds), (5, 0.0));
    assert_eq!(l.netns, NS);
    let pod = l.pod.as_ref().unwrap();
    assert_eq!((pod.uid.as_str(), pod.name.as_ref()), (UID, None));
    assert_eq!(l.container.as_deref(), Some(CID));
    assert_eq!(l.cpu_periods, Some(50));
    assert_eq!(l.cpu_throttled_periods, Some(4));
    assert_eq!(l.cpu_throttled_seconds, Some(0.03));

    // Next window: all four busy for 3 samples, queue 3; no throttling.
    fx.fd(103, 9, 6003);
    fx.fd(104, 9, 6004);
    {
        let mut t = table.lock().unwrap();
        let v = t.get_mut(&NS).unwrap();
        v[0].rqueue = 3;
        v.push(conn("10.1.0.5:8000", 6003));
        v.push(conn("10.1.0.5:8000", 6004));
    }
    for _ in 0..3 {
        s.sample();
    }
    // The latest sample, for probe spans: found by the pod's uid (a wildcard listener), not by
    // another pod's uid or a wrong port; by address only for a listener bound to that address.
    let latest = s.latest();
    let pod_ip: std::net::IpAddr = "10.1.0.5".parse().unwrap();
    let hit = latest.find(UID, pod_ip, 8000).unwrap();
    assert_eq!((hit.workers, hit.busy, hit.queue), (4, 4, 3));
    assert_eq!(hit.pod_uid.as_deref(), Some(UID));
    assert!(latest.find("other-uid", pod_ip, 8000).is_none());
    assert!(latest.find(UID, pod_ip, 8001).is_none());
    let lo = latest.find("", "127.0.0.1".parse().unwrap(), 9999);
    assert!(lo.is_none(), "held by nobody known: not sampled");
    let l = &s.cut(0.6)[0];
    assert_eq!(
        (l.workers, l.busy_mean, l.busy_max, l.queue_max),
        (4, 4.0, 4, 3)
    );
    assert_eq!(
        (
            l.utilization,
            l.saturated_seconds,
            l.saturated_seconds_total
        ),
        (1.0, 0.6, 0.6)
    );
    assert_eq!((l.cpu_periods, l.cpu_throttled_periods), (Some(0), Some(0)));
}

/// A listener's running saturated total outlives a window without it but is forgotten once
/// gone for `forget_gone`: the map and the counter series it feeds do not grow with every
/// rollout (a new pod is a new network namespace, so a new key).
#[test]
fn a_gone_listeners_saturated_total_is_forgotten() {
    let (fx, table) = gunicorn_pod();
    fx.fd(103, 9, 6003);
    fx.fd(104, 9, 6004);
    {
        let mut t = table.lock().unwrap();
        let v = t.get_mut(&NS).unwrap();
        v.push(conn("10.1.0.5:8000", 6003));
        v.push(conn("10.1.0.5:8000", 6004));
    }
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    s.sample();
    assert_eq!(s.cut(2.0)[0].saturated_seconds_total, 2.0, "all four busy");
    table.lock().unwrap().remove(&NS);
    s.sample();
    assert!(s.cut(1.0).is_empty());
    assert_eq!(
        s.saturated_total.len(),
        1,
        "kept while gone for less than forget_gone"
    );
    s.forget_gone = Duration::ZERO;
    s.sample();
    assert!(s.cut(1.0).is_empty());
    assert!(
        s.saturated_total.is_empty(),
        "forgotten once gone for forget_gone"
    );
}

#[test]
fn fds_are_rescanned_only_when_something_changed() {
    let (fx, table) = gunicorn_pod();
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    s.sample();
    // First sample: 6 new processes, then one rescan of the namespace for listener 5999 that
    // nobody is known to hold.
    assert_eq!(s.cost.fd_scans, 6 + 6);
    s.sample();
    s.sample();
    assert_eq!(s.cost.fd_scans, 12, "nothing changed: no fd read");
    // A new accepted connection: only the listener's five holders are read again.
    fx.fd(103, 9, 6003);
    table
        .lock()
        .unwrap()
        .get_mut(&NS)
        .unwrap()
        .push(conn("10.1.0.5:8000", 6003));
    s.sample();
    assert_eq!(s.cost.fd_scans, 12 + 5);
    s.sample();
    assert_eq!(s.cost.fd_scans, 17);
    // A connection on the port held by a process that does not hold the listener (sshd's
    // per-connection child): the holders are read twice, then it is known as foreign.
    fx.fd(200, 9, 7001);
    table
        .lock()
        .unwrap()
        .get_mut(&NS)
        .unwrap()
        .push(conn("10.1.0.5:8000", 7001));
    for _ in 0..4 {
        s.sample();
    }
    assert_eq!(s.cost.fd_scans, 17 + 2 * 5);
    // A new process: at the next listing it alone is read (the unowned listener waits for its
    // retry time).
    fx.process(105, 100, "gunicorn", NS, &[5000], "0::/\n");
    s.sample();
    assert_eq!(s.cost.fd_scans, 27, "not listed yet");
    s.list_at_next_sample();
    s.sample();
    assert_eq!(s.cost.fd_scans, 27 + 1);
    let l = &s.cut(1.0)[0];
    assert_eq!((l.workers, l.busy_max), (5, 3));
}

#[test]
fn vanished_processes_unreadable_fds_and_gone_namespaces_are_skipped() {
    let (fx, table) = gunicorn_pod();
    // 300: listed but gone before its files are read (exited mid-scan).
    std::fs::create_dir_all(fx.pid_dir(300)).unwrap();
    // 301: fd directory unreadable (here: not a directory at all).
    fx.process(301, 1, "locked", NS, &[], "0::/\n");
    std::fs::remove_dir_all(fx.pid_dir(301).join("fd")).unwrap();
    std::fs::write(fx.pid_dir(301).join("fd"), "").unwrap();
    // 400: in a namespace that disappears before it is dumped.
    fx.process(400, 1, "nginx", NS_GONE, &[8000], "0::/\n");
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    s.sample();
    let ls = s.cut(1.0);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].workers, 4);
    // The worker exits mid-window: the next sample just has one fewer.
    std::fs::remove_dir_all(fx.pid_dir(104)).unwrap();
    s.sample();
    assert_eq!(s.cut(1.0)[0].worker_pids, [101, 102, 103]);
}

#[test]
fn a_lone_process_is_an_event_loop_counted_by_connections_and_addresses_must_match() {
    let fx = Fx::new();
    fx.process(
        10,
        1,
        "redis",
        NS,
        &[1, 2, 3],
        "0::/system.slice/redis.service\n",
    );
    let table: Table = Arc::default();
    table.lock().unwrap().insert(
        NS,
        vec![
            listen("127.0.0.1:6379", 1, 0, 511),
            listen("[::]:6379", 4, 0, 511), // dual stack, held by nobody
            conn("127.0.0.1:6379", 2),
            conn("[::ffff:127.0.0.1]:6379", 3), // not on the IPv4 listener
        ],
    );
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    s.sample();
    let ls = s.cut(1.0);
    assert_eq!(ls.len(), 1);
    // One process serving alone (redis holding one connection): not a pool of one at 100 %
    // but an event loop whose load is its connections.
    assert_eq!(ls[0].model, Model::EventLoop);
    assert_eq!(
        (
            ls[0].workers,
            ls[0].busy_max,
            ls[0].connections_max,
            ls[0].backlog
        ),
        (1, 0, 1, 511)
    );
    assert_eq!(ls[0].saturated_seconds, 0.0);
    assert!(ls[0].pod.is_none() && ls[0].container.is_none());
    assert!(ls[0].cpu_periods.is_none(), "no cpu.stat in the fixture");
}

#[test]
fn accepted_on_matches_family_port_and_address() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(accepted_on(a("10.0.0.1:80"), a("0.0.0.0:80")));
    assert!(accepted_on(a("10.0.0.1:80"), a("10.0.0.1:80")));
    assert!(!accepted_on(a("10.0.0.2:80"), a("10.0.0.1:80")));
    assert!(!accepted_on(a("10.0.0.1:81"), a("0.0.0.0:80")));
    assert!(accepted_on(a("[::ffff:10.0.0.1]:80"), a("[::]:80")));
    assert!(!accepted_on(a("[::ffff:10.0.0.1]:80"), a("0.0.0.0:80")));
}

#[test]
fn table_lists_listeners() {
    let (fx, table) = gunicorn_pod();
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    s.sample();
    let t = crate::export::table::listeners::table(&s.cut(1.0));
    let line = t.lines().nth(1).unwrap();
    assert!(
        line.contains("0.0.0.0:8000") && line.contains("gunicorn"),
        "{t}"
    );
    assert!(crate::export::table::listeners::table(&[]).contains("no listeners"));
}

impl Fx {
    /// `pid` exits and a new process takes its pid. Made aside first, so its directory has a
    /// new inode even on a file system that hands a freed inode number out again at once (as
    /// procfs never does: it numbers inodes from a counter).
    fn reuse(&self, pid: i32, start: u64, comm: &str, netns: u64, socks: &[u64]) {
        let aside = pid + 1_000_000;
        self.process_started(aside, 1, start, comm, netns, socks, "0::/\n");
        std::fs::remove_dir_all(self.pid_dir(pid)).unwrap();
        std::fs::rename(self.pid_dir(aside), self.pid_dir(pid)).unwrap();
    }

    /// The namespace's TCP counters as `/proc/PID/net/snmp` shows them.
    fn snmp(&self, pid: i32, passive: u64) {
        let d = self.pid_dir(pid).join("net");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("snmp"),
            format!("Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab\nTcp: 1 7 {passive} 2\n"),
        )
        .unwrap();
    }
}

#[test]
fn connected_sockets_are_dumped_only_when_something_can_have_changed() {
    let fx = Fx::new();
    // A one-process unicorn (one request per process, stated): a pool of one.
    fx.process(10, 1, "unicorn", NS, &[1], "0::/\n");
    fx.snmp(10, 100);
    let table: Table = Arc::default();
    table
        .lock()
        .unwrap()
        .insert(NS, vec![listen("127.0.0.1:6379", 1, 0, 511)]);
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    let busy = |s: &mut Sampler<FakeDiag>| s.latest().find("", "127.0.0.1".parse().unwrap(), 6379);
    s.sample();
    assert_eq!(s.cost.connected_dumps, 1, "first sight: dumped");
    s.sample();
    s.sample();
    assert_eq!(
        s.cost.connected_dumps, 1,
        "idle: no passive open, nothing held"
    );
    assert_eq!(s.cost.netns_dumps, 3, "listeners still sampled every time");
    // A connection completes (the counter moves) and the process holds it: dumped while held.
    fx.fd(10, 9, 2);
    fx.snmp(10, 101);
    table
        .lock()
        .unwrap()
        .get_mut(&NS)
        .unwrap()
        .push(conn("127.0.0.1:6379", 2));
    s.sample();
    assert_eq!((s.cost.connected_dumps, busy(&mut s).unwrap().busy), (2, 1));
    s.sample();
    assert_eq!(s.cost.connected_dumps, 3, "held: its end must be seen");
    // It closes: one dump sees it gone, then idle again.
    table.lock().unwrap().get_mut(&NS).unwrap().pop();
    s.sample();
    assert_eq!((s.cost.connected_dumps, busy(&mut s).unwrap().busy), (4, 0));
    s.sample();
    assert_eq!(s.cost.connected_dumps, 4);
    // A connection waiting in the accept queue (completed before the counter was read last):
    // a worker may take it at any moment.
    table.lock().unwrap().get_mut(&NS).unwrap()[0].rqueue = 1;
    s.sample();
    assert_eq!(s.cost.connected_dumps, 5);
    let l = &s.cut(1.0)[0];
    assert_eq!((l.busy_max, l.queue_max, l.samples), (1, 1, 8));
}

#[test]
fn exited_holders_and_reused_pids_are_not_confused() {
    let (fx, table) = gunicorn_pod();
    const NS2: u64 = 4026532002;
    fx.process(300, 1, "sleep", NS, &[], "0::/\n");
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    s.sample();
    assert_eq!(s.cut(1.0)[0].worker_pids, [101, 102, 103, 104]);
    // Between listings worker 104 exits and its pid goes to an unrelated process: the holder
    // check sees a new /proc inode and another start time, and it is no worker any more.
    fx.reuse(104, 99_000, "sh", NS, &[]);
    s.sample();
    assert_eq!(s.cut(1.0)[0].worker_pids, [101, 102, 103]);
    // pid 300 exits and is reused by a server in another namespace: at the next listing it is
    // a new process (its old entry would file it under the wrong namespace, never dumped).
    fx.reuse(300, 99_001, "nginx", NS2, &[8100]);
    table
        .lock()
        .unwrap()
        .insert(NS2, vec![listen("0.0.0.0:80", 8100, 0, 511)]);
    s.list_at_next_sample();
    s.sample();
    let ls = s.cut(1.0);
    let l = ls
        .iter()
        .find(|l| l.netns == NS2)
        .expect("the new process's listener");
    assert_eq!(
        (l.port, l.process.as_str(), l.worker_pids.as_slice()),
        (Some(80), "nginx", &[300][..])
    );
    // The same process under a new /proc inode (procfs may drop and recreate it) is kept as
    // it was: same start time, no fd read.
    let scans = s.cost.fd_scans;
    let d = fx.pid_dir(101);
    let moved = fx.dir.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(&d, moved.join("101")).unwrap();
    // Copy the tree into a fresh directory (a new inode) under the same pid.
    std::process::Command::new("cp")
        .args(["-a"])
        .arg(moved.join("101"))
        .arg(&d)
        .status()
        .unwrap();
    s.list_at_next_sample();
    s.sample();
    assert_eq!(s.cost.fd_scans, scans, "same process: not read again");
    let l = s.cut(1.0).into_iter().find(|l| l.netns == NS).unwrap();
    assert_eq!(l.worker_pids, [101, 102, 103]);
}

#[test]
fn accepts_per_namespace_with_scope_and_kept_alive_connections() {
    const NS2: u64 = 4026532002;
    const NS3: u64 = 4026532003;
    let fx = Fx::new();
    // nginx alone (master 20, worker 21) on :80; one redis on :6379; a pod with nginx (50) on
    // :81 in front of gunicorn (master 60, worker 61) on :8000.
    fx.process(20, 1, "nginx", NS, &[5], "0::/\n");
    fx.process(21, 20, "nginx", NS, &[5], "0::/\n");
    fx.process(40, 1, "redis", NS2, &[7], "0::/\n");
    fx.process(50, 1, "nginx", NS3, &[8], "0::/\n");
    fx.process(60, 1, "gunicorn", NS3, &[9], "0::/\n");
    fx.process(61, 60, "gunicorn", NS3, &[9], "0::/\n");
    let table: Table = Arc::default();
    for (ns, socks) in [
        (NS, vec![listen("127.0.0.1:80", 5, 0, 511)]),
        (NS2, vec![listen("127.0.0.1:6379", 7, 0, 511)]),
        (
            NS3,
            vec![
                listen("127.0.0.1:81", 8, 0, 511),
                listen("127.0.0.1:8000", 9, 0, 511),
            ],
        ),
    ] {
        table.lock().unwrap().insert(ns, socks);
    }
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table.clone()));
    let (mut a, mut b) = (1000u64, 50u64);
    let counters = |a: u64, b: u64| {
        fx.snmp(20, a);
        fx.snmp(40, b);
        fx.snmp(50, b);
    };
    counters(a, b);
    let before_first = Instant::now();
    s.sample();
    let after_first = Instant::now();
    // nginx's worker takes a connection and keeps it open over a second.
    fx.fd(21, 9, 50);
    table
        .lock()
        .unwrap()
        .get_mut(&NS)
        .unwrap()
        .push(conn("127.0.0.1:80", 50));
    let mut before_last = Instant::now();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(210));
        (a, b) = (a + 30, b + 3);
        counters(a, b);
        s.list_at_next_sample();
        before_last = Instant::now();
        s.sample();
    }
    let after_last = Instant::now();
    let ls = s.cut(1.5);
    let find = |port: u16| ls.iter().find(|l| l.port == Some(port)).unwrap();
    // The first reading fell in [before_first, after_first], the last in [before_last,
    // after_last]: the span between them is at least `short` and at most `long`.
    let (short, long) = (
        (before_last - after_first).as_secs_f64(),
        (after_last - before_first).as_secs_f64(),
    );
    for (port, count, scope, requests) in [
        (80, 180.0, AcceptsScope::Listener, false),
        (6379, 18.0, AcceptsScope::Listener, true),
        (81, 18.0, AcceptsScope::Namespace, false),
        (8000, 18.0, AcceptsScope::Namespace, false),
    ] {
        let l = find(port);
        let mean = l.accepts_per_second.unwrap();
        assert!(
            count / long - 0.01 <= mean && mean <= count / short + 0.01,
            ":{port} {mean} not in [{}, {}]",
            count / long,
            count / short
        );
        // Each second holds 4 or 5 steps of the counter.
        let max = l.accepts_per_second_max.unwrap();
        assert!(
            max >= mean - 0.001 && max <= count / 6.0 * 5.0,
            ":{port} max {max}"
        );
        assert_eq!(
            (l.accepts_scope, l.requests_are_connections),
            (scope, requests),
            ":{port}"
        );
    }
    assert_eq!(find(80).model, Model::EventLoop);
    assert_eq!(find(80).connections_kept_max, 1, "held over a second");
    assert_eq!(find(81).connections_kept_max, 0);
    // The connection closes: the next window's connections are requests again; one reading
    // with the counter unchanged since the last: 0 per second. The front before a pool on TCP
    // stays not-requests.
    table.lock().unwrap().get_mut(&NS).unwrap().pop();
    s.sample();
    let ls = s.cut(0.2);
    let l = ls.iter().find(|l| l.port == Some(80)).unwrap();
    assert!(l.requests_are_connections, "{l:?}");
    assert_eq!(l.accepts_per_second, Some(0.0), "counter unchanged: {l:?}");
    let l = ls.iter().find(|l| l.port == Some(8000)).unwrap();
    assert!(!l.requests_are_connections, "{l:?}");
}

/// Two listeners of one pod (gunicorn bound on two ports) share the pod's cgroup: both carry
/// the window's throttling. (The second used to read the baseline the first had just moved
/// and report 0 periods, depending on the map's order: a flaky real-cgroup test found it.)
#[test]
fn listeners_sharing_a_cgroup_both_carry_its_throttling() {
    let fx = Fx::new();
    let (cg, rel) = systemd_cgroup();
    fx.process(100, 1, "gunicorn", NS, &[5000, 5100], &cg);
    fx.process(101, 100, "gunicorn", NS, &[5000, 5100], &cg);
    fx.process(102, 100, "gunicorn", NS, &[5000, 5100], &cg);
    fx.cpu_stat(&rel, 100, 10, 50_000);
    let table: Table = Arc::default();
    table.lock().unwrap().insert(
        NS,
        vec![
            listen("0.0.0.0:8000", 5000, 0, 16),
            listen("0.0.0.0:8001", 5100, 0, 16),
        ],
    );
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    for _ in 0..3 {
        s.sample();
    }
    fx.cpu_stat(&rel, 150, 14, 80_000);
    let ls = s.cut(1.0);
    assert_eq!(ls.len(), 2, "{ls:?}");
    for l in &ls {
        assert_eq!(
            (l.port, l.cpu_periods, l.cpu_throttled_periods),
            (l.port, Some(50), Some(4)),
            "{l:?}"
        );
    }
}
