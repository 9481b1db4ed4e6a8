//! The pod and container cgroups themselves, found by walking the kubelet's trees under the
//! cgroup root in every hierarchy that has them: v2 (`ROOT` or, hybrid, `ROOT/unified`) and the
//! v1 `cpu`, `cpuacct` (or joint `cpu,cpuacct`) and `memory` hierarchies. Only the kubelet's
//! own shapes are entered (`kubepods[.slice]`, its QoS level, pod, container), links are never
//! followed, at most [`MAX_ENTRIES`] entries of one directory are read, and pods and containers
//! beyond the caps are counted, not kept.

use super::pod_of_path;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Most entries read from one cgroup directory (a kubelet's pod level holds one per pod).
pub const MAX_ENTRIES: usize = 4096;

/// Most bytes read from one cgroup file (`cpu.stat` is a few hundred).
const MAX_FILE: u64 = 8192;

/// One pod's or container's cgroup directory in each hierarchy that has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    pub v2: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
    pub v1_cpuacct: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
}

/// Where a cgroup's cumulative CPU time is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageFile {
    /// v2 `cpu.stat`, `usage_usec` (kept by the kernel whether or not the cpu controller is on).
    V2(PathBuf),
    /// v1 `cpuacct.usage`, ns.
    V1(PathBuf),
}

impl UsageFile {
    /// CPU time used since the cgroup was made, µs.
    pub fn read_usec(&self) -> Option<u64> {
        self.parse_usec(&read_small(self.path())?)
    }

    /// The file's text as µs used.
    pub fn parse_usec(&self, text: &str) -> Option<u64> {
        match self {
            UsageFile::V2(_) => usage_usec(text),
            UsageFile::V1(_) => Some(text.trim().parse::<u64>().ok()? / 1000),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            UsageFile::V2(p) | UsageFile::V1(p) => p,
        }
    }
}

/// The files one cgroup's figures are read from, chosen once when it is found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupFiles {
    pub usage: Option<UsageFile>,
    /// v2 `memory.current`, else v1 `memory.usage_in_bytes`.
    pub memory_current: Option<PathBuf>,
    /// v2 `memory.peak`, else v1 `memory.max_usage_in_bytes`: highest since the cgroup was made.
    pub memory_peak: Option<PathBuf>,
    /// The `cpu.stat` with throttling counters: v1 `cpu` hierarchy, else v2.
    pub throttling: Option<PathBuf>,
}

impl CgroupDirs {
    /// Picks the files to read: CPU time from v1 `cpuacct.usage` where a hybrid machine has
    /// it (one number; a re-read costs ≈ 0.1 µs against ≈ 1 µs for v2 `cpu.stat`, which
    /// flushes the kernel's per-CPU statistics first: benches/README.md), else v2; memory
    /// from v2 where the file exists.
    pub fn files(&self) -> CgroupFiles {
        let in_dir =
            |d: &Option<PathBuf>, f: &str| d.as_ref().map(|d| d.join(f)).filter(|p| p.is_file());
        let v2_stat = in_dir(&self.v2, "cpu.stat");
        let usage = in_dir(&self.v1_cpuacct, "cpuacct.usage")
            .or_else(|| in_dir(&self.v1_cpu, "cpuacct.usage"))
            .filter(|p| read_u64(p).is_some())
            .map(UsageFile::V1)
            .or_else(|| {
                v2_stat
                    .clone()
                    .filter(|p| read_small(p).and_then(|t| usage_usec(&t)).is_some())
                    .map(UsageFile::V2)
            });
        let throttling = in_dir(&self.v1_cpu, "cpu.stat").or(v2_stat).filter(|p| {
            read_small(p)
                .and_then(|t| super::parse_cpu_stat(&t))
                .is_some()
        });
        CgroupFiles {
            usage,
            memory_current: in_dir(&self.v2, "memory.current")
                .or_else(|| in_dir(&self.v1_memory, "memory.usage_in_bytes")),
            memory_peak: in_dir(&self.v2, "memory.peak")
                .or_else(|| in_dir(&self.v1_memory, "memory.max_usage_in_bytes")),
            throttling,
        }
    }
}

/// A pod's cgroups: the pod level and its containers (by container id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodCgroups {
    pub dirs: CgroupDirs,
    pub containers: BTreeMap<String, CgroupDirs>,
}

/// What one walk found, and how many pods and containers the caps left out.
#[derive(Debug, Default)]
pub struct Found {
    pub pods: BTreeMap<String, PodCgroups>,
    /// The kubelet's own top cgroup (`kubepods[.slice]`) in each hierarchy: every pod's CPU
    /// time summed by the kernel, one file for the node's pod CPU.
    pub node: CgroupDirs,
    pub pods_cut: u64,
    pub containers_cut: u64,
}

#[derive(Clone, Copy)]
enum Hierarchy {
    V2,
    Cpu,
    Acct,
    CpuAcct,
    Memory,
}

impl Hierarchy {
    fn set(self, d: &mut CgroupDirs, p: PathBuf) {
        let slots: &mut [&mut Option<PathBuf>] = match self {
            Hierarchy::V2 => &mut [&mut d.v2],
            Hierarchy::Cpu => &mut [&mut d.v1_cpu],
            Hierarchy::Acct => &mut [&mut d.v1_cpuacct],
            Hierarchy::CpuAcct => &mut [&mut d.v1_cpu, &mut d.v1_cpuacct],
            Hierarchy::Memory => &mut [&mut d.v1_memory],
        };
        for s in slots {
            s.get_or_insert_with(|| p.clone());
        }
    }
}

/// Every pod cgroup under `root` (at most `max_pods` pods, `max_containers` containers each;
/// the rest counted).
pub fn find_pods(root: &Path, max_pods: usize, max_containers: usize) -> Found {
    let mut bases = vec![(root.join("unified"), Hierarchy::V2)];
    if root.join("cgroup.controllers").is_file() {
        bases.insert(0, (root.to_path_buf(), Hierarchy::V2));
    }
    bases.extend([
        (root.join("cpu,cpuacct"), Hierarchy::CpuAcct),
        (root.join("cpu"), Hierarchy::Cpu),
        (root.join("cpuacct"), Hierarchy::Acct),
        (root.join("memory"), Hierarchy::Memory),
    ]);
    let mut w = Walk {
        found: Found::default(),
        cut_pods: HashSet::new(),
        cut_containers: HashSet::new(),
        max_pods,
        max_containers,
    };
    for (base, h) in bases {
        for top in ["kubepods.slice", "kubepods"] {
            let dir = base.join(top);
            if dir.is_dir() {
                h.set(&mut w.found.node, dir.clone());
                w.level(&dir, &format!("/{top}"), h, 0);
            }
        }
    }
    w.found.pods_cut = w.cut_pods.len() as u64;
    w.found.containers_cut = w.cut_containers.len() as u64;
    w.found
}

struct Walk {
    found: Found,
    cut_pods: HashSet<String>,
    cut_containers: HashSet<(String, String)>,
    max_pods: usize,
    max_containers: usize,
}

impl Walk {
    /// `dir` is `kubepods[.slice]` (depth 0) or a QoS level under it (depth 1).
    fn level(&mut self, dir: &Path, rel: &str, h: Hierarchy, depth: u8) {
        for name in subdirs(dir) {
            let rel = format!("{rel}/{name}");
            match pod_of_path(&rel) {
                Some(id) if id.container.is_none() => {
                    self.pod(&dir.join(&name), &rel, id.pod_uid, h)
                }
                Some(_) => {}
                None if depth == 0 && is_qos(&name) => self.level(&dir.join(&name), &rel, h, 1),
                None => {}
            }
        }
    }

    fn pod(&mut self, dir: &Path, rel: &str, uid: String, h: Hierarchy) {
        if !self.found.pods.contains_key(&uid) && self.found.pods.len() >= self.max_pods {
            self.cut_pods.insert(uid);
            return;
        }
        let pod = self.found.pods.entry(uid.clone()).or_default();
        h.set(&mut pod.dirs, dir.to_path_buf());
        for name in subdirs(dir) {
            let Some(cid) = pod_of_path(&format!("{rel}/{name}")).and_then(|i| i.container) else {
                continue;
            };
            if !pod.containers.contains_key(&cid) && pod.containers.len() >= self.max_containers {
                self.cut_containers.insert((uid.clone(), cid));
                continue;
            }
            h.set(pod.containers.entry(cid).or_default(), dir.join(&name));
        }
    }
}

/// The QoS levels of both drivers.
fn is_qos(name: &str) -> bool {
    matches!(
        name,
        "burstable" | "besteffort" | "kubepods-burstable.slice" | "kubepods-besteffort.slice"
    )
}

/// Names of the real directories (never links) in `dir`, at most [`MAX_ENTRIES`] entries read.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.take(MAX_ENTRIES)
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// A cgroup file's text, at most 8 KiB.
pub fn read_small(p: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(MAX_FILE)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// A file holding one number (`memory.current`, `cpuacct.usage`); `max` is None.
pub fn read_u64(p: &Path) -> Option<u64> {
    read_small(p)?.trim().parse().ok()
}

/// `usage_usec` of a v2 `cpu.stat`.
pub fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const UID2: &str = "1f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const CID: &str = "3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";

    fn file(p: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::write(p.join(name), text).unwrap();
    }

    /// A hybrid machine's tree: v2 (unified, usage only), v1 cpu (cgroupfs driver) with
    /// throttling, cpuacct and memory; a guaranteed pod in v2 alone; a link and a non-pod
    /// directory that must not be entered.
    #[test]
    fn finds_pods_and_containers_in_every_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let under = UID.replace('-', "_");
        let v2pod = r.join(format!(
            "unified/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{under}.slice"
        ));
        let v2c = v2pod.join(format!("cri-containerd-{CID}.scope"));
        file(&v2pod, "cpu.stat", "usage_usec 10\n");
        file(&v2c, "cpu.stat", "usage_usec 7\nuser_usec 7\n");
        let v1 = |h: &str| r.join(format!("{h}/kubepods/burstable/pod{UID}/{CID}"));
        file(
            &v1("cpu"),
            "cpu.stat",
            "nr_periods 1\nnr_throttled 0\nthrottled_time 0\n",
        );
        file(&v1("cpuacct"), "cpuacct.usage", "5000\n");
        file(&v1("memory"), "memory.usage_in_bytes", "4096\n");
        file(&v1("memory"), "memory.max_usage_in_bytes", "8192\n");
        let g = r.join(format!(
            "unified/kubepods.slice/kubepods-pod{}.slice",
            UID2.replace('-', "_")
        ));
        file(&g, "cpu.stat", "usage_usec 3\n");
        std::fs::create_dir_all(r.join("unified/kubepods.slice/system.slice/x")).unwrap();
        std::os::unix::fs::symlink(&v2pod, r.join("cpu/kubepods/burstable/linked")).unwrap();

        let f = find_pods(r, 10, 10);
        assert_eq!(f.pods.len(), 2);
        let p = &f.pods[UID];
        assert_eq!(p.dirs.v2.as_deref(), Some(v2pod.as_path()));
        let c = &p.containers[CID];
        assert_eq!(c.v2.as_deref(), Some(v2c.as_path()));
        assert_eq!(c.v1_cpu, Some(v1("cpu")));
        assert_eq!(c.v1_memory, Some(v1("memory")));
        let files = c.files();
        assert_eq!(
            files.usage.as_ref().unwrap().read_usec(),
            Some(5),
            "v1 cpuacct.usage (ns) first: the cheaper read"
        );
        assert_eq!(read_u64(files.memory_current.as_ref().unwrap()), Some(4096));
        assert_eq!(read_u64(files.memory_peak.as_ref().unwrap()), Some(8192));
        assert_eq!(files.throttling, Some(v1("cpu").join("cpu.stat")));
        // Without v1 cpuacct: v2 cpu.stat's usage_usec.
        let v2only = CgroupDirs {
            v1_cpu: None,
            v1_cpuacct: None,
            ..c.clone()
        };
        assert_eq!(v2only.files().usage.unwrap().read_usec(), Some(7));
        assert!(f.pods[UID2].containers.is_empty());
        // The kubelet's top cgroup in each hierarchy: the node's pod CPU from the same file
        // kind as the pods' (v1 cpuacct here).
        file(&r.join("cpuacct/kubepods"), "cpuacct.usage", "9000000\n");
        assert_eq!(f.node.v2, Some(r.join("unified/kubepods.slice")));
        assert_eq!(f.node.v1_cpuacct, Some(r.join("cpuacct/kubepods")));
        assert_eq!(f.node.v1_memory, Some(r.join("memory/kubepods")));
        assert_eq!(f.node.files().usage.unwrap().read_usec(), Some(9000));
        // Caps: what is left out is counted once however many hierarchies show it (a cut
        // pod's containers are in the pod's count).
        let f = find_pods(r, 2, 0);
        assert_eq!((f.pods.len(), f.pods_cut, f.containers_cut), (2, 0, 1));
        let f = find_pods(r, 1, 16);
        assert_eq!((f.pods.len(), f.pods_cut), (1, 1));
    }

    #[test]
    fn usage_usec_parses_v2_only() {
        assert_eq!(usage_usec("usage_usec 42\nuser_usec 1\n"), Some(42));
        assert_eq!(usage_usec("nr_periods 1\nthrottled_time 5\n"), None);
        assert_eq!(usage_usec("usage_usec x\n"), None);
    }
}
