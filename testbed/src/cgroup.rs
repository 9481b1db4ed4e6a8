//! A kubelet-shaped container cgroup made for real on this machine: the systemd driver's path in
//! cgroup v2 and, where the CPU controller lives in cgroup v1 (hybrid machines), the cgroupfs
//! driver's path there, both for the same pod uid and container id. Removed on drop.

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
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup/unified` (hybrid) or `/sys/fs/cgroup`.
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").is_file())
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
        };
        cg.mkdirs(&root, &v2)?;
        if let Some(r) = v1_cpu_root() {
            let leaf = r.join(format!("kubepods/burstable/pod{pod_uid}/{container}"));
            cg.mkdirs(&r, &leaf)?;
            cg.v1_cpu = Some(leaf);
        } else {
            // Pure v2: the cpu controller must be enabled down to the leaf's parent.
            let mut p = root.clone();
            for c in v2.strip_prefix(&root)?.components() {
                std::fs::write(p.join("cgroup.subtree_control"), "+cpu")?;
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
        if let Some(v1) = &self.v1_cpu {
            std::fs::write(v1.join("cgroup.procs"), pid.to_string())?;
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

impl Drop for KubeCgroup {
    fn drop(&mut self) {
        // Processes are gone once their guards have reaped them; rmdir leaf first.
        for p in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(p).is_err() && p.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
