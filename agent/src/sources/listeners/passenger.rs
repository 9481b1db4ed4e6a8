//! Phusion Passenger: busy processes and requests in queue per app group, read where
//! `passenger-status` reads them. Passenger's app processes do not hold the public listener (the
//! Passenger core does, and hands each request to an app process over that process's own unix
//! socket in the instance directory), and its request queue lives inside the core: the kernel's
//! tables show one event-loop process, so the pool is asked instead.
//!
//! For a process whose `comm` is `PassengerAgent` and whose command line the core set to
//! `Passenger core`, at most every [`READ_EVERY`]:
//! 1. the instance directory, found once as `passenger-status` finds it (Passenger's
//!    `admin_tools/instance_registry.rb`): `passenger.*` in the registry directory
//!    (`PASSENGER_INSTANCE_REGISTRY_DIR` from the core's environment, else `TMPDIR`, `/tmp`,
//!    `/var/run/passenger-instreg`), inside the core's root (`/proc/<pid>/root`, through
//!    `sys::podfs`: no link leaves that root, only regular files of bounded size are read);
//!    the one whose `core.pid` is the core's pid in its own pid namespace and whose
//!    `properties.json` is an instance directory of structure version 4;
//! 2. `GET /pool.xml` (what `passenger-status --show=xml` asks) on the core's API socket
//!    `agents.s/core_api` of that directory, with HTTP basic auth `ro_admin` and the password in
//!    `read_only_admin_password.txt`; the exchange bounded in time ([`TIMEOUT`]) and size
//!    ([`MAX_POOL_XML`]), the answer parsed as hostile input (node, group and process caps);
//! 3. per app group: workers = its processes, busy = sessions in service (each process at most
//!    its concurrency), connections = sessions, queue = the group's wait list (`Requests in
//!    queue` of `passenger-status`), capacity = the sum of the processes' concurrency (1 per
//!    process for Ruby in open-source Passenger). Concurrency 0 (unlimited: Node, async apps)
//!    is an event loop; negative (unknown) counts 1 with `threads_known: false`.
//!
//! A read that fails (no instance, a file that is a FIFO or too large, a socket that answers
//! garbage or nothing) is a counted skip ([`super::Cost::passenger_skipped`]); that core is
//! tried again after [`RETRY_AFTER`], and the rest of the sample goes on.

use super::model::{Model, Threads, MAX_THREADS_PER_WORKER};
use super::*;
use crate::sys::podfs::{self, PodFileError};
use std::io::{Read, Write};

/// `comm` of Passenger's agents (watchdog and core alike: the core is told by its command line).
pub const AGENT_COMM: &str = "PassengerAgent";

/// How often a core's pool is read (the 5 Hz samples in between reuse the last read).
pub const READ_EVERY: Duration = Duration::from_secs(2);

/// How long a core whose read failed waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The whole exchange with a core's API socket: connect, request, answer.
pub const TIMEOUT: Duration = Duration::from_millis(250);

/// Most bytes of a pool.xml answer (about 1.5 KiB per process, 1.5 KiB per group).
pub const MAX_POOL_XML: usize = 1024 * 1024;

/// Most XML nodes parsed of one answer.
pub const MAX_XML_NODES: u32 = 200_000;

/// Most groups and processes per group taken from one answer.
pub const MAX_GROUPS: usize = 256;
pub const MAX_PROCESSES: usize = 4096;

/// Most registry entries looked at, and instance directories tried, per read.
pub const MAX_REGISTRY_SCAN: usize = 4096;
pub const MAX_INSTANCES: usize = 16;

/// The instance directory structure `passenger-status` 6 reads (`properties.json`).
pub const INSTANCE_MAJOR_VERSION: u64 = 4;

/// Whether a `PassengerAgent` process is the core (its command line says so; the watchdog's
/// says `Passenger watchdog`).
pub fn is_core(cmdline: &[String]) -> bool {
    cmdline
        .first()
        .is_some_and(|a| a.starts_with("Passenger core"))
}

#[derive(Debug, thiserror::Error)]
pub enum PassengerError {
    #[error(transparent)]
    File(#[from] PodFileError),
    #[error("no Passenger instance directory of core pid {pid} under {dirs:?}")]
    NoInstance { pid: i32, dirs: Vec<String> },
    #[error("reading the core's process facts: {0}")]
    Proc(#[from] std::io::Error),
    #[error("the core's API socket: {0}")]
    Socket(std::io::Error),
    #[error("the core's API answer: {0}")]
    Http(String),
    #[error("the core's pool.xml: {0}")]
    Xml(String),
}

/// One process of an app group, as pool.xml has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProcess {
    /// In the core's pid namespace.
    pub pid: i32,
    /// Sessions it serves at once: > 0 a limit, 0 unlimited, < 0 unknown.
    pub concurrency: i64,
    pub sessions: u32,
}

/// One app group of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGroup {
    pub name: String,
    /// Requests waiting for a process of this group (its `get_wait_list`).
    pub waiting: u32,
    pub processes: Vec<AppProcess>,
}

/// A group's figures for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub workers: u32,
    pub busy: u32,
    pub connections: u32,
    pub capacity: u32,
    pub threads: Threads,
    pub model: Model,
    pub queue: u32,
}

impl AppGroup {
    pub fn figures(&self) -> Figures {
        let workers = self.processes.len() as u32;
        let connections = self
            .processes
            .iter()
            .fold(0u32, |a, p| a.saturating_add(p.sessions));
        if self.processes.iter().any(|p| p.concurrency == 0) {
            // Unlimited sessions per process: its load is its connections, not busy workers.
            return Figures {
                workers,
                busy: 0,
                connections,
                capacity: workers,
                threads: Threads::UNKNOWN,
                model: Model::EventLoop,
                queue: self.waiting,
            };
        }
        let known = self.processes.iter().all(|p| p.concurrency > 0);
        let limit = |p: &AppProcess| -> u32 {
            if p.concurrency > 0 {
                p.concurrency.min(MAX_THREADS_PER_WORKER as i64) as u32
            } else {
                1
            }
        };
        let capacity = self
            .processes
            .iter()
            .fold(0u32, |a, p| a.saturating_add(limit(p)));
        let busy = self
            .processes
            .iter()
            .fold(0u32, |a, p| a.saturating_add(p.sessions.min(limit(p))));
        let n = capacity.checked_div(workers).unwrap_or(1).max(1);
        Figures {
            workers,
            busy,
            connections,
            capacity,
            threads: Threads { n, known },
            model: if n > 1 {
                Model::Threaded
            } else {
                Model::Prefork
            },
            queue: self.waiting,
        }
    }
}

/// Where `passenger-status` looks for instance directories, in its order.
pub fn registry_dirs(registry: Option<String>, tmpdir: Option<String>) -> Vec<String> {
    if let Some(r) = registry {
        return vec![r];
    }
    let mut dirs: Vec<String> = tmpdir.into_iter().collect();
    for d in ["/tmp", "/var/run/passenger-instreg"] {
        if !dirs.iter().any(|x| x.trim_end_matches('/') == d) {
            dirs.push(d.to_string());
        }
    }
    dirs
}

/// The instance directory (a path in `root`) of the core whose pid in its own namespace is
/// `core_pid`: see the module's step 1.
pub fn find_instance(
    root: &Path,
    dirs: &[String],
    core_pid: i32,
) -> Result<String, PassengerError> {
    let mut last_err = None;
    for dir in dirs {
        let names =
            match podfs::list_in_root(root, dir, "passenger.", MAX_REGISTRY_SCAN, MAX_INSTANCES) {
                Ok(n) => n,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
        for name in names {
            let inst = format!("{}/{name}", dir.trim_end_matches('/'));
            match instance_of(root, &inst, core_pid) {
                Ok(true) => return Ok(inst),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
        }
    }
    match last_err {
        // A bad file in the one candidate says more than "none found".
        Some(e @ (PodFileError::NotRegular { .. } | PodFileError::TooLarge { .. })) => {
            Err(e.into())
        }
        _ => Err(PassengerError::NoInstance {
            pid: core_pid,
            dirs: dirs.to_vec(),
        }),
    }
}

/// Whether `inst` is the instance directory of core `core_pid`.
fn instance_of(root: &Path, inst: &str, core_pid: i32) -> Result<bool, PodFileError> {
    let pid = podfs::read_in_root(root, &format!("{inst}/core.pid"), 32)?;
    if String::from_utf8_lossy(&pid).trim().parse::<i32>().ok() != Some(core_pid) {
        return Ok(false);
    }
    let props = podfs::read_in_root(
        root,
        &format!("{inst}/properties.json"),
        podfs::MAX_POD_FILE,
    )?;
    let v: serde_json::Value = match serde_json::from_slice(&props) {
        Ok(v) => v,
        Err(_) => return Ok(false),
    };
    Ok(v["instance_dir"]["major_version"].as_u64() == Some(INSTANCE_MAJOR_VERSION))
}

/// `GET /pool.xml` on the instance's `agents.s/core_api`, as `passenger-status --show=xml`
/// asks it: the answer's body (see the module's step 2).
pub fn query_pool(root: &Path, inst: &str) -> Result<Vec<u8>, PassengerError> {
    use base64::Engine;
    let deadline = Instant::now() + TIMEOUT;
    let password = podfs::read_in_root(root, &format!("{inst}/read_only_admin_password.txt"), 256)?;
    if password.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PassengerError::Http(
            "the read-only admin password holds control bytes".into(),
        ));
    }
    let mut cred = b"ro_admin:".to_vec();
    cred.extend_from_slice(&password);
    let auth = base64::engine::general_purpose::STANDARD.encode(cred);
    let mut sock = podfs::connect_in_root(root, &format!("{inst}/agents.s/core_api"), TIMEOUT)?;
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| PassengerError::Http(format!("no answer within {TIMEOUT:?}")))
    };
    sock.set_write_timeout(Some(left(deadline)?))
        .map_err(PassengerError::Socket)?;
    write!(
        sock,
        "GET /pool.xml HTTP/1.0\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .map_err(PassengerError::Socket)?;
    let max = MAX_POOL_XML + 16 * 1024;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        sock.set_read_timeout(Some(left(deadline)?))
            .map_err(PassengerError::Socket)?;
        let n = match sock.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(PassengerError::Http(format!(
                    "no complete answer within {TIMEOUT:?}"
                )))
            }
            Err(e) => return Err(PassengerError::Socket(e)),
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > max {
            return Err(PassengerError::Http(format!(
                "answer larger than {max} bytes"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = complete_body(&buf)? {
            return Ok(body);
        }
    }
    complete_body(&buf)?.ok_or_else(|| PassengerError::Http("answer cut short".into()))
}

/// The body of a complete HTTP answer in `buf` (None: more to read). Only 200 with a
/// `Content-Length` (what the core sends) is taken.
fn complete_body(buf: &[u8]) -> Result<Option<Vec<u8>>, PassengerError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(PassengerError::Http(format!("not HTTP: {e}"))),
    };
    match resp.code {
        Some(200) => {}
        Some(c) => return Err(PassengerError::Http(format!("status {c}"))),
        None => return Err(PassengerError::Http("no status".into())),
    }
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| PassengerError::Http("no Content-Length".into()))?;
    if len > MAX_POOL_XML {
        return Err(PassengerError::Http(format!(
            "pool.xml of {len} bytes is over {MAX_POOL_XML}"
        )));
    }
    let body = &buf[head..];
    if body.len() < len {
        return Ok(None);
    }
    Ok(Some(body[..len].to_vec()))
}

/// The app groups of a pool.xml answer (`<info version="3">`: `supergroups/supergroup/group`
/// with `name`, `get_wait_list_size` and `processes/process` {`pid`, `concurrency`,
/// `sessions`}). The document claims ISO-8859-1; names are taken as UTF-8 where they are.
pub fn parse_pool(xml: &[u8]) -> Result<Vec<AppGroup>, PassengerError> {
    let text: std::borrow::Cow<str> = match std::str::from_utf8(xml) {
        Ok(s) => s.into(),
        Err(_) => xml.iter().map(|&b| b as char).collect::<String>().into(),
    };
    let opt = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_XML_NODES,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, opt)
        .map_err(|e| PassengerError::Xml(e.to_string()))?;
    let info = doc.root_element();
    if info.tag_name().name() != "info" {
        return Err(PassengerError::Xml(format!(
            "root element <{}>, not <info>",
            info.tag_name().name()
        )));
    }
    let mut out = Vec::new();
    let Some(sgs) = child(info, "supergroups") else {
        return Ok(out);
    };
    for sg in sgs
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "supergroup")
    {
        let Some(g) = child(sg, "group") else {
            continue;
        };
        if out.len() >= MAX_GROUPS {
            break;
        }
        let name = text_of(g, "name").unwrap_or_default();
        let waiting = num(g, "get_wait_list_size")?.clamp(0, u32::MAX as i64) as u32;
        let mut processes = Vec::new();
        if let Some(ps) = child(g, "processes") {
            for p in ps
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "process")
                .take(MAX_PROCESSES)
            {
                processes.push(AppProcess {
                    pid: num(p, "pid")?.clamp(0, i32::MAX as i64) as i32,
                    concurrency: num(p, "concurrency")?,
                    sessions: num(p, "sessions")?.clamp(0, u32::MAX as i64) as u32,
                });
            }
        }
        out.push(AppGroup {
            name,
            waiting,
            processes,
        });
    }
    Ok(out)
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text_of(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or("").trim().to_string())
}

fn num(n: roxmltree::Node<'_, '_>, name: &str) -> Result<i64, PassengerError> {
    let t = text_of(n, name).ok_or_else(|| PassengerError::Xml(format!("no <{name}>")))?;
    t.parse()
        .map_err(|_| PassengerError::Xml(format!("<{name}> is {t:?}, not a number")))
}

/// What the sampler keeps per core.
#[derive(Debug, Default)]
pub(super) struct Core {
    /// The instance directory (path in the core's root), once found.
    instance: Option<String>,
    /// When the pool is read next.
    next: Option<Instant>,
    /// The last read's groups, with their processes' pids as this agent sees them.
    groups: Vec<(AppGroup, Vec<i32>)>,
}

/// Passenger's own sockets in a namespace (see [`Sampler::sample_passenger`]).
#[derive(Debug, Default)]
pub(super) struct Plumbing {
    pub dirs: Vec<String>,
    pub pids: HashSet<i32>,
}

impl Plumbing {
    /// Whether the unix socket `name` lies in an instance directory.
    pub fn holds_name(&self, name: &[u8]) -> bool {
        self.dirs.iter().any(|d| {
            name.strip_prefix(d.as_bytes())
                .is_some_and(|r| r.first() == Some(&b'/'))
        })
    }
}

/// A listener key for an app group of a core: apart from socket inodes (top bit set).
fn group_key(core: i32, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (core, name).hash(&mut h);
    h.finish() | 1 << 63
}

impl<D: Diag> Sampler<D> {
    /// Samples the app groups of every Passenger core in namespace `ns` (processes `group`);
    /// returns what is Passenger's plumbing, not listeners of their own: the instance
    /// directories (the core's sockets, the preloader's) and the app processes (each listens
    /// on a socket of its own for the core).
    pub(super) fn sample_passenger(&mut self, ns: u64, group: &[i32]) -> Plumbing {
        let cores: Vec<i32> = group
            .iter()
            .copied()
            .filter(|p| self.procs.get(p).is_some_and(|p| p.passenger_core))
            .collect();
        let mut hidden = Plumbing::default();
        for core in cores {
            let now = Instant::now();
            let due = self
                .passenger
                .get(&core)
                .and_then(|c| c.next)
                .map_or(true, |t| now >= t);
            if due {
                self.read_core(core, group);
            }
            let Some(c) = self.passenger.get(&core) else {
                continue;
            };
            hidden.dirs.extend(c.instance.clone());
            let groups: Vec<(AppGroup, Vec<i32>)> = c.groups.clone();
            hidden
                .pids
                .extend(groups.iter().flat_map(|g| g.1.iter().copied()));
            for (g, pids) in groups {
                let f = g.figures();
                self.record(
                    (ns, group_key(core, &g.name)),
                    Record {
                        local: Local::Group(g.name.as_bytes().into()),
                        holder: core,
                        workers: pids,
                        busy: f.busy,
                        connections: f.connections,
                        kept: 0,
                        capacity: f.capacity,
                        threads: f.threads,
                        model: f.model,
                        queue: f.queue,
                        backlog: 0,
                        busy_source: super::BusySource::Processes,
                    },
                );
            }
        }
        hidden
    }

    /// Reads core `core`'s pool now; on failure counts a skip and waits [`RETRY_AFTER`].
    fn read_core(&mut self, core: i32, group: &[i32]) {
        self.cost.passenger_reads += 1;
        let instance = self.passenger.get(&core).and_then(|c| c.instance.clone());
        let now = Instant::now();
        match self.read_pool(core, instance) {
            Ok((inst, groups)) => {
                let pids = self.host_pids(core, group);
                let groups = groups
                    .into_iter()
                    .map(|g| {
                        let host = g
                            .processes
                            .iter()
                            .map(|p| pids.get(&p.pid).copied().unwrap_or(p.pid))
                            .collect();
                        (g, host)
                    })
                    .collect();
                self.passenger.insert(
                    core,
                    Core {
                        instance: Some(inst),
                        next: Some(now + READ_EVERY),
                        groups,
                    },
                );
            }
            Err(error) => {
                self.cost.passenger_skipped += 1;
                tracing::debug!(message = "Skipping a Passenger core's pool.", pid = core, %error);
                self.passenger.insert(
                    core,
                    Core {
                        instance: None,
                        next: Some(now + RETRY_AFTER),
                        groups: Vec::new(),
                    },
                );
            }
        }
    }

    fn read_pool(
        &self,
        core: i32,
        instance: Option<String>,
    ) -> Result<(String, Vec<AppGroup>), PassengerError> {
        let root = self.proc.root(core);
        let inst = match instance {
            Some(i) => i,
            None => {
                let dirs = registry_dirs(
                    self.proc.env_var(core, "PASSENGER_INSTANCE_REGISTRY_DIR")?,
                    self.proc.env_var(core, "TMPDIR")?,
                );
                find_instance(&root, &dirs, self.proc.ns_pid(core)?)?
            }
        };
        let xml = query_pool(&root, &inst)?;
        Ok((inst, parse_pool(&xml)?))
    }

    /// The core's descendants in `group` by their pid in the core's pid namespace → their pid
    /// here (empty when both are one namespace: pids are then the same).
    fn host_pids(&self, core: i32, group: &[i32]) -> HashMap<i32, i32> {
        let mut out = HashMap::new();
        if self.proc.ns_pid(core).ok() == Some(core) {
            return out;
        }
        let descends = |mut p: i32| {
            for _ in 0..8 {
                match self.procs.get(&p) {
                    Some(x) if x.ppid == core => return true,
                    Some(x) => p = x.ppid,
                    None => return false,
                }
            }
            false
        };
        for &p in group.iter().filter(|&&p| p != core && descends(p)) {
            if let Ok(n) = self.proc.ns_pid(p) {
                out.insert(n, p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = r#"<?xml version="1.0" encoding="iso-8859-1" ?>
<info version="3"><passenger_version>6.0.17</passenger_version><group_count>1</group_count><process_count>3</process_count><max>3</max><capacity_used>3</capacity_used><get_wait_list_size>0</get_wait_list_size><supergroups><supergroup><name>/srv/app</name><state>READY</state><get_wait_list_size>0</get_wait_list_size><capacity_used>3</capacity_used><group default="true"><name>/srv/app</name><component_name>/srv/app</component_name><app_root>/srv/app</app_root><app_type>ruby</app_type><environment>none</environment><enabled_process_count>3</enabled_process_count><capacity_used>3</capacity_used><get_wait_list_size>2</get_wait_list_size><disable_wait_list_size>0</disable_wait_list_size><options><app_root>/srv/app</app_root></options><processes><process><pid>41</pid><concurrency>1</concurrency><sessions>1</sessions></process><process><pid>42</pid><concurrency>1</concurrency><sessions>1</sessions></process><process><pid>43</pid><concurrency>1</concurrency><sessions>1</sessions></process></processes></group></supergroup></supergroups></info>"#;

    #[test]
    fn a_pool_xml_as_the_core_writes_it() {
        let g = parse_pool(POOL.as_bytes()).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "/srv/app");
        assert_eq!(g[0].waiting, 2);
        assert_eq!(g[0].processes.len(), 3);
        let f = g[0].figures();
        assert_eq!(
            f,
            Figures {
                workers: 3,
                busy: 3,
                connections: 3,
                capacity: 3,
                threads: Threads { n: 1, known: true },
                model: Model::Prefork,
                queue: 2,
            }
        );
    }

    #[test]
    fn concurrency_unlimited_unknown_and_many() {
        let g = |c: &[(i64, u32)]| AppGroup {
            name: "a".into(),
            waiting: 0,
            processes: c
                .iter()
                .map(|&(concurrency, sessions)| AppProcess {
                    pid: 1,
                    concurrency,
                    sessions,
                })
                .collect(),
        };
        let f = g(&[(0, 9)]).figures();
        assert_eq!((f.model, f.busy, f.connections), (Model::EventLoop, 0, 9));
        let f = g(&[(-1, 3), (1, 0)]).figures();
        assert_eq!((f.busy, f.capacity, f.threads.known), (1, 2, false));
        let f = g(&[(4, 6), (4, 1)]).figures();
        assert_eq!(
            (f.busy, f.capacity, f.threads.n, f.model),
            (5, 8, 4, Model::Threaded)
        );
        let f = g(&[]).figures();
        assert_eq!((f.workers, f.capacity, f.busy), (0, 0, 0));
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        for bad in [
            "",
            "<html>",
            "<info><supergroups><supergroup><group><get_wait_list_size>x</get_wait_list_size></group></supergroup></supergroups></info>",
            "<nope/>",
            "<!DOCTYPE info [<!ENTITY a \"b\">]><info/>",
        ] {
            assert!(parse_pool(bad.as_bytes()).is_err(), "{bad}");
        }
        // Latin-1 bytes in a name are read as Latin-1.
        let g = parse_pool(b"<info><supergroups><supergroup><group><name>caf\xe9</name><get_wait_list_size>0</get_wait_list_size></group></supergroup></supergroups></info>").unwrap();
        assert_eq!(g[0].name, "café");
        // Deep or wide documents stop at the node cap.
        let wide = format!("<info>{}</info>", "<a/>".repeat(MAX_XML_NODES as usize));
        assert!(parse_pool(wide.as_bytes()).is_err());
    }

    #[test]
    fn http_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(complete_body(ok).unwrap().unwrap(), b"abc");
        assert!(
            complete_body(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab")
                .unwrap()
                .is_none()
        );
        assert!(complete_body(b"HTTP/1.1 401 Unauthorized\r\n\r\n").is_err());
        assert!(complete_body(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(complete_body(b"\x00\x01garbage\r\n\r\n").is_err());
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_POOL_XML + 1
        );
        assert!(complete_body(huge.as_bytes()).is_err());
    }

    #[test]
    fn registry_dirs_as_passenger_status_has_them() {
        assert_eq!(registry_dirs(Some("/r".into()), Some("/t".into())), ["/r"]);
        assert_eq!(
            registry_dirs(None, Some("/t".into())),
            ["/t", "/tmp", "/var/run/passenger-instreg"]
        );
        assert_eq!(
            registry_dirs(None, Some("/tmp/".into())),
            ["/tmp/", "/var/run/passenger-instreg"]
        );
    }

    #[test]
    fn core_by_its_command_line() {
        assert!(is_core(&["Passenger core".into()]));
        assert!(!is_core(&["Passenger watchdog".into()]));
        assert!(!is_core(&[]));
    }
}
