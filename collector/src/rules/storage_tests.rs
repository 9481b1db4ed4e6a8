//! StorageLatencyRisk at its edges (table-driven, default thresholds: 5 metadata calls/s,
//! 100 per MB moved, 2 ms), the figures its fix states, and its YAML against the Kubernetes
//! 1.32 schemas (kubernetes-validate --strict).

use super::*;
use crate::fleet::{FleetSnapshot, NodeSnapshot};
use crate::kube::KubeView;

fn op(name: &str, ops_per_s: f64, execute_ms: Option<f64>, bytes_per_s: f64) -> OpSnapshot {
    OpSnapshot {
        op: name.into(),
        ops_per_s,
        bytes_per_s,
        execute_ms_mean: execute_ms,
    }
}

fn mount(ops: Vec<OpSnapshot>, kind: &str, image: &str) -> MountSnapshot {
    MountSnapshot {
        namespace: "db".into(),
        pod: "mysql-0".into(),
        mount: "/var/lib/mysql".into(),
        workload_kind: kind.into(),
        workload: "mysql".into(),
        server: "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com".into(),
        efs_filesystem: "fs-0123456789abcdef0".into(),
        volume: "pv-mysql-efs".into(),
        pvc: "data-mysql-0".into(),
        database_image: image.into(),
        window_seconds: 10.0,
        ops,
        ..Default::default()
    }
}

fn run(m: MountSnapshot) -> Vec<Finding> {
    let node = NodeSnapshot {
        name: "n1".into(),
        storage: vec![m],
        ..Default::default()
    };
    let f = FleetSnapshot::one_cluster("prod", vec![node], vec![]);
    LatencyRisk(Thresholds::default()).evaluate(
        &Input {
            fleet: &f,
            kube: &KubeView::default(),
        },
        SystemTime::UNIX_EPOCH,
    )
}

#[test]
fn each_threshold_at_its_edge() {
    // (metadata calls/s split over OPEN and GETATTR, their execute ms, READ bytes/s, kind,
    // image) → severity
    type Row = (
        f64,
        Option<f64>,
        f64,
        &'static str,
        &'static str,
        Option<Severity>,
    );
    let table: &[Row] = &[
        (
            10.0,
            Some(2.0),
            0.0,
            "Deployment",
            "",
            Some(Severity::Warning),
        ), // exactly 2 ms
        (10.0, Some(1.999), 0.0, "Deployment", "", None), // just under
        (
            5.0,
            Some(3.0),
            0.0,
            "Deployment",
            "",
            Some(Severity::Warning),
        ), // exactly 5/s
        (4.99, Some(3.0), 0.0, "Deployment", "", None),   // just under
        (
            10.0,
            Some(3.0),
            100_000.0,
            "Deployment",
            "",
            Some(Severity::Warning),
        ), // 100 per MB
        (10.0, Some(3.0), 100_100.0, "Deployment", "", None), // 99.9 per MB: data-heavy enough
        (10.0, Some(3.0), 50e6, "Deployment", "", None),  // big sequential reads
        (10.0, None, 0.0, "Deployment", "", None),        // no call timed
        (
            10.0,
            Some(3.0),
            0.0,
            "StatefulSet",
            "",
            Some(Severity::Critical),
        ),
        (
            10.0,
            Some(3.0),
            0.0,
            "Deployment",
            "mysql:8.0",
            Some(Severity::Critical),
        ),
        (10.0, Some(3.0), 0.0, "", "", Some(Severity::Warning)), // a bare pod
    ];
    for &(meta, exec, bytes, kind, image, want) in table {
        let m = mount(
            vec![
                op("OPEN", meta / 2.0, exec, 0.0),
                op("GETATTR", meta / 2.0, exec, 0.0),
                op("READ", 1.0, Some(50.0), bytes),
            ],
            kind,
            image,
        );
        let got = run(m);
        assert_eq!(
            got.first().map(|f| f.severity),
            want,
            "{meta}/s {exec:?} ms {bytes} B/s {kind} {image}"
        );
        if let Some(f) = got.first() {
            assert_eq!(f.subject.mount.as_deref(), Some("/var/lib/mysql"));
            assert_eq!(f.subject.pod.as_deref(), Some("mysql-0"));
        }
    }
}

/// The example: each open costs 4.1 ms, so 2 000 small files take 8.2 s.
#[test]
fn the_fix_says_what_an_open_costs_and_where_to_move() {
    let got = run(mount(
        vec![op("OPEN", 200.0, Some(4.1), 0.0)],
        "StatefulSet",
        "",
    ));
    let f = &got[0];
    assert!(f.fix.contains("Each OPEN costs 4.1 ms"), "{}", f.fix);
    assert!(f.fix.contains("2000 small files take 8.2 s"), "{}", f.fix);
    assert!(f
        .fix
        .contains("EBS gp3 on a managed node group (Fargate cannot mount EBS volumes)"));
    assert!(
        f.fix.contains("volumeClaimTemplates"),
        "a StatefulSet's own move"
    );
    assert!(
        f.fix.contains("is on EFS fs-0123456789abcdef0"),
        "{}",
        f.fix
    );
    assert!(f.fix.contains("fewer, bigger files"));
    assert!(
        f.summary
            .contains("200 metadata calls/s (no data moved) at 4.1 ms"),
        "{}",
        f.summary
    );
}

/// Every metadata call's time over the opens: what one file costs in all.
#[test]
fn per_file_cost_sums_every_metadata_call() {
    // 200 OPEN × 4.1 + 200 CLOSE × 2.0 + 600 GETATTR × 1.5 + 100 LOOKUP × 1.2 = 2 240 ms of
    // calls per second for 200 files: 11.2 ms per file, 22.4 s for 2 000; the calls' mean is
    // 2 240 / 1 100 = 2.036 ms. READ moves 0.2 MB/s: 5 500 metadata calls per MB.
    let m = mount(
        vec![
            op("OPEN", 200.0, Some(4.1), 0.0),
            op("CLOSE", 200.0, Some(2.0), 0.0),
            op("GETATTR", 600.0, Some(1.5), 0.0),
            op("LOOKUP", 100.0, Some(1.2), 0.0),
            op("READ", 50.0, Some(0.9), 200_000.0),
        ],
        "Deployment",
        "",
    );
    let x = mix(&m);
    assert_eq!(x.metadata_ops, 1100.0);
    assert!((x.metadata_execute_ms.unwrap() - 2240.0 / 1100.0).abs() < 1e-9);
    assert!((x.ops_per_mb.unwrap() - 5500.0).abs() < 1e-9);
    assert!((x.per_file_ms.unwrap() - 11.2).abs() < 1e-9);
    let f = &run(m)[0];
    assert!(f.fix.contains("each file opened 11.2 ms"), "{}", f.fix);
    assert!(f.fix.contains("2000 small files take 22.4 s"), "{}", f.fix);
    assert_eq!(f.evidence["metadata_ops_per_mb"], 5500.0);
    assert_eq!(f.evidence["seconds_per_2000_files"], 22.4);
    assert_eq!(f.evidence["by_op"]["OPEN"]["execute_ms_mean"], 4.1);
    assert_eq!(f.severity, Severity::Warning);
}

/// NFSv3 has no OPEN: a LOOKUP opens the file.
#[test]
fn nfs3_opens_are_lookups() {
    let mut m = mount(
        vec![
            op("LOOKUP", 50.0, Some(3.0), 0.0),
            op("GETATTR", 50.0, Some(1.0), 0.0),
        ],
        "Deployment",
        "",
    );
    (m.efs_filesystem, m.server) = (String::new(), "10.0.2.5".into());
    let f = &run(m)[0];
    assert!(
        f.fix
            .contains("Each LOOKUP costs 3.0 ms and each file opened 4.0 ms"),
        "{}",
        f.fix
    );
    assert!(f.fix.contains("is on NFS server 10.0.2.5"), "{}", f.fix);
}

#[test]
fn fix_yaml_passes_kubernetes_validate_strict() {
    let y = gp3_yaml(&mount(vec![], "StatefulSet", ""));
    assert!(
        y.contains("name: data-mysql-0-gp3") && y.contains("storageClassName: gp3"),
        "{y}"
    );
    assert!(y.contains("provisioner: ebs.csi.aws.com"), "{y}");
    let f = &run(mount(
        vec![op("OPEN", 200.0, Some(4.1), 0.0)],
        "StatefulSet",
        "",
    ))[0];
    assert!(f.fix.ends_with(&y), "the fix carries the YAML");
    if !headroom_testbed::require(
        "StorageLatencyRisk fix passes kubernetes-validate",
        &[headroom_testbed::Need::Tool("kubernetes-validate")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Each document on its own, and the two together as the fix gives them; also for a pod
    // known only by its uid (no pod list: no namespace, no claim).
    let docs: Vec<&str> = y.split("---\n").collect();
    assert_eq!(docs.len(), 2);
    let mut bare = mount(vec![], "", "");
    (bare.namespace, bare.pod, bare.pvc) = (
        String::new(),
        "0b5e1a2c-3d4e-4f60-8a9b-0c1d2e3f4a5b".into(),
        String::new(),
    );
    let bare = gp3_yaml(&bare);
    assert!(!bare.contains("namespace:"), "{bare}");
    for (i, d) in docs.iter().chain([&y.as_str(), &bare.as_str()]).enumerate() {
        let file = dir.path().join(format!("fix-{i}.yaml"));
        std::fs::write(&file, d).unwrap();
        let out = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.32.0"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{d}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A broken document is refused: the check can fail.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, y.replace("storageClassName", "storageClass")).unwrap();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.32.0"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
