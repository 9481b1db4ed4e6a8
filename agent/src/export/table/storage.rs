//! The network-storage section of the table: per pod and NFS mount, its busiest procedures.

use crate::sources::storage::StorageMount;

/// Procedures shown per mount.
const TOP_OPS: usize = 6;

pub fn table(mounts: &[StorageMount]) -> String {
    if mounts.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nNetwork storage (NFS/EFS, per pod and mount):\n");
    for m in mounts {
        let pod = m
            .pod
            .as_ref()
            .map(|p| match (&p.namespace, &p.name) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                _ => p.uid.clone(),
            })
            .unwrap_or_else(|| "-".into());
        let efs = m
            .efs_filesystem_id
            .as_deref()
            .map(|id| format!(" ({id})"))
            .unwrap_or_default();
        out += &format!(
            "  {pod} {} on {}{efs} NFS {}: {:.1} ops/s\n",
            m.mount_point,
            m.server,
            m.version.as_deref().unwrap_or("?"),
            m.ops_per_s
        );
        if !m.measured {
            out += "    first sight: figures from the next window\n";
            continue;
        }
        for o in m.by_op.iter().filter(|o| o.ops > 0).take(TOP_OPS) {
            let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            out += &format!(
                "    {:<12} {:>10.1}/s  rtt {:>8} ms  execute {:>8} ms\n",
                o.op,
                o.ops_per_s,
                ms(o.rtt_ms_mean),
                ms(o.execute_ms_mean)
            );
        }
    }
    out
}
