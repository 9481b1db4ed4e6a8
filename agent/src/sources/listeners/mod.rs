//! App servers measured from outside: per listening TCP or unix stream socket, in every network
//! namespace, how many worker processes there are, how many are busy, how deep the accept queue
//! is, and how much the container's CPU was throttled (docs/reference.md, "Facts the product is built on": workers and queues).
//!
//! Each sample (5 Hz by default):
//! 1. once a second ([`LIST_INTERVAL`]), list processes: births and exits, and pids reused by a
//!    new process (its /proc directory's inode and its start time changed); read the fds of
//!    *new* processes only (socket inodes, netns, parent). Between listings only the listeners'
//!    holders are checked (one poll of their pidfds, or an lstat each where the proc root is
//!    not this process's pid namespace), so a worker that exits is not counted;
//! 2. per network namespace with a listener (every namespace at a listing), dump TCP LISTEN
//!    sockets through sock_diag, and connected sockets unless nothing can have changed: the
//!    last dump found no connection of any listener's workers, no connection waits in an
//!    accept queue, and the namespace's `PassiveOpens` counter has not moved (an idle node
//!    then never walks the kernel's established hash, the main cost of a sample);
//! 3. a listener's *holders* are the processes whose fds hold its inode. A holder is a
//!    *master* and not a worker when another holder is its child and it has never been seen
//!    holding an accepted connection (gunicorn's arbiter, unicorn's master, php-fpm's master,
//!    Apache's parent). A lone process holding a listener is its own worker. A listener nobody
//!    is known to hold sends the namespace's holders and young processes to a rescan of their
//!    fds first, the rest of its processes only if that did not find it;
//! 4. a worker is *busy* while it holds a connected socket (ESTABLISHED or CLOSE_WAIT) whose
//!    local address is the listener's. Connected inodes not yet known send the listener's
//!    holders (only them) to a rescan of their fds (a connection still unowned after two is
//!    held by a non-worker, like sshd's per-connection child, and is not looked for again); a
//!    listener inode nobody is known to hold sends its namespace's processes to a rescan, at
//!    most every 5 minutes. A unix listener's connections are the accepted sockets carrying
//!    its name (see `sys::unixsock`); threads per worker and the model are in [`model`].
//! 5. Phusion Passenger's app groups are read from its core ([`passenger`]), not the kernel.

pub mod accepts;
pub mod caps;
pub mod cgroup;
mod cut;
mod latest;
pub mod model;
pub mod passenger;
mod procs;
pub mod report;
mod source;
pub use source::Workers;
#[cfg(test)]
mod tests;

use crate::sys::procfs::ProcRoot;
use crate::sys::sock::{Diag, Sock, SockState, UnixSock};
use crate::sys::sockdiag::Sockets;
pub use caps::{ListenerConfig, Omitted};
use cgroup::CpuStat;
pub use latest::{LatestSamples, ListenerSample};
use model::{Model, PodThreads, Threads};
pub use report::{AcceptsScope, BusySource, ListenerReport, PodRef};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the worker source reads from, and how often.
#[derive(Debug, Clone)]
pub struct WorkersSpec {
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    /// Sidecar mode: only this process's own network namespace (its pod's), and listeners
    /// whose processes are out of sight (no shared process namespace) still reported, their
    /// busy workers inferred from accepted connections ([`BusySource::Connections`]).
    pub own_netns_only: bool,
    pub interval: Duration,
    /// Most listeners each report window carries (`[listeners]`).
    pub caps: ListenerConfig,
}

#[derive(Debug, Default)]
struct Proc {
    netns: Option<u64>,
    ppid: i32,
    /// Start time (clock ticks after boot) and /proc directory inode: a pid whose inode changed
    /// and whose start time differs is a new process.
    start: u64,
    ino: u64,
    comm: String,
    sockets: HashSet<u64>,
    /// Seen holding an accepted connection at least once: never a master.
    accepted: bool,
    /// Pod identity and where its cpu.stat is, read once when first needed.
    cgroup: Option<(Option<cgroup::PodIdentity>, Option<PathBuf>)>,
    /// When this pid was first scanned; young processes are checked again (see [`YOUNG`]).
    first_seen: Option<Instant>,
    /// Threads per worker as the server states it, and when read (again after [`THREADS_TTL`]).
    threads: Option<(Threads, Instant)>,
    /// Seen holding more accepted connections of one listener than it has threads.
    multi: bool,
    /// A Phusion Passenger core (see [`passenger`]).
    passenger_core: bool,
}

/// How long a worker's thread count is trusted before it is read again (a pool that grows).
pub const THREADS_TTL: Duration = Duration::from_secs(10);

/// Where a listener listens: a TCP address, or a unix socket's name (bytes as the kernel has
/// them; see [`crate::sys::unixsock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Tcp(SocketAddr),
    Unix(Arc<[u8]>),
    /// A Passenger app group's name (see [`passenger`]).
    Group(Arc<[u8]>),
}

/// A listening socket in one sample, of either kind.
struct Listen {
    inode: u64,
    local: Local,
    rqueue: u32,
    wqueue: u32,
}

type Key = (u64, u64);

/// How long after a pid is first seen its network namespace is checked again on every sample.
/// A container's first process joins the pod's namespace and then execs the entrypoint under
/// the same pid (runc init; `ip netns exec`, `nsenter` likewise): seen before the switch, it
/// would otherwise stay filed under the wrong namespace and its listeners would never be found.
pub const YOUNG: Duration = Duration::from_secs(10);

/// Most pidfds held for holders (descriptors are a process-wide limit); beyond, holders are
/// checked with an lstat each.
pub const MAX_PIDFDS: usize = 512;

/// How often /proc is listed for births and exits (samples in between reuse the list).
pub const LIST_INTERVAL: Duration = Duration::from_secs(1);

/// Per namespace: what decides whether its connected sockets must be dumped again.
#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    /// `PassiveOpens` read before the last connected dump; None when unreadable (always dump).
    passive: Option<u64>,
    /// The last connected dump found a connection a worker holds or may hold.
    open: bool,
}

/// How long a listener nobody is known to hold waits before its namespace is read again.
pub const UNOWNED_RETRY: Duration = Duration::from_secs(300);

/// How long a listener's running totals outlive it: a window or two without it (a missed
/// sample) keeps counting on; a pod deleted leaves no series behind on /metrics.
pub const FORGET_GONE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Acc {
    local: Local,
    samples: u64,
    busy_sum: u64,
    busy_max: u32,
    conns_sum: u64,
    conns_max: u32,
    /// Most connections an event loop held for [`accepts::KEPT_ALIVE`] or longer at once.
    kept_max: u32,
    threads: Threads,
    model: Model,
    queue_max: u32,
    backlog: u32,
    workers: u32,
    /// At the last sample: workers × threads, or a Passenger group's summed concurrency.
    capacity: u32,
    saturated: u64,
    worker_pids: Vec<i32>,
    holder: i32,
    busy_source: BusySource,
}

/// Counters of work done, for tests and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub samples: u64,
    /// fd directories read.
    pub fd_scans: u64,
    pub netns_dumps: u64,
    /// /proc listings.
    pub listings: u64,
    /// Dumps of connected sockets (each walks the established hash once per family).
    pub connected_dumps: u64,
    /// Unix socket dumps, and rows or messages in them skipped as unreadable.
    pub unix_dumps: u64,
    pub unix_skipped: u64,
    /// Thread lists read (threads per worker).
    pub thread_reads: u64,
    /// Passenger pools read, and reads skipped as failed (see [`passenger`]).
    pub passenger_reads: u64,
    pub passenger_skipped: u64,
}

/// One listener's figures in one sample, for [`Sampler::record`].
struct Record {
    local: Local,
    /// The process whose cgroup names the pod (a worker, or the holder).
    holder: i32,
    workers: Vec<i32>,
    busy: u32,
    connections: u32,
    kept: u32,
    capacity: u32,
    threads: Threads,
    model: Model,
    queue: u32,
    backlog: u32,
    busy_source: BusySource,
}

/// The sampling state: caches and the current window. Synchronous; run it on its own thread.
pub struct Sampler<D: Diag = Sockets> {
    proc: ProcRoot,
    cgroup_root: PathBuf,
    diag: D,
    procs: HashMap<i32, Proc>,
    /// When /proc is listed next; None: at the next sample.
    next_list: Option<Instant>,
    /// Processes holding a listener at the last sample: checked for exit between listings.
    holder_pids: HashSet<i32>,
    /// A pidfd per holder where the proc root's pids are ours: one poll checks them all.
    pidfds: HashMap<i32, std::os::fd::OwnedFd>,
    own_pids: bool,
    /// This process's pid as the proc root numbers it (its `self` link): the agent's own
    /// listeners are event loops whatever its binary is called.
    own_pid: Option<i32>,
    /// Namespaces with a listener at their last dump: dumped at every sample, the others only
    /// at listings.
    listening: HashSet<u64>,
    gates: HashMap<u64, Gate>,
    /// Accepted connections per namespace, from the gate's `PassiveOpens` reading, and the
    /// connections event loops hold (see [`accepts`]).
    accepts: HashMap<u64, accepts::Rate>,
    held: accepts::Held,
    /// Listeners nobody is known to hold after a rescan (their holder is out of sight, e.g. in
    /// another pid namespace), and when: looked for again after [`UNOWNED_RETRY`].
    unowned: HashMap<Key, Instant>,
    /// Accepted connections not found in any holder's fds, with how many rescans missed them.
    /// After two (the second rules out a worker caught between accept and installing the fd)
    /// they belong to a process that does not hold the listener (sshd's per-connection
    /// children): not a worker's, and not looked for again.
    foreign: HashMap<Key, u8>,
    accs: BTreeMap<Key, Acc>,
    /// Saturated seconds since start per listener, and when it was last in a window: one gone
    /// for [`FORGET_GONE`] is forgotten (its counter starts again from 0 if it comes back).
    saturated_total: HashMap<Key, (f64, Instant)>,
    forget_gone: Duration,
    cpu_base: HashMap<PathBuf, CpuStat>,
    /// The sample being taken, published to `latest` when it is complete.
    current: Vec<ListenerSample>,
    latest: LatestSamples,
    caps: ListenerConfig,
    /// Threads per worker from pod annotations (see [`model::PodThreads`]).
    pod_threads: PodThreads,
    /// What the caps left out of the last window cut.
    omitted: Omitted,
    /// Passenger cores: their instance and last pool read.
    passenger: HashMap<i32, passenger::Core>,
    /// Sidecar mode: this process's network namespace, the only one sampled.
    own_netns: Option<u64>,
    /// Sidecar mode: the pod every listener sampled belongs to, for the probes' saturation
    /// lookup where the holder's cgroup does not name it (a cgroup namespace shows `/`).
    own_pod_uid: Option<String>,
    pub cost: Cost,
}

impl Sampler<Sockets> {
    /// Sockets through sock_diag or `/proc/<pid>/net`, whichever this process may use.
    pub fn new(spec: &WorkersSpec) -> Self {
        let diag = if spec.own_netns_only {
            // Only its own namespace: sock_diag needs no setns there.
            Sockets::SockDiag(Default::default())
        } else {
            Sockets::for_this_process(&spec.proc_root)
        };
        Sampler::with_diag(spec, diag)
    }
}

impl<D: Diag> Sampler<D> {
    pub fn with_diag(spec: &WorkersSpec, diag: D) -> Self {
        Sampler {
            proc: ProcRoot::new(&spec.proc_root),
            cgroup_root: spec.cgroup_root.clone(),
            diag,
            procs: HashMap::new(),
            next_list: None,
            holder_pids: HashSet::new(),
            pidfds: HashMap::new(),
            own_pids: ProcRoot::new(&spec.proc_root).is_own(),
            own_pid: std::fs::read_link(spec.proc_root.join("self"))
                .ok()
                .and_then(|p| p.to_str()?.parse().ok()),
            listening: HashSet::new(),
            gates: HashMap::new(),
            accepts: HashMap::new(),
            held: accepts::Held::default(),
            unowned: HashMap::new(),
            foreign: HashMap::new(),
            accs: BTreeMap::new(),
            saturated_total: HashMap::new(),
            forget_gone: FORGET_GONE,
            cpu_base: HashMap::new(),
            current: Vec::new(),
            latest: LatestSamples::default(),
            caps: spec.caps,
            pod_threads: PodThreads::default(),
            omitted: Omitted::default(),
            passenger: HashMap::new(),
            own_netns: if spec.own_netns_only {
                // The real /proc, whatever the root: the namespace this process is in.
                std::fs::read_link("/proc/thread-self/ns/net")
                    .ok()
                    .and_then(|t| crate::sys::procfs::bracketed(&t.to_string_lossy(), "net"))
            } else {
                None
            },
            own_pod_uid: None,
            cost: Cost::default(),
        }
    }

    /// Sidecar mode: every listener is this pod's (see `own_pod_uid`).
    pub fn set_own_pod(&mut self, uid: Option<String>) {
        self.own_pod_uid = uid.filter(|u| !u.is_empty());
    }

    /// Makes the next sample list /proc, as if [`LIST_INTERVAL`] had passed (a clock for tests).
    #[cfg(test)]
    fn list_at_next_sample(&mut self) {
        self.next_list = None;
    }

    /// The view of the latest sample that this sampler keeps current.
    pub fn latest(&self) -> LatestSamples {
        self.latest.clone()
    }

    /// Takes one sample of every listener on the node.
    pub fn sample(&mut self) {
        self.cost.samples += 1;
        let now = Instant::now();
        let listing = self.next_list.map_or(true, |t| now >= t);
        if listing {
            self.holder_pids.clear();
            if !self.list() {
                return;
            }
            self.next_list = Some(now + LIST_INTERVAL);
        } else {
            self.check_holders();
        }
        // Young: did it switch namespaces (and exec) since it was scanned?
        let young: Vec<i32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.first_seen.is_some_and(|t| t.elapsed() < YOUNG))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in young {
            let Some(old) = self.procs.get(&pid) else {
                continue;
            };
            if self.proc.netns(pid).ok() != old.netns {
                let (first_seen, ino) = (old.first_seen, old.ino);
                let mut p = self.scan_new(pid, ino);
                // Still young by its first sighting, not by this rescan.
                p.first_seen = first_seen;
                self.procs.insert(pid, p);
            }
        }
        self.unowned
            .retain(|_, since| now.duration_since(*since) < UNOWNED_RETRY);
        let mut by_ns: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
        for (&pid, p) in &self.procs {
            if let Some(ns) = p
                .netns
                .filter(|ns| self.own_netns.map_or(true, |o| o == *ns))
            {
                by_ns.entry(ns).or_default().push(pid);
            }
        }
        for (ns, group) in &mut by_ns {
            if listing || self.listening.contains(ns) {
                group.sort_unstable();
                self.sample_netns(*ns, group);
            }
        }
        self.track_holders();
        self.latest.set(std::mem::take(&mut self.current));
        let live: HashSet<u64> = by_ns.keys().copied().collect();
        self.listening.retain(|ns| live.contains(ns));
        self.gates.retain(|ns, _| live.contains(ns));
        self.accepts.retain(|ns, _| live.contains(ns));
        self.diag.retain(&live);
    }

    /// Connected sockets of the namespace, or None when nothing can have changed since the last
    /// dump (see the module's step 2). `passive` was read before the listeners were dumped.
    fn connected(
        &mut self,
        ns: u64,
        path: &Path,
        listens: &[Sock],
        passive: Option<u64>,
    ) -> Option<Vec<Sock>> {
        let gate = self.gates.get(&ns).copied();
        let queued = listens.iter().any(|l| l.rqueue > 0);
        let skip =
            !queued && passive.is_some() && gate.is_some_and(|g| !g.open && g.passive == passive);
        if skip {
            return None;
        }
        self.cost.connected_dumps += 1;
        let v4 = listens.iter().any(|s| s.local.is_ipv4());
        let v6 = listens.iter().any(|s| s.local.is_ipv6());
        match self.diag.connected(ns, path, v4, v6) {
            Ok(c) => {
                // Open until proven closed: set by the caller once it knows whose they are.
                self.gates.insert(
                    ns,
                    Gate {
                        passive,
                        open: true,
                    },
                );
                Some(
                    c.into_iter()
                        .filter(|s| s.state == SockState::Connected && s.inode != 0)
                        .collect(),
                )
            }
            Err(error) => {
                tracing::debug!(message = "No connected sockets for a namespace (gone?).", netns = ns, %error);
                self.gates.remove(&ns);
                Some(Vec::new())
            }
        }
    }

    fn sample_netns(&mut self, ns: u64, group: &[i32]) {
        self.cost.netns_dumps += 1;
        let path = self.proc.netns_path(group[0]);
        // Before the dumps: a connection completed after this read moves it for next time.
        let passive = self.proc.tcp_passive_opens(group[0]).ok();
        if let Some(p) = passive {
            self.accepts
                .entry(ns)
                .or_default()
                .observe(Instant::now(), p);
        }
        let socks = match self.diag.listeners(ns, &path) {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(message = "Skipping a network namespace (gone?).", netns = ns, pid = group[0], %error);
                self.listening.remove(&ns);
                return;
            }
        };
        let tcp: Vec<Sock> = socks
            .into_iter()
            .filter(|s| s.state == SockState::Listen && s.inode != 0)
            .collect();
        self.cost.unix_dumps += 1;
        let unix = self.diag.unix(ns, &path).unwrap_or_else(|error| {
            tracing::debug!(message = "No unix sockets for a network namespace (gone?).", netns = ns, %error);
            Default::default()
        });
        self.cost.unix_skipped += unix.skipped;
        let (unix_listens, unix_conns): (Vec<UnixSock>, Vec<UnixSock>) =
            unix.socks.into_iter().partition(|s| s.listen);
        let mut listens: Vec<Listen> = tcp
            .iter()
            .map(|s| Listen {
                inode: s.inode,
                local: Local::Tcp(s.local),
                rqueue: s.rqueue,
                wqueue: s.wqueue,
            })
            .collect();
        listens.extend(unix_listens.into_iter().map(|s| Listen {
            inode: s.inode,
            local: Local::Unix(s.name.into()),
            rqueue: s.rqueue,
            wqueue: s.wqueue,
        }));
        if listens.is_empty() {
            self.listening.remove(&ns);
            return;
        }
        self.listening.insert(ns);
        // Passenger's plumbing sockets are its app groups' business, reported per group.
        let hidden = self.sample_passenger(ns, group);
        listens.retain(|l| !matches!(&l.local, Local::Unix(name) if hidden.holds_name(name)));
        let listen_inodes: HashSet<u64> = listens.iter().map(|s| s.inode).collect();
        let mut holders = self.holders(group, &listen_inodes);
        let unknown = |holders: &HashMap<u64, Vec<i32>>, unowned: &HashMap<Key, Instant>| {
            listens
                .iter()
                .any(|s| !holders.contains_key(&s.inode) && !unowned.contains_key(&(ns, s.inode)))
        };
        if unknown(&holders, &self.unowned) {
            // First the likely ones: processes holding a listener already, and young ones.
            let likely: HashSet<i32> = group
                .iter()
                .copied()
                .filter(|pid| {
                    holders.values().any(|h| h.contains(pid))
                        || self
                            .procs
                            .get(pid)
                            .and_then(|p| p.first_seen)
                            .is_some_and(|t| t.elapsed() < YOUNG)
                })
                .collect();
            if likely.len() < group.len() {
                self.rescan(likely.iter().copied());
                holders = self.holders(group, &listen_inodes);
            }
            if likely.len() == group.len() || unknown(&holders, &self.unowned) {
                let rest: Vec<i32> = group
                    .iter()
                    .copied()
                    .filter(|p| likely.len() == group.len() || !likely.contains(p))
                    .collect();
                self.rescan(rest);
                holders = self.holders(group, &listen_inodes);
            }
            for s in &listens {
                if !holders.contains_key(&s.inode) {
                    self.unowned.insert((ns, s.inode), Instant::now());
                }
            }
        }
        let connected = if tcp.is_empty() {
            None
        } else {
            self.connected(ns, &path, &tcp, passive)
        };
        if let Some(c) = &connected {
            let live: HashSet<u64> = c
                .iter()
                .map(|c| c.inode)
                .chain(unix_conns.iter().map(|c| c.inode))
                .collect();
            self.foreign
                .retain(|(n, i), _| *n != ns || live.contains(i));
        }
        // Skipped: no connection of a listener (foreign ones are kept for next time).
        let connected = connected.unwrap_or_default();
        // Whether any TCP connection is a worker's or may become known as one.
        let mut open = false;
        for l in &listens {
            let Some(hs) = holders.get(&l.inode) else {
                if let (Some(_), Local::Tcp(local)) = (self.own_netns, &l.local) {
                    // A sidecar that cannot see the server's processes: one accepted
                    // connection per busy worker (exact for sync prefork workers).
                    let busy = connected
                        .iter()
                        .filter(|c| accepted_on(c.local, *local))
                        .count() as u32;
                    open |= busy > 0;
                    self.record_unseen(ns, l, busy);
                }
                continue;
            };
            if hs.iter().all(|h| hidden.pids.contains(h)) {
                continue; // a Passenger app process's own socket
            }
            self.holder_pids.extend(hs.iter().copied());
            let conns: Vec<u64> = match &l.local {
                Local::Tcp(local) => connected
                    .iter()
                    .filter(|c| accepted_on(c.local, *local))
                    .map(|c| c.inode)
                    .collect(),
                Local::Unix(name) => unix_conns
                    .iter()
                    .filter(|c| *c.name == **name)
                    .map(|c| c.inode)
                    .collect(),
                Local::Group(_) => Vec::new(),
            };
            let owner_known = |procs: &HashMap<i32, Proc>, ino: u64| {
                hs.iter()
                    .any(|h| procs.get(h).is_some_and(|p| p.sockets.contains(&ino)))
            };
            if conns.iter().any(|&c| {
                !owner_known(&self.procs, c) && self.foreign.get(&(ns, c)).copied().unwrap_or(0) < 2
            }) {
                self.rescan(hs.iter().copied());
                for &c in &conns {
                    if !owner_known(&self.procs, c) {
                        *self.foreign.entry((ns, c)).or_default() += 1;
                    }
                }
            }
            if matches!(l.local, Local::Tcp(_)) {
                open |= conns.iter().any(|&c| {
                    owner_known(&self.procs, c)
                        || self.foreign.get(&(ns, c)).copied().unwrap_or(0) < 2
                });
            }
            // Accepted connections each holder holds.
            let mut held: HashMap<i32, u32> = HashMap::new();
            for h in hs {
                if let Some(p) = self.procs.get_mut(h) {
                    let n = conns.iter().filter(|c| p.sockets.contains(c)).count() as u32;
                    if n > 0 {
                        p.accepted = true;
                        held.insert(*h, n);
                    }
                }
            }
            let is_master = |h: &i32| {
                let Some(p) = self.procs.get(h) else {
                    return true;
                };
                !p.accepted
                    && hs
                        .iter()
                        .any(|o| o != h && self.procs.get(o).is_some_and(|c| c.ppid == *h))
            };
            let workers: Vec<i32> = hs.iter().copied().filter(|h| !is_master(h)).collect();
            let holder = workers.first().copied().unwrap_or(hs[0]);
            let threads = self.threads(holder);
            let mut model = if model::serves_alone(hs, threads, self.own_pid, |h| {
                group
                    .iter()
                    .any(|p| self.procs.get(p).is_some_and(|c| c.ppid == h))
            }) {
                Model::EventLoop
            } else {
                Model::Prefork
            };
            let (mut busy, mut held_all) = (0u32, 0u32);
            for w in &workers {
                let n = held.get(w).copied().unwrap_or(0);
                held_all += n;
                // In service: at most one request per thread; the rest wait inside the worker.
                busy += n.min(threads.n);
                if let Some(p) = self.procs.get_mut(w) {
                    // Threads that became known (the pod's annotation arrived) end the guess.
                    p.multi = !threads.known && (p.multi || n > threads.n);
                    if p.multi || model::is_event_loop_comm(&p.comm) {
                        model = Model::EventLoop;
                    }
                }
            }
            if model == Model::Prefork && threads.n > 1 {
                model = Model::Threaded;
            }
            let kept = if model == Model::EventLoop {
                busy = 0;
                self.held.note((ns, l.inode), &conns, Instant::now())
            } else {
                self.held.forget(&(ns, l.inode));
                0
            };
            let capacity = (workers.len() as u32).saturating_mul(threads.n);
            let backlog = if l.wqueue == 0 && matches!(l.local, Local::Tcp(_)) {
                self.diag.backlog(ns, l.inode, holder).unwrap_or(0)
            } else {
                l.wqueue
            };
            self.record(
                (ns, l.inode),
                Record {
                    local: l.local.clone(),
                    holder,
                    workers,
                    busy,
                    connections: held_all,
                    kept,
                    capacity,
                    threads,
                    model,
                    queue: l.rqueue,
                    backlog,
                    busy_source: BusySource::Processes,
                },
            );
        }
        if let Some(g) = self.gates.get_mut(&ns) {
            g.open = open;
        }
    }

    /// A listener whose processes are out of sight (a sidecar without a shared process
    /// namespace): `busy` from its accepted connections; workers and capacity unknown (0).
    fn record_unseen(&mut self, ns: u64, l: &Listen, busy: u32) {
        self.record(
            (ns, l.inode),
            Record {
                local: l.local.clone(),
                holder: 0,
                workers: Vec::new(),
                busy,
                connections: busy,
                kept: 0,
                capacity: 0,
                threads: Threads::UNKNOWN,
                model: Model::Prefork,
                queue: l.rqueue,
                backlog: l.wqueue,
                busy_source: BusySource::Connections,
            },
        );
    }

    /// Adds one sample of a listener to the latest sample and its window.
    fn record(&mut self, key: Key, r: Record) {
        self.note_cgroup(r.holder);
        let n = r.workers.len() as u32;
        self.current.push(ListenerSample {
            pod_uid: self
                .procs
                .get(&r.holder)
                .and_then(|p| p.cgroup.as_ref())
                .and_then(|c| c.0.as_ref())
                .map(|p| p.pod_uid.clone())
                .or_else(|| self.own_pod_uid.clone()),
            local: r.local.clone(),
            workers: n,
            busy: r.busy,
            capacity: r.capacity,
            queue: r.queue,
        });
        let a = self.accs.entry(key).or_insert(Acc {
            local: r.local,
            samples: 0,
            busy_sum: 0,
            busy_max: 0,
            conns_sum: 0,
            conns_max: 0,
            kept_max: 0,
            threads: r.threads,
            model: r.model,
            queue_max: 0,
            backlog: 0,
            workers: 0,
            capacity: 0,
            saturated: 0,
            worker_pids: Vec::new(),
            holder: r.holder,
            busy_source: r.busy_source,
        });
        a.samples += 1;
        a.busy_sum += r.busy as u64;
        a.busy_max = a.busy_max.max(r.busy);
        a.conns_sum += r.connections as u64;
        a.conns_max = a.conns_max.max(r.connections);
        a.kept_max = a.kept_max.max(r.kept);
        a.queue_max = a.queue_max.max(r.queue);
        a.backlog = r.backlog;
        a.workers = n;
        a.capacity = r.capacity;
        a.threads = r.threads;
        // Once an event loop in the window, one for the window.
        if a.model != Model::EventLoop {
            a.model = r.model;
        }
        a.saturated +=
            (r.model != Model::EventLoop && r.capacity > 0 && r.busy >= r.capacity) as u64;
        a.worker_pids = r.workers;
        a.holder = r.holder;
        a.busy_source = r.busy_source;
    }

    /// Listener inode → processes in `group` holding it (ascending pid).
    fn holders(&self, group: &[i32], listen: &HashSet<u64>) -> HashMap<u64, Vec<i32>> {
        let mut out: HashMap<u64, Vec<i32>> = HashMap::new();
        for pid in group {
            if let Some(p) = self.procs.get(pid) {
                for i in p.sockets.iter().filter(|i| listen.contains(i)) {
                    out.entry(*i).or_default().push(*pid);
                }
            }
        }
        out
    }

    /// Reads a process's cgroup once; starts the CPU baseline of its cgroup.
    fn note_cgroup(&mut self, pid: i32) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.cgroup.is_none() {
            p.cgroup = Some(match self.proc.cgroup(pid) {
                Ok(text) => {
                    let cands = cgroup::cpu_stat_candidates(&self.cgroup_root, &text);
                    let found = cgroup::read_cpu_stat(&cands);
                    if let Some((path, stat)) = &found {
                        self.cpu_base.entry(path.clone()).or_insert(*stat);
                    }
                    (cgroup::pod_of(&text), found.map(|(p, _)| p))
                }
                Err(error) => {
                    tracing::debug!(message = "No cgroup for a process (exited?).", pid, %error);
                    (None, None)
                }
            });
        }
    }

    /// What the caps left out of the last window cut.
    pub fn omitted(&self) -> Omitted {
        self.omitted
    }
}

/// Whether a connected socket with local address `conn` was accepted on a listener bound to
/// `listen`: same port and family, and the listener's address or a wildcard (a dual-stack `[::]`
/// listener's IPv4 connections show as `::ffff:a.b.c.d`, family IPv6).
fn accepted_on(conn: SocketAddr, listen: SocketAddr) -> bool {
    conn.port() == listen.port()
        && conn.is_ipv4() == listen.is_ipv4()
        && (listen.ip().is_unspecified() || listen.ip() == conn.ip())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
