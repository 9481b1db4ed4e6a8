//! What serves a listener, and how many requests each of its workers can serve at once.
//!
//! - **threads per worker**, where the server states it: Puma names its pool threads
//!   `puma srv tp NNN` (counted; with `min < max` threads the pool grows under load, so this is
//!   the pool as it is now), gunicorn takes `--threads N` on its command line (the worker's or
//!   its master's), unicorn and php-fpm serve one request per process; else the pod's
//!   annotation `headroom.io/threads-per-worker` (for servers that say nothing: a thread-per-
//!   request Python or Java server, Puma with renamed threads); else 1 with
//!   `threads_known: false`;
//! - **model**: `event_loop` for a server known to be one (nginx, Node, Envoy, HAProxy, the
//!   agent and collector themselves, by name, and the agent's own process by pid), for a
//!   single process serving alone ([`serves_alone`]: redis, a Go, Java or asyncio server, the
//!   collector under any name: one process holding a keep-alive connection is not a prefork
//!   pool of one at 100 %), or a worker of unknown threads seen holding more accepted
//!   connections than it has threads (one process, many connections); `threaded` with more
//!   than one thread per worker; else `prefork`. An event loop's figures are its connections,
//!   not busy workers: it is kept out of saturation (busy 0, no worker metrics exported).

use super::THREADS_TTL;
use crate::sys::procfs::ProcRoot;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The pod annotation stating a server's threads per worker where the server does not.
pub const THREADS_ANNOTATION: &str = "headroom.io/threads-per-worker";

/// Most pods whose annotation is kept (a node runs at most a few hundred).
pub const MAX_ANNOTATED_PODS: usize = 4096;

/// Threads per worker stated by pod annotation, by pod uid: written by the pod watcher
/// (`enrich::pods`), read by the sampler for workers whose server states nothing.
#[derive(Debug, Clone, Default)]
pub struct PodThreads(Arc<RwLock<HashMap<String, u32>>>);

impl PodThreads {
    /// Replaces the map with the annotated pods (uid, annotation value); values that are not
    /// a whole number from 1 are ignored, larger than [`MAX_THREADS_PER_WORKER`] capped.
    pub fn set<'a>(&self, pods: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let map: HashMap<String, u32> = pods
            .into_iter()
            .filter_map(|(uid, v)| Some((uid.to_string(), annotated_threads(v)?)))
            .take(MAX_ANNOTATED_PODS)
            .collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    pub fn get(&self, pod_uid: &str) -> Option<u32> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pod_uid)
            .copied()
    }
}

/// `headroom.io/threads-per-worker: "8"` → 8; anything but a whole number ≥ 1 → None.
pub fn annotated_threads(v: &str) -> Option<u32> {
    let n: u64 = v.trim().parse().ok()?;
    (n >= 1).then(|| n.min(u64::from(MAX_THREADS_PER_WORKER)) as u32)
}

/// How a listener's requests are served (the OTLP attribute's values live with the names).
pub use headroom_signals::Model;

/// Threads per worker and whether the server stated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    pub n: u32,
    pub known: bool,
}

impl Threads {
    pub const UNKNOWN: Threads = Threads { n: 1, known: false };
}

/// Command names (`comm`, at most 15 bytes) of servers that are event loops whatever they hold.
pub const EVENT_LOOP_COMMS: &[&str] = &[
    "nginx",
    "node",
    "envoy",
    "haproxy",
    "caddy",
    // Phusion Passenger's core and watchdog: its app groups are read from the core.
    "PassengerAgent",
    "headroom-agent",
    "headroom-collec",
];

/// Most threads of one process looked at.
pub const MAX_THREADS: usize = 4096;

/// Most threads per worker believed (a stated figure above is taken as this).
pub const MAX_THREADS_PER_WORKER: u32 = 1024;

pub fn is_event_loop_comm(comm: &str) -> bool {
    EVENT_LOOP_COMMS.contains(&comm)
}

/// Whether a listener's `holders` are a server whose load is its connections rather than
/// busy workers: the agent itself (`own_pid`), or one process alone: the only holder, with
/// no child in its namespace (`has_child`: a prefork master whose workers are between
/// forks keeps its pool) and no thread count stated by the server or its pod (a stated pool,
/// like Puma's single mode or an annotated Java server, is counted by its threads).
pub fn serves_alone(
    holders: &[i32],
    threads: Threads,
    own_pid: Option<i32>,
    has_child: impl Fn(i32) -> bool,
) -> bool {
    if own_pid.is_some_and(|me| holders.contains(&me)) {
        return true;
    }
    matches!(holders, [only] if !threads.known && !has_child(*only))
}

/// Threads per worker for worker `pid` (command `comm`, parent `ppid`), as the server states it.
pub fn threads_of(proc: &ProcRoot, pid: i32, ppid: i32, comm: &str) -> Threads {
    if let Ok(names) = proc.thread_names(pid, MAX_THREADS) {
        let pool = names
            .iter()
            .filter(|n| n.starts_with("puma srv tp"))
            .count() as u32;
        if pool > 0 {
            return Threads {
                n: pool.min(MAX_THREADS_PER_WORKER),
                known: true,
            };
        }
    }
    for p in [pid, ppid] {
        let Ok(args) = proc.cmdline(p) else { continue };
        if args.iter().take(3).any(|a| a.contains("gunicorn")) {
            return match gunicorn_threads(&args) {
                Some(n) => Threads {
                    n: n.clamp(1, MAX_THREADS_PER_WORKER),
                    known: true,
                },
                None => Threads::UNKNOWN,
            };
        }
    }
    if comm.starts_with("unicorn") || comm.starts_with("php-fpm") {
        return Threads { n: 1, known: true };
    }
    Threads::UNKNOWN
}

/// `--threads N` or `--threads=N` on a gunicorn command line.
pub fn gunicorn_threads(args: &[String]) -> Option<u32> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--threads" {
            return it.next()?.parse().ok();
        }
        if let Some(v) = a.strip_prefix("--threads=") {
            return v.parse().ok();
        }
    }
    None
}

/// Threads per worker as the sampler knows them: stated by the server, else annotated on
/// the pod.
impl<D: crate::sys::sock::Diag> super::Sampler<D> {
    /// Threads per worker of `pid` as its server states them (read again after
    /// [`THREADS_TTL`]), else as its pod's annotation does (looked up every time: the pod
    /// watcher may learn it after the first samples).
    pub(super) fn threads(&mut self, pid: i32) -> Threads {
        let Some(p) = self.procs.get(&pid) else {
            return Threads::UNKNOWN;
        };
        let stated = match p.threads {
            Some((t, at)) if at.elapsed() < THREADS_TTL => t,
            _ => {
                self.cost.thread_reads += 1;
                let t = threads_of(&self.proc, pid, p.ppid, &p.comm);
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.threads = Some((t, Instant::now()));
                }
                t
            }
        };
        if stated.known {
            return stated;
        }
        self.note_cgroup(pid);
        let uid = self
            .procs
            .get(&pid)
            .and_then(|p| p.cgroup.as_ref())
            .and_then(|c| c.0.as_ref())
            .map(|p| p.pod_uid.as_str());
        match uid.and_then(|u| self.pod_threads.get(u)) {
            Some(n) => Threads { n, known: true },
            None => stated,
        }
    }

    /// The map of pod-annotated threads per worker this sampler reads (the pod watcher
    /// fills it).
    pub fn pod_threads(&self) -> PodThreads {
        self.pod_threads.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_is_a_whole_number_capped() {
        assert_eq!(annotated_threads("8"), Some(8));
        assert_eq!(annotated_threads(" 16 "), Some(16));
        assert_eq!(
            annotated_threads("999999999999"),
            Some(MAX_THREADS_PER_WORKER)
        );
        for bad in ["0", "-1", "2.5", "", "eight", "8 threads"] {
            assert_eq!(annotated_threads(bad), None, "{bad:?}");
        }
        let t = PodThreads::default();
        t.set([("uid-1", "8"), ("uid-2", "lots")]);
        assert_eq!(
            (t.get("uid-1"), t.get("uid-2"), t.get("uid-3")),
            (Some(8), None, None)
        );
        let many: Vec<(String, String)> = (0..MAX_ANNOTATED_PODS + 10)
            .map(|i| (format!("u{i}"), "2".to_string()))
            .collect();
        t.set(many.iter().map(|(u, v)| (u.as_str(), v.as_str())));
        assert_eq!(t.0.read().unwrap().len(), MAX_ANNOTATED_PODS);
    }

    #[test]
    fn one_process_alone_serves_by_connections_a_pool_or_stated_threads_do_not() {
        let none = |_: i32| false;
        let known = Threads { n: 5, known: true };
        assert!(serves_alone(&[10], Threads::UNKNOWN, None, none));
        assert!(!serves_alone(&[10], known, None, none), "stated threads");
        assert!(
            !serves_alone(&[10], Threads::UNKNOWN, None, |p| p == 10),
            "a master between its workers' forks"
        );
        assert!(!serves_alone(&[10, 11], Threads::UNKNOWN, None, none));
        assert!(
            serves_alone(&[10, 11], known, Some(11), none),
            "the agent itself"
        );
    }

    #[test]
    fn gunicorn_threads_from_its_command_line() {
        let a = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            gunicorn_threads(&a("gunicorn -k gthread --threads 3 -w 2 app:app")),
            Some(3)
        );
        assert_eq!(
            gunicorn_threads(&a("gunicorn --threads=8 app:app")),
            Some(8)
        );
        assert_eq!(gunicorn_threads(&a("gunicorn -w 2 app:app")), None);
        assert_eq!(gunicorn_threads(&a("gunicorn --threads")), None);
        assert_eq!(gunicorn_threads(&a("gunicorn --threads x")), None);
    }

    #[test]
    fn models_by_name() {
        assert!(is_event_loop_comm("nginx"));
        assert!(!is_event_loop_comm("unicorn"));
        assert_eq!(
            serde_json::to_value(Model::EventLoop).unwrap(),
            "event_loop"
        );
    }
}
