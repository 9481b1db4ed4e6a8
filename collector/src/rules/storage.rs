//! StorageLatencyRisk: a pod whose data volume is on NFS/EFS, whose calls are mostly metadata
//! (OPEN, CLOSE, GETATTR, LOOKUP… per MB of data moved: small files) and whose metadata calls
//! are slow. Every small-file open is then network round trips: the "MySQL on EFS is 25×
//! slower" trap. The fix says what the measured figures cost and the move: EBS gp3 on a
//! managed node group (Fargate cannot mount EBS), or caching / fewer, bigger files.

use super::kubeyaml::to_yaml;
use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::fleet::{MountSnapshot, OpSnapshot};
use serde_json::json;
use std::time::{Duration, SystemTime};

pub struct LatencyRisk(pub Thresholds);

/// Procedures that move no file data: what opening, checking and listing files costs.
const METADATA: &[&str] = &[
    "OPEN",
    "OPEN_NOATTR",
    "OPEN_CONFIRM",
    "OPEN_DOWNGRADE",
    "CLOSE",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "LOOKUPP",
    "ACCESS",
    "CREATE",
    "REMOVE",
    "RENAME",
    "READDIR",
    "READDIRPLUS",
];
/// Procedures that move file data.
const DATA: &[&str] = &["READ", "WRITE", "READ_PLUS"];

/// Small files a fix prices (the "2 000 small files take 8 s").
const FILES: f64 = 2000.0;

/// What decides, from one mount's window.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Metadata calls per second.
    pub metadata_ops: f64,
    /// Their mean execute time, ms (weighted by calls).
    pub metadata_execute_ms: Option<f64>,
    /// READ and WRITE bytes per second.
    pub data_bytes: f64,
    /// Metadata calls per MB (10^6 bytes) moved; None when nothing moved.
    pub ops_per_mb: Option<f64>,
    /// The procedure that opens a file (OPEN on NFSv4, LOOKUP on v3) and its mean cost, ms.
    pub open: Option<(String, f64, f64)>,
    /// Metadata time per opened file, ms: every metadata call's time over the opens.
    pub per_file_ms: Option<f64>,
}

fn find<'a>(ops: &'a [OpSnapshot], name: &str) -> Option<&'a OpSnapshot> {
    ops.iter().find(|o| o.op == name)
}

/// Pure: the op mix of a mount's window.
pub fn mix(m: &MountSnapshot) -> Mix {
    let meta: Vec<&OpSnapshot> = m
        .ops
        .iter()
        .filter(|o| METADATA.contains(&o.op.as_str()))
        .collect();
    let metadata_ops: f64 = meta.iter().map(|o| o.ops_per_s).sum();
    let timed: f64 = meta
        .iter()
        .filter(|o| o.execute_ms_mean.is_some())
        .map(|o| o.ops_per_s)
        .sum();
    let ms_per_s: f64 = meta
        .iter()
        .filter_map(|o| Some(o.ops_per_s * o.execute_ms_mean?))
        .sum();
    let metadata_execute_ms = (timed > 0.0).then(|| ms_per_s / timed);
    let data_bytes: f64 = m
        .ops
        .iter()
        .filter(|o| DATA.contains(&o.op.as_str()))
        .map(|o| o.bytes_per_s)
        .sum();
    let ops_per_mb = (data_bytes > 0.0).then(|| metadata_ops / (data_bytes / 1e6));
    let open = ["OPEN", "LOOKUP"].iter().find_map(|n| {
        let o = find(&m.ops, n).filter(|o| o.ops_per_s > 0.0)?;
        Some((o.op.clone(), o.ops_per_s, o.execute_ms_mean?))
    });
    let per_file_ms = open.as_ref().map(|(_, rate, _)| ms_per_s / rate);
    Mix {
        metadata_ops,
        metadata_execute_ms,
        data_bytes,
        ops_per_mb,
        open,
        per_file_ms,
    }
}

/// Whether the mix is a risk under the thresholds.
pub fn at_risk(x: &Mix, t: &Thresholds) -> bool {
    x.metadata_ops >= t.storage_min_metadata_ops
        && x.metadata_execute_ms
            .is_some_and(|e| e >= t.storage_execute_ms)
        && none_or_at_least(x.ops_per_mb, t.storage_metadata_ops_per_mb)
}

/// Nothing moved counts as all metadata.
fn none_or_at_least(x: Option<f64>, v: f64) -> bool {
    x.map_or(true, |x| x >= v)
}

/// Where the data is, in words: `EFS fs-… (server)` or `NFS server`.
fn on(m: &MountSnapshot) -> String {
    if m.efs_filesystem.is_empty() {
        format!("NFS server {}", m.server)
    } else {
        format!("EFS {}", m.efs_filesystem)
    }
}

/// A gp3 StorageClass and a claim to move the data to: two documents.
pub fn gp3_yaml(m: &MountSnapshot) -> String {
    let claim = if m.pvc.is_empty() {
        format!("{}-data-gp3", m.pod)
    } else {
        format!("{}-gp3", m.pvc)
    };
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "gp3"},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true"},
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    });
    let pvc = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": if m.namespace.is_empty() {
            json!({"name": claim})
        } else {
            json!({"name": claim, "namespace": m.namespace})
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "resources": {"requests": {"storage": "20Gi"}},
        },
    });
    format!("{}---\n{}", to_yaml(&class), to_yaml(&pvc))
}

fn stateful(m: &MountSnapshot) -> bool {
    m.workload_kind.eq_ignore_ascii_case("StatefulSet")
}

impl Rule for LatencyRisk {
    fn id(&self) -> &'static str {
        "StorageLatencyRisk"
    }

    fn for_duration(&self) -> Duration {
        self.0.storage_for
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let mut out = Vec::new();
        for c in &input.fleet.clusters {
            for n in &c.nodes {
                for m in &n.storage {
                    let x = mix(m);
                    if !at_risk(&x, &self.0) {
                        continue;
                    }
                    out.push(self.finding(&c.name, &n.name, m, &x));
                }
            }
        }
        out
    }
}

impl LatencyRisk {
    fn finding(&self, cluster: &str, node: &str, m: &MountSnapshot, x: &Mix) -> Finding {
        let db = !m.database_image.is_empty();
        let severity = if stateful(m) || db {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let exec = x.metadata_execute_ms.unwrap_or(0.0);
        let per_mb = x
            .ops_per_mb
            .map(|v| format!("{v:.0} per MB moved"))
            .unwrap_or_else(|| "no data moved".into());
        let summary = format!(
            "{}/{} {} on {}: {:.0} metadata calls/s ({per_mb}) at {exec:.1} ms each",
            m.namespace,
            m.pod,
            m.mount,
            on(m),
            x.metadata_ops
        );
        let meaning = match (&x.open, x.per_file_ms) {
            (Some((op, _, cost)), Some(file)) => format!(
                "Each {op} costs {cost:.1} ms and each file opened {file:.1} ms of metadata calls in all (open, close, getattr, lookup, access): {} small files take {:.1} s here.",
                FILES as u64,
                FILES * file / 1e3
            ),
            _ => format!(
                "Each metadata call costs {exec:.1} ms: {} of them take {:.1} s.",
                FILES as u64,
                FILES * exec / 1e3
            ),
        };
        let what = if db {
            format!("the database ({})", m.database_image)
        } else if stateful(m) {
            format!("StatefulSet {}", m.workload)
        } else {
            "this workload".to_string()
        };
        let claim = if m.pvc.is_empty() {
            String::new()
        } else {
            format!(" (claim {})", m.pvc)
        };
        let template = if stateful(m) {
            " For the StatefulSet, set `storageClassName: gp3` in its volumeClaimTemplates (a template cannot change in place: create the StatefulSet anew, or restore into the new claims)."
        } else {
            ""
        };
        let fix = format!(
            "{meaning} The data of {what} at {}{claim} is on {}: every small-file open, stat and close is a network round trip.\n\
             Move it to EBS gp3 on a managed node group (Fargate cannot mount EBS volumes): the StorageClass and claim below (20Gi is a placeholder: size it to the data), copy the data across (the database's own dump and restore, or a Job mounting both claims), then point the volume at the new claim.{template}\n\
             If it must stay on {}: cache what is read often (an emptyDir filled at start, or the application's own cache), or store fewer, bigger files.\n\n{}",
            m.mount,
            on(m),
            on(m),
            gp3_yaml(m)
        );
        let by_op: serde_json::Map<String, serde_json::Value> = m
            .ops
            .iter()
            .filter(|o| o.ops_per_s > 0.0)
            .map(|o| {
                (
                    o.op.clone(),
                    json!({"ops_per_s": r3(o.ops_per_s), "execute_ms_mean": o.execute_ms_mean.map(r3), "bytes_per_s": r3(o.bytes_per_s)}),
                )
            })
            .collect();
        let ev = evidence([
            ("metadata_ops_per_s", json!(r3(x.metadata_ops))),
            (
                "metadata_execute_ms_mean",
                json!(x.metadata_execute_ms.map(r3)),
            ),
            ("data_mb_per_s", json!(r3(x.data_bytes / 1e6))),
            ("metadata_ops_per_mb", json!(x.ops_per_mb.map(r3))),
            ("open_op", json!(x.open.as_ref().map(|o| o.0.clone()))),
            ("open_execute_ms", json!(x.open.as_ref().map(|o| r3(o.2)))),
            ("per_file_ms", json!(x.per_file_ms.map(r3))),
            (
                "seconds_per_2000_files",
                json!(x.per_file_ms.map(|f| r3(FILES * f / 1e3))),
            ),
            ("server", json!(m.server)),
            ("efs_filesystem", json!(m.efs_filesystem)),
            ("volume", json!(m.volume)),
            ("pvc", json!(m.pvc)),
            ("database_image", json!(m.database_image)),
            ("workload_kind", json!(m.workload_kind)),
            ("window_seconds", json!(r3(m.window_seconds))),
            ("by_op", serde_json::Value::Object(by_op)),
        ]);
        Finding {
            rule: self.id().into(),
            severity,
            subject: Subject {
                cluster: cluster.to_string(),
                node: Some(node.to_string()),
                namespace: Some(m.namespace.clone()),
                workload: (!m.workload.is_empty()).then(|| m.workload.clone()),
                pod: Some(m.pod.clone()),
                mount: Some(m.mount.clone()),
                ..Default::default()
            },
            summary,
            evidence: ev,
            fix,
            cost: None,
        }
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
