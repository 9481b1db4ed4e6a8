//! The storage report section (`storage[]`): per pod and NFS mount, each procedure's window
//! figures from the deltas of the kernel's cumulative counters. Field names are a public
//! contract (docs/reference.md).

use super::mountstats::{NfsMount, OpCounters};
use serde::Serialize;

/// A pod as the storage source knows it: the uid from the cgroup, namespace and name once the
/// pod list is known (the enrichment step).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoragePod {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
}

/// One NFS mount of one pod over one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StorageMount {
    pub pod: Option<StoragePod>,
    pub workload: Option<crate::pod::Workload>,
    /// Where the pod's container sees it.
    pub mount_point: String,
    /// `server:/export`.
    pub device: String,
    /// `nfs` or `nfs4`.
    pub fstype: String,
    /// NFS version (`vers=`): `3`, `4.1`…
    pub version: Option<String>,
    pub server: String,
    /// `fs-…` when the server is an EFS DNS name.
    pub efs_filesystem_id: Option<String>,
    /// The kubelet's volume directory name for this mount (the PersistentVolume's name for
    /// CSI and PV-backed volumes; the pod's volume name for inline `nfs:` volumes), from the
    /// host's mount of it under /var/lib/kubelet/pods/UID/volumes/.
    pub volume: Option<String>,
    /// The pod spec's volume mounted at `mount_point`, and the PersistentVolumeClaim behind
    /// it (null without one or without the pod list).
    pub pod_volume: Option<String>,
    pub pvc: Option<String>,
    /// The first of the pod's container images that is a database server (mysql, postgres,
    /// mongo, …), by its repository name.
    pub database_image: Option<String>,
    /// False on the mount's first sight when it is older than the window: no deltas yet.
    pub measured: bool,
    /// Every procedure summed over the window.
    pub ops: u64,
    pub ops_per_s: f64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Procedures with any call since the mount, busiest in the window first.
    pub by_op: Vec<OpWindow>,
    /// Cumulative kernel counters (for Prometheus counters), not serialized.
    #[serde(skip)]
    pub totals: Vec<OpCounters>,
}

/// One procedure over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpWindow {
    pub op: String,
    pub ops: u64,
    pub ops_per_s: f64,
    /// Mean time from transmission to reply, ms (null without calls in the window).
    pub rtt_ms_mean: Option<f64>,
    /// Mean time the caller waited, queueing and retransmissions included, ms.
    pub execute_ms_mean: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Both directions per second.
    pub bytes_per_s: f64,
    pub timeouts: u64,
    /// Null on kernels before 5.3 (RPC iostats 1.0).
    pub errors: Option<u64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Pure: the window of `now` against `before` (None: no baseline, `measured` false). A
/// counter that went down (the mount was replaced under the same name) counts from zero.
pub fn window(now: &NfsMount, before: Option<&[OpCounters]>, seconds: f64) -> StorageMount {
    let seconds = seconds.max(1e-9);
    let mut by_op: Vec<OpWindow> = now
        .ops
        .iter()
        .filter(|o| o.ops > 0)
        .map(|o| {
            let prev = before.and_then(|b| b.iter().find(|p| p.op == o.op));
            let reset = prev.is_some_and(|p| p.ops > o.ops);
            let d = |f: fn(&OpCounters) -> u64| match prev {
                Some(p) if !reset => f(o).saturating_sub(f(p)),
                _ if before.is_some() => f(o),
                _ => 0,
            };
            let ops = d(|c| c.ops);
            let mean = |total: u64| (ops > 0).then(|| round3(total as f64 / ops as f64));
            OpWindow {
                op: o.op.clone(),
                ops,
                ops_per_s: round3(ops as f64 / seconds),
                rtt_ms_mean: mean(d(|c| c.rtt_ms)),
                execute_ms_mean: mean(d(|c| c.execute_ms)),
                bytes_sent: d(|c| c.bytes_sent),
                bytes_recv: d(|c| c.bytes_recv),
                bytes_per_s: (((d(|c| c.bytes_sent) + d(|c| c.bytes_recv)) as f64 / seconds)
                    * 10.0)
                    .round()
                    / 10.0,
                timeouts: d(|c| c.timeouts),
                errors: o.errors.map(|_| d(|c| c.errors.unwrap_or(0))),
            }
        })
        .collect();
    by_op.sort_by(|a, b| b.ops.cmp(&a.ops).then_with(|| a.op.cmp(&b.op)));
    let ops = by_op.iter().map(|o| o.ops).sum();
    StorageMount {
        pod: None,
        workload: None,
        mount_point: now.mount_point.clone(),
        device: now.device.clone(),
        fstype: now.fstype.clone(),
        version: now.version.clone(),
        server: now.server().to_string(),
        efs_filesystem_id: now.efs_filesystem_id().map(String::from),
        volume: None,
        pod_volume: None,
        pvc: None,
        database_image: None,
        measured: before.is_some(),
        ops,
        ops_per_s: round3(ops as f64 / seconds),
        bytes_sent: by_op.iter().map(|o| o.bytes_sent).sum(),
        bytes_recv: by_op.iter().map(|o| o.bytes_recv).sum(),
        by_op,
        totals: now.ops.iter().filter(|o| o.ops > 0).cloned().collect(),
    }
}

/// Repository names (the last path part, without tag or digest) of database servers.
const DATABASES: &[&str] = &[
    "mysql",
    "mariadb",
    "percona",
    "postgres",
    "postgresql",
    "postgis",
    "timescaledb",
    "mongo",
    "mongodb",
    "redis",
    "valkey",
    "cassandra",
    "scylla",
    "elasticsearch",
    "opensearch",
    "clickhouse",
    "etcd",
    "cockroach",
    "neo4j",
    "influxdb",
    "couchdb",
    "couchbase",
    "memcached",
    "solr",
    "zookeeper",
    "kafka",
    "rabbitmq",
    "minio",
    "mssql",
    "oracle",
    "db2",
];

/// Whether an image is a database server's: its repository name is one of [`DATABASES`] or
/// starts with one and a dash (`bitnami/postgresql-repmgr`, `percona-server-mongodb`).
pub fn is_database_image(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name = last.split(':').next().unwrap_or(last).to_ascii_lowercase();
    DATABASES.iter().any(|d| {
        name == *d || name.starts_with(&format!("{d}-")) || name.ends_with(&format!("-{d}"))
    })
}

/// Names the pod-spec side of a mount: the volume at its mount point (exact, or the deepest
/// mountPath holding it), its claim, and a database image of the pod.
pub fn label_from_spec(
    m: &mut StorageMount,
    images: &[String],
    mounts: &[(String, String, Option<String>)],
) {
    let holds = |p: &str| {
        let p = p.trim_end_matches('/');
        m.mount_point == p || m.mount_point.starts_with(&format!("{p}/"))
    };
    if let Some((_, volume, claim)) = mounts
        .iter()
        .filter(|(p, _, _)| holds(p))
        .max_by_key(|(p, _, _)| p.len())
    {
        m.pod_volume = Some(volume.clone());
        m.pvc = claim.clone();
    }
    m.database_image = images.iter().find(|i| is_database_image(i)).cloned();
}
