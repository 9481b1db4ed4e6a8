//! What serves a listener, and how many requests each of its workers can serve at once.
//!
//! - **threads per worker**, where the server states it: Puma names its pool threads
//!   `puma srv tp NNN` (counted; with `min < max` threads the pool grows under load, so this is
//!   the pool as it is now), gunicorn takes `--threads N` on its command line (the worker's or
//!   its master's), unicorn and php-fpm serve one request per process; else 1 with
//!   `threads_known: false` (the pod annotation `headroom.io/threads-per-worker` of issue 18 is
//!   not read yet);
//! - **model**: `event_loop` for a server known to be one (nginx, Node, Envoy, HAProxy, the
//!   agent and collector themselves) or a worker of unknown threads seen holding more accepted
//!   connections than it has threads (one process, many connections); `threaded` with more
//!   than one thread per worker; else `prefork`. An event loop's figures are its connections,
//!   not busy workers: it is kept out of saturation (busy 0, no worker metrics exported).

use crate::sys::procfs::ProcRoot;
use serde::Serialize;

/// How a listener's requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// One request per worker process at a time (unicorn, gunicorn sync, php-fpm).
    #[default]
    Prefork,
    /// Several requests per worker, one per pool thread (Puma, gunicorn gthread).
    Threaded,
    /// One process multiplexing many connections: connections, not busy workers.
    EventLoop,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Prefork => "prefork",
            Model::Threaded => "threaded",
            Model::EventLoop => "event_loop",
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
