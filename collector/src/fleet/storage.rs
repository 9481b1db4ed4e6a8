//! Pods' NFS mounts (the agent's storage source; EFS is NFSv4.1), the collector side: per pod
//! and mount, each procedure's newest window (calls/s, bytes/s, mean execute time) and what
//! names the mount (server, EFS id, volume, claim, the pod's database image). The cumulative
//! NFS counters are taken and not kept: the rules read windows.

use super::limits::Limits;
use super::otlp::{attr_or_empty, get, set_from, Attrs};
use super::store::{At, Cuts, Part};
use crate::time::rfc3339;
use headroom_signals::attr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

otlp_names! {
    pub fn takes;
    NFS_OPS_PER_SECOND, NFS_BYTES_PER_SECOND, NFS_EXECUTE_MEAN_SECONDS,
    NFS_OPS, NFS_RTT_SECONDS, NFS_EXECUTE_SECONDS, NFS_BYTES, NFS_MOUNTS_OMITTED
}

/// Procedures kept per mount (NFSv4.2 has about 70).
const MAX_OPS: usize = 96;
/// Mounts kept per node (the agent sends at most 256).
const MAX_MOUNTS_PER_NODE: usize = 256;

/// (namespace, pod, mount point)
pub type MountKey = (String, String, String);

#[derive(Debug, Clone, Default)]
pub struct Mount {
    names: Names,
    /// The newest window's end and start.
    end: u64,
    start: u64,
    ops: BTreeMap<String, Op>,
}

#[derive(Debug, Clone, Default)]
struct Names {
    workload_kind: String,
    workload: String,
    server: String,
    efs_filesystem: String,
    volume: String,
    pvc: String,
    database_image: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Op {
    ops_per_s: f64,
    bytes_per_s: f64,
    execute_ms: Option<f64>,
}

impl Part for Mount {
    type Key = MountKey;

    fn key(a: &Attrs) -> Option<MountKey> {
        Some((
            attr_or_empty(a, attr::NAMESPACE),
            get(a, attr::POD)?.to_string(),
            get(a, attr::MOUNT)?.to_string(),
        ))
    }

    fn max_age(limits: &Limits) -> Duration {
        limits.workload_history
    }

    fn max_per_node(_: &Limits) -> usize {
        MAX_MOUNTS_PER_NODE
    }

    /// Window gauges replace the last window's; counters are accepted and not kept. False
    /// when refused: no `op`, or over [`MAX_OPS`].
    fn take(&mut self, name: &str, a: &Attrs, v: f64, at: At) -> bool {
        if !matches!(
            name,
            NFS_OPS_PER_SECOND | NFS_BYTES_PER_SECOND | NFS_EXECUTE_MEAN_SECONDS
        ) {
            return true;
        }
        let Some(op) = get(a, attr::OP) else {
            return false;
        };
        if at.end > self.end {
            self.end = at.end;
            self.start = at.start;
            self.ops.clear();
        } else if at.end < self.end {
            // An older window than the one kept: nothing to change.
            return true;
        }
        if !self.ops.contains_key(op) && self.ops.len() >= MAX_OPS {
            return false;
        }
        let o = self.ops.entry(op.to_string()).or_default();
        match name {
            NFS_OPS_PER_SECOND => o.ops_per_s = v,
            NFS_BYTES_PER_SECOND => o.bytes_per_s = v,
            // s to ms at the agent's µs precision, without binary noise (0.0041 → 4.1).
            _ => o.execute_ms = Some((v * 1e6).round() / 1e3),
        }
        let n = &mut self.names;
        set_from(
            a,
            [
                (&mut n.workload_kind, attr::WORKLOAD_KIND),
                (&mut n.workload, attr::WORKLOAD),
                (&mut n.server, attr::SERVER),
                (&mut n.efs_filesystem, attr::EFS_FILESYSTEM),
                (&mut n.volume, attr::VOLUME),
                (&mut n.pvc, attr::PVC),
                (&mut n.database_image, attr::DATABASE_IMAGE),
            ],
        );
        true
    }

    fn expire(&mut self, cuts: &Cuts) -> bool {
        self.end >= cuts.silent_since
    }
}

/// One pod's NFS mount in its newest window (fleet JSON `storage[]`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MountSnapshot {
    pub namespace: String,
    pub pod: String,
    pub mount: String,
    pub workload_kind: String,
    pub workload: String,
    pub server: String,
    pub efs_filesystem: String,
    pub volume: String,
    pub pvc: String,
    pub database_image: String,
    /// The window's end (RFC 3339) and length.
    pub window_end: String,
    pub window_seconds: f64,
    /// Procedures with figures in the window, busiest first.
    pub ops: Vec<OpSnapshot>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OpSnapshot {
    pub op: String,
    pub ops_per_s: f64,
    pub bytes_per_s: f64,
    /// Mean time a caller waited for one call, ms (null without calls).
    pub execute_ms_mean: Option<f64>,
}

impl Mount {
    pub fn snapshot(&self, key: &MountKey) -> MountSnapshot {
        let n = &self.names;
        let mut ops: Vec<OpSnapshot> = self
            .ops
            .iter()
            .map(|(op, o)| OpSnapshot {
                op: op.clone(),
                ops_per_s: o.ops_per_s,
                bytes_per_s: o.bytes_per_s,
                execute_ms_mean: o.execute_ms,
            })
            .collect();
        ops.sort_by(|a, b| b.ops_per_s.total_cmp(&a.ops_per_s).then(a.op.cmp(&b.op)));
        MountSnapshot {
            namespace: key.0.clone(),
            pod: key.1.clone(),
            mount: key.2.clone(),
            workload_kind: n.workload_kind.clone(),
            workload: n.workload.clone(),
            server: n.server.clone(),
            efs_filesystem: n.efs_filesystem.clone(),
            volume: n.volume.clone(),
            pvc: n.pvc.clone(),
            database_image: n.database_image.clone(),
            window_end: rfc3339(self.end),
            window_seconds: if self.start != 0 && self.end > self.start {
                (self.end - self.start) as f64 / 1e9
            } else {
                0.0
            },
            ops,
        }
    }
}
