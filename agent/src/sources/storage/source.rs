//! The storage source: every pod's NFS mounts through the host's `/proc/PID/mountstats`, one
//! read per mount namespace (the first pod process seen in it), bounded; deltas per window.
//! The host's own mount namespace (`PID 1`) is read once per window too: the kubelet's mount
//! of each volume under `/var/lib/kubelet/pods/UID/volumes/PLUGIN/NAME` names its volume.

use super::mountstats::{self, NfsMount, OpCounters};
use super::report::{window, StorageMount, StoragePod};
use crate::report::Report;
use crate::sources::{Source, Window};
use crate::sys::procfs::ProcRoot;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Most bytes of one mountstats read (a pod with thousands of mounts prints ~100 bytes each;
/// an NFS mount ~6 KiB).
pub const MAX_READ: usize = 4 << 20;
/// Most mount namespaces read per window.
pub const MAX_NAMESPACES: usize = 4096;
/// Most mounts one report carries (the rest counted in `storage_omitted`).
pub const MAX_REPORTED: usize = 256;
/// Most NFS mounts one scan keeps over all namespaces (and so the baselines kept between
/// windows); namespaces past it are not read.
pub const MAX_SEEN: usize = 2048;

/// Pod uid + device: one mount of one pod (containers of a pod that mount the
/// same volume share its counters, so the first container's mount point stands for them).
type Key = (String, String);

pub struct Storage {
    proc: ProcRoot,
    /// Cumulative counters at the previous window's end.
    prev: HashMap<Key, Vec<OpCounters>>,
}

/// One pod's NFS mount as read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub pod_uid: String,
    pub mount: NfsMount,
}

impl Storage {
    /// Reads once so that the first window has a baseline.
    pub fn start(proc_root: PathBuf) -> Storage {
        let mut s = Storage {
            proc: ProcRoot::new(proc_root),
            prev: HashMap::new(),
        };
        let (seen, _) = scan(&s.proc);
        for x in seen {
            s.prev
                .insert((x.pod_uid, x.mount.device.clone()), x.mount.ops);
        }
        s
    }

    /// Pure step of [`Source::fill`]: the report section of what was read.
    pub fn section(
        &mut self,
        seen: Vec<Seen>,
        volumes: &HashMap<(String, String), String>,
        seconds: f64,
    ) -> (Vec<StorageMount>, usize) {
        let mut next = HashMap::new();
        let mut out = Vec::new();
        let mut omitted = 0;
        for x in seen {
            let key = (x.pod_uid.clone(), x.mount.device.clone());
            if next.contains_key(&key) {
                continue;
            }
            // A mount younger than the window began at zero inside it.
            let zero = Vec::new();
            let before = match self.prev.get(&key) {
                Some(p) => Some(p.as_slice()),
                None if x.mount.age_seconds.is_some_and(|a| (a as f64) <= seconds) => {
                    Some(zero.as_slice())
                }
                None => None,
            };
            if out.len() < MAX_REPORTED {
                let mut m = window(&x.mount, before, seconds);
                m.volume = volumes.get(&key).cloned();
                m.pod = Some(StoragePod {
                    namespace: None,
                    name: None,
                    uid: x.pod_uid.clone(),
                });
                out.push(m);
            } else {
                omitted += 1;
            }
            next.insert(key, x.mount.ops);
        }
        self.prev = next;
        (out, omitted)
    }
}

impl Source for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn fill(&mut self, w: Window, report: &mut Report) {
        let (seen, cut) = scan(&self.proc);
        let volumes = host_volumes(&self.proc);
        let seconds = (w.end_ns.saturating_sub(w.start_ns)) as f64 / 1e9;
        let (mounts, omitted) = self.section(seen, &volumes, seconds);
        report.storage = mounts;
        report.storage_omitted = omitted + cut;
    }
}

/// Every pod's NFS mounts, one mountstats read per mount namespace; with the mounts the
/// bounds left out.
pub fn scan(proc: &ProcRoot) -> (Vec<Seen>, usize) {
    let mut seen = Vec::new();
    let mut omitted = 0;
    let mut namespaces = HashSet::new();
    let Ok(pids) = proc.pids() else {
        return (seen, 0);
    };
    for pid in pids {
        if seen.len() >= MAX_SEEN {
            break;
        }
        let Ok(ns) = proc.mntns(pid) else { continue };
        if namespaces.contains(&ns) || namespaces.len() >= MAX_NAMESPACES {
            continue;
        }
        let Some(uid) = proc
            .cgroup(pid)
            .ok()
            .and_then(|c| crate::sources::listeners::cgroup::pod_of(&c))
            .map(|p| p.pod_uid)
        else {
            continue;
        };
        namespaces.insert(ns);
        let Ok(text) = proc.mountstats(pid, MAX_READ) else {
            continue;
        };
        let p = parse_bounded(&text);
        let room = MAX_SEEN - seen.len();
        omitted += p.mounts_omitted + p.mounts.len().saturating_sub(room);
        seen.extend(p.mounts.into_iter().take(room).map(|mount| Seen {
            pod_uid: uid.clone(),
            mount,
        }));
    }
    (seen, omitted)
}

/// Parses a read that may have stopped at [`MAX_READ`]: then its last mount may be cut short
/// and is left out (counted as omitted).
pub fn parse_bounded(text: &str) -> mountstats::Parsed {
    let mut p = mountstats::parse(text);
    if text.len() >= MAX_READ && p.mounts.pop().is_some() {
        p.mounts_omitted += 1;
    }
    p
}

/// (pod uid, device) → the kubelet's volume directory name, from the host's mounts.
pub fn host_volumes(proc: &ProcRoot) -> HashMap<(String, String), String> {
    let Ok(text) = proc.mountstats(1, MAX_READ) else {
        return HashMap::new();
    };
    volumes_of(&parse_bounded(&text).mounts)
}

/// Pure part of [`host_volumes`].
pub fn volumes_of(mounts: &[NfsMount]) -> HashMap<(String, String), String> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = m.mount_point.split("/pods/").nth(1)?;
            let mut parts = rest.split('/');
            let uid = parts.next()?;
            (parts.next()? == "volumes").then_some(())?;
            let _plugin = parts.next()?;
            let name = parts.next()?;
            Some(((uid.to_string(), m.device.clone()), name.to_string()))
        })
        .collect()
}
