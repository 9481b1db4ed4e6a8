//! Kubelet-shaped cgroups: pod identity and CPU throttling from a process's cgroup (the listener
//! source), and the pod and container cgroups themselves with their CPU and memory counters (the
//! pod-use source). Pure parsers plus small readers under a configurable cgroup root; the walk
//! never follows a link and reads a bounded number of entries.
//!
//! Layouts the kubelet creates (containerd, CRI-O and dockershim spell the last part
//! differently):
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`
//!   (guaranteed pods: `kubepods-pod<uid>.slice` straight under `kubepods.slice`);
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (guaranteed: `/kubepods/pod<uid>/<id>`).

use std::path::{Path, PathBuf};

/// Pod uid and container id of a process, when it runs in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodIdentity {
    pub pod_uid: String,
    pub container: Option<String>,
}

/// One line of `/proc/PID/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub controllers: String,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?.to_string();
            let path = it.next()?.to_string();
            path.starts_with('/')
                .then_some(CgroupLine { controllers, path })
        })
        .collect()
}

/// The pod (and container) a cgroup path belongs to, in either driver's layout.
pub fn pod_of_path(path: &str) -> Option<PodIdentity> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (i, uid) = segs.iter().enumerate().find_map(|(i, s)| {
        let uid = if let Some(slice) = s.strip_suffix(".slice") {
            // kubepods-pod<uid>.slice or kubepods-<qos>-pod<uid>.slice
            let rest = slice.strip_prefix("kubepods-")?;
            let p = rest.find("pod")?;
            let qos = &rest[..p];
            if !(qos.is_empty() || qos == "burstable-" || qos == "besteffort-") {
                return None;
            }
            rest[p + 3..].replace('_', "-")
        } else {
            s.strip_prefix("pod")?.to_string()
        };
        is_uid(&uid).then_some((i, uid))
    })?;
    let container = segs.get(i + 1).and_then(|s| container_id(s));
    Some(PodIdentity {
        pod_uid: uid,
        container,
    })
}

/// The pod identity of a process from the text of its `/proc/PID/cgroup` (first line that
/// names a pod: v2's `0::` line or any v1 hierarchy).
pub fn pod_of(proc_cgroup: &str) -> Option<PodIdentity> {
    let lines = parse_proc_cgroup(proc_cgroup);
    lines
        .iter()
        .filter(|l| l.controllers.is_empty())
        .chain(lines.iter().filter(|l| !l.controllers.is_empty()))
        .find_map(|l| pod_of_path(&l.path))
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` or a bare `<id>`.
fn container_id(seg: &str) -> Option<String> {
    let s = seg.strip_suffix(".scope").unwrap_or(seg);
    let id = s.rsplit('-').next()?;
    (id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()) && !s.contains("conmon"))
        .then(|| id.to_string())
}

/// Cumulative CPU bandwidth counters of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStat {
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

/// Parses `cpu.stat`: v2 (`throttled_usec`) or v1 (`throttled_time`, ns). None without
/// `nr_throttled` (no CPU controller there).
pub fn parse_cpu_stat(text: &str) -> Option<CpuStat> {
    let mut s = CpuStat::default();
    let mut seen = false;
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        match k {
            "nr_periods" => s.nr_periods = v,
            "nr_throttled" => {
                s.nr_throttled = v;
                seen = true;
            }
            "throttled_usec" => s.throttled_usec = v,
            "throttled_time" => s.throttled_usec = v / 1000,
            _ => {}
        }
    }
    seen.then_some(s)
}

impl CpuStat {
    /// Counters gained since `earlier` (a reset — a new cgroup at the same path — gives zero).
    pub fn since(&self, earlier: &CpuStat) -> CpuStat {
        CpuStat {
            nr_periods: self.nr_periods.saturating_sub(earlier.nr_periods),
            nr_throttled: self.nr_throttled.saturating_sub(earlier.nr_throttled),
            throttled_usec: self.throttled_usec.saturating_sub(earlier.throttled_usec),
        }
    }
}

/// Where a process's `cpu.stat` may be under `root`, most specific first: the v1 hierarchy that
/// holds the `cpu` controller (`root/cpu,cpuacct/PATH`), then v2 at `root/PATH` or, on hybrid
/// machines, `root/unified/PATH`.
pub fn cpu_stat_candidates(root: &Path, proc_cgroup: &str) -> Vec<PathBuf> {
    let lines = parse_proc_cgroup(proc_cgroup);
    let rel = |p: &str| p.trim_start_matches('/').to_string();
    let mut out = Vec::new();
    for l in &lines {
        if l.controllers.split(',').any(|c| c == "cpu") {
            out.push(
                root.join(&l.controllers)
                    .join(rel(&l.path))
                    .join("cpu.stat"),
            );
        }
    }
    for l in lines.iter().filter(|l| l.controllers.is_empty()) {
        out.push(root.join(rel(&l.path)).join("cpu.stat"));
        out.push(root.join("unified").join(rel(&l.path)).join("cpu.stat"));
    }
    out
}

/// Reads the first candidate that has throttling counters.
pub fn read_cpu_stat(candidates: &[PathBuf]) -> Option<(PathBuf, CpuStat)> {
    candidates.iter().find_map(|p| {
        let s = parse_cpu_stat(&std::fs::read_to_string(p).ok()?)?;
        Some((p.clone(), s))
    })
}

pub use kept::{FdBudget, Kept};
pub use walk::{
    find_pods, read_small, read_u64, usage_usec, CgroupDirs, CgroupFiles, Found, PodCgroups,
    UsageFile, MAX_ENTRIES,
};

mod kept;
mod walk;

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text as `/proc/<pid>/cgroup` or `cpu.stat`: no panic; every line kept has a path
        /// that is absolute, as the kernel writes them.
        #[test]
        fn cgroup_and_cpu_stat_parse_any_text(t in ".{0,600}") {
            for l in parse_proc_cgroup(&t) {
                proptest::prop_assert!(l.path.starts_with('/'));
                let _ = pod_of_path(&l.path);
            }
            let _ = (pod_of(&t), parse_cpu_stat(&t));
        }
    }

    const UID: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const CID: &str = "3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";

    #[test]
    fn systemd_layout_gives_pod_and_container() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let id = pod_of(&text).unwrap();
        assert_eq!(id.pod_uid, UID);
        assert_eq!(id.container.as_deref(), Some(CID));
        // Guaranteed QoS: no QoS slice; CRI-O naming.
        let g = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/crio-{CID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(pod_of(&g).unwrap().container.as_deref(), Some(CID));
        // The pod's own slice (a pause process or the pod-level cgroup): pod, no container.
        let p = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        );
        assert_eq!(
            pod_of(&p),
            Some(PodIdentity {
                pod_uid: UID.into(),
                container: None
            })
        );
    }

    #[test]
    fn cgroupfs_layout_gives_pod_and_container() {
        let text = format!(
            "12:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n11:memory:/kubepods/burstable/pod{UID}/{CID}\n0::/\n"
        );
        let id = pod_of(&text).unwrap();
        assert_eq!(
            (id.pod_uid.as_str(), id.container.as_deref()),
            (UID, Some(CID))
        );
        let g = format!("0::/kubepods/pod{UID}/{CID}");
        assert_eq!(pod_of(&g).unwrap().pod_uid, UID);
    }

    #[test]
    fn non_pods_are_none() {
        for t in [
            "0::/",
            "0::/system.slice/containerd.service",
            "0::/user.slice/user-1000.slice/session-2.scope",
            "0::/kubepods.slice/kubepods-burstable.slice",
            "0::/kubepods/burstable/podnot-a-uid/abc",
            "garbage",
            "",
        ] {
            assert_eq!(pod_of(t), None, "{t}");
        }
    }

    #[test]
    fn cpu_stat_v1_and_v2_and_deltas() {
        let v2 = "usage_usec 100\nuser_usec 50\nsystem_usec 50\nnr_periods 10\nnr_throttled 3\nthrottled_usec 4500\n";
        let a = parse_cpu_stat(v2).unwrap();
        assert_eq!(
            a,
            CpuStat {
                nr_periods: 10,
                nr_throttled: 3,
                throttled_usec: 4500
            }
        );
        let v1 = "nr_periods 25\nnr_throttled 7\nthrottled_time 9000000\n";
        let b = parse_cpu_stat(v1).unwrap();
        assert_eq!(
            b,
            CpuStat {
                nr_periods: 25,
                nr_throttled: 7,
                throttled_usec: 9000
            }
        );
        assert_eq!(
            b.since(&a),
            CpuStat {
                nr_periods: 15,
                nr_throttled: 4,
                throttled_usec: 4500
            }
        );
        assert_eq!(a.since(&b), CpuStat::default());
        assert_eq!(parse_cpu_stat("usage_usec 5\n"), None);
    }

    #[test]
    fn cpu_stat_is_found_under_the_root_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let p = dir.path().join(v2.trim_end().trim_start_matches("0::/"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cpu.stat"),
            "nr_periods 4\nnr_throttled 2\nthrottled_usec 30\n",
        )
        .unwrap();
        let (found, s) = read_cpu_stat(&cpu_stat_candidates(dir.path(), &v2)).unwrap();
        assert_eq!(found, p.join("cpu.stat"));
        assert_eq!(s.nr_throttled, 2);

        let v1 = format!("4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n0::/\n");
        let q = dir
            .path()
            .join(format!("cpu,cpuacct/kubepods/burstable/pod{UID}/{CID}"));
        std::fs::create_dir_all(&q).unwrap();
        std::fs::write(
            q.join("cpu.stat"),
            "nr_periods 9\nnr_throttled 1\nthrottled_time 2000\n",
        )
        .unwrap();
        let (found, s) = read_cpu_stat(&cpu_stat_candidates(dir.path(), &v1)).unwrap();
        assert_eq!(found, q.join("cpu.stat"));
        assert_eq!(s.throttled_usec, 2);
        assert!(read_cpu_stat(&cpu_stat_candidates(dir.path(), "0::/nope\n")).is_none());
    }
}
