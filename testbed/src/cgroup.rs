//! A kubelet-shaped container cgroup made for real on this machine: the systemd driver's path in
//! cgroup v2 and, where the CPU controller lives in cgroup v1 (hybrid machines), the cgroupfs
//! driver's path there (and in the v1 `cpuacct` and `memory` hierarchies where those are mounted
//! apart), all for the same pod uid and container id. Removed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct KubeCgroup {
    pub pod_uid: String,
    pub container: String,
    /// Leaf directories, created in order (each with the ancestors listed before it).
    created: Vec<PathBuf>,
    /// The cgroup v2 leaf.
    pub v2: PathBuf,
    /// The cgroup v1 `cpu` leaf, on hybrid machines.
    pub v1_cpu: Option<PathBuf>,
    /// The cgroup v1 `cpuacct` leaf, where that hierarchy is mounted apart from `cpu`.
    pub v1_cpuacct: Option<PathBuf>,
    /// The cgroup v1 `memory` leaf, on hybrid machines.
    pub v1_memory: Option<PathBuf>,
    /// CPU weights [`KubeCgroup::favour`] changed, with their old values (restored on drop).
    weights: Vec<(PathBuf, String)>,
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup/unified` (hybrid) or `/sys/fs/cgroup`.
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").is_file())
}

fn v1_memory_root() -> Option<PathBuf> {
    Some(PathBuf::from("/sys/fs/cgroup/memory"))
        .filter(|p| p.join("memory.usage_in_bytes").is_file())
}

/// A separate v1 `cpuacct` mount (where `cpu` and `cpuacct` are not co-mounted).
fn v1_cpuacct_root() -> Option<PathBuf> {
    Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        .filter(|p| p.join("cpuacct.usage").is_file() && !p.join("cpu.cfs_quota_us").exists())
}

fn v1_cpu_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cpu.cfs_quota_us").is_file())
}

impl KubeCgroup {
    /// Creates the burstable-QoS paths for a pod uid and a 64-hex container id.
    pub fn new(pod_uid: &str, container: &str) -> anyhow::Result<KubeCgroup> {
        let root = v2_root().ok_or_else(|| anyhow::anyhow!("no cgroup v2 mount"))?;
        let under = pod_uid.replace('-', "_");
        let v2 = root.join(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{under}.slice/cri-containerd-{container}.scope"
        ));
        let mut cg = KubeCgroup {
            pod_uid: pod_uid.into(),
            container: container.into(),
            created: Vec::new(),
            v2: v2.clone(),
            v1_cpu: None,
            v1_cpuacct: None,
            v1_memory: None,
            weights: Vec::new(),
        };
        cg.mkdirs(&root, &v2)?;
        if let Some(r) = v1_cpu_root() {
            let leaf = r.join(format!("kubepods/burstable/pod{pod_uid}/{container}"));
            cg.mkdirs(&r, &leaf)?;
            cg.v1_cpu = Some(leaf);
            // The kubelet makes its cgroups in every v1 hierarchy, cpuacct too.
            if let Some(a) = v1_cpuacct_root() {
                let leaf = a.join(format!("kubepods/burstable/pod{pod_uid}/{container}"));
                cg.mkdirs(&a, &leaf)?;
                cg.v1_cpuacct = Some(leaf);
            }
            if let Some(m) = v1_memory_root() {
                let leaf = m.join(format!("kubepods/burstable/pod{pod_uid}/{container}"));
                cg.mkdirs(&m, &leaf)?;
                cg.v1_memory = Some(leaf);
            }
        } else {
            // Pure v2: the cpu (and memory) controllers must be enabled down to the leaf's parent.
            let mut p = root.clone();
            for c in v2.strip_prefix(&root)?.components() {
                std::fs::write(p.join("cgroup.subtree_control"), "+cpu")?;
                // Memory figures too where the controller exists (pod-use tests).
                let _ = std::fs::write(p.join("cgroup.subtree_control"), "+memory");
                p = p.join(c);
            }
        }
        Ok(cg)
    }

    fn mkdirs(&mut self, root: &Path, leaf: &Path) -> anyhow::Result<()> {
        let mut p = root.to_path_buf();
        for c in leaf.strip_prefix(root)?.components() {
            p = p.join(c);
            if !p.exists() {
                std::fs::create_dir(&p)?;
                self.created.push(p.clone());
            }
        }
        Ok(())
    }

    /// Moves a process into the container's cgroups.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.v2.join("cgroup.procs"), pid.to_string())?;
        for v1 in [&self.v1_cpu, &self.v1_cpuacct, &self.v1_memory]
            .into_iter()
            .flatten()
        {
            std::fs::write(v1.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Gives the container and every kubepods level above it the highest CPU weight (v1
    /// `cpu.shares`, v2 `cpu.weight`), so that on a machine busy with other work its processes
    /// still get what their quota allows; the old weights come back on drop. A level another
    /// live cgroup already raised (kubepods, the QoS level) is left to that one to restore, so
    /// the machine ends as it was whatever the order of drops (a test still running then loses
    /// the raised ancestors it shared).
    pub fn favour(&mut self) -> anyhow::Result<()> {
        let (leaf, root, file, top) = match (&self.v1_cpu, v1_cpu_root()) {
            (Some(l), Some(r)) => (l.clone(), r, "cpu.shares", "262144"),
            _ => (
                self.v2.clone(),
                v2_root().ok_or_else(|| anyhow::anyhow!("no cgroup v2 mount"))?,
                "cpu.weight",
                "10000",
            ),
        };
        for dir in leaf.ancestors().take_while(|d| *d != root) {
            let p = dir.join(file);
            let old = std::fs::read_to_string(&p)?.trim().to_string();
            if old != top {
                std::fs::write(&p, top)?;
                self.weights.push((p, old));
            }
        }
        Ok(())
    }

    /// Caps CPU at `quota_us` per 100 ms period.
    pub fn cpu_quota(&self, quota_us: u64) -> anyhow::Result<()> {
        match &self.v1_cpu {
            Some(v1) => {
                std::fs::write(v1.join("cpu.cfs_period_us"), "100000")?;
                std::fs::write(v1.join("cpu.cfs_quota_us"), quota_us.to_string())?;
            }
            None => std::fs::write(self.v2.join("cpu.max"), format!("{quota_us} 100000"))?,
        }
        Ok(())
    }

    /// The cpu.stat that carries throttling: (nr_periods, nr_throttled, throttled µs).
    pub fn cpu_stat(&self) -> anyhow::Result<(u64, u64, u64)> {
        let p = self.v1_cpu.as_ref().unwrap_or(&self.v2).join("cpu.stat");
        let text = std::fs::read_to_string(p)?;
        let get = |k: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
                .unwrap_or(0)
        };
        let usec = if self.v1_cpu.is_some() {
            get("throttled_time ") / 1000
        } else {
            get("throttled_usec ")
        };
        Ok((get("nr_periods "), get("nr_throttled "), usec))
    }
}

impl KubeCgroup {
    /// CPU time the container's cgroup used, µs: cgroup v2 `cpu.stat` `usage_usec`.
    pub fn usage_usec(&self) -> anyhow::Result<u64> {
        let text = std::fs::read_to_string(self.v2.join("cpu.stat"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no usage_usec in cpu.stat"))
    }

    /// The memory the container's cgroup holds: v2 `memory.current`, else v1
    /// `memory.usage_in_bytes`.
    pub fn memory_current(&self) -> anyhow::Result<u64> {
        let v2 = self.v2.join("memory.current");
        let p = match &self.v1_memory {
            Some(m) if !v2.is_file() => m.join("memory.usage_in_bytes"),
            _ => v2,
        };
        Ok(std::fs::read_to_string(p)?.trim().parse()?)
    }

    /// The kernel's highest memory since the cgroup was made: v2 `memory.peak`, else v1
    /// `memory.max_usage_in_bytes`.
    pub fn memory_peak(&self) -> anyhow::Result<u64> {
        let v2 = self.v2.join("memory.peak");
        let p = match &self.v1_memory {
            Some(m) if !v2.is_file() => m.join("memory.max_usage_in_bytes"),
            _ => v2,
        };
        Ok(std::fs::read_to_string(p)?.trim().parse()?)
    }
}

impl Drop for KubeCgroup {
    fn drop(&mut self) {
        for (p, old) in self.weights.iter().rev() {
            let _ = std::fs::write(p, old);
        }
        // Processes are gone once their guards have reaped them; rmdir leaf first.
        for p in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(p).is_err() && p.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
