//! The source end to end on a /proc tree in a temporary directory, read through the same
//! `ProcRoot` calls as the host's: pods' processes with their cgroup, mount-namespace link and
//! mountstats (the fixtures), the host's PID 1 with the kubelet's volume mounts. Window figures
//! are checked against the deltas `testdata/generate.py` put between t0 and t1.

use super::source::{parse_bounded, Storage, MAX_READ, MAX_REPORTED, MAX_SEEN};
use crate::report::{Node, Report};
use crate::sources::{Source, Window};
use std::path::Path;

const T0: &str = include_str!("testdata/mountstats-t0.txt");
const T1: &str = include_str!("testdata/mountstats-t1.txt");
const UID: &str = "0b5e1a2c-3d4e-4f60-8a9b-0c1d2e3f4a5b";
const OTHER: &str = "11111111-2222-4333-8444-555555555555";

fn pid(root: &Path, pid: u32, uid: Option<&str>, mntns: u64, mountstats: &str) {
    let d = root.join(pid.to_string());
    std::fs::create_dir_all(d.join("ns")).unwrap();
    std::os::unix::fs::symlink(format!("mnt:[{mntns}]"), d.join("ns/mnt")).unwrap();
    let cg = match uid {
        Some(u) => format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
            u.replace('-', "_"),
            "a".repeat(64)
        ),
        None => "0::/system.slice/kubelet.service\n".into(),
    };
    std::fs::write(d.join("cgroup"), cg).unwrap();
    std::fs::write(d.join("mountstats"), mountstats).unwrap();
}

fn host_mounts(uid: &str) -> String {
    // The kubelet's mounts of the same devices in the host's namespace.
    T0.replace(
        "mounted on /var/lib/mysql ",
        &format!(
            "mounted on /var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/pv-mysql-efs/mount "
        ),
    )
    .replace(
        "mounted on /data ",
        &format!("mounted on /var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~nfs/shared/mount "),
    )
}

#[test]
fn window_figures_are_the_kernel_counters_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    pid(root, 1, None, 4026531841, &host_mounts(UID));
    pid(root, 100, Some(UID), 4026532001, T0);
    // Same mount namespace: not read again (its different text would show up if it were).
    pid(
        root,
        101,
        Some(UID),
        4026532001,
        &T0.replace("/var/lib/mysql", "/elsewhere")
            .replace("fs-0123456789abcdef0", "fs-99999999"),
    );
    // Another pod whose mountstats is a link: never followed.
    pid(root, 200, Some(OTHER), 4026532002, "");
    std::fs::remove_file(root.join("200/mountstats")).unwrap();
    std::os::unix::fs::symlink(root.join("100/mountstats"), root.join("200/mountstats")).unwrap();

    let mut s = Storage::start(root.to_path_buf());
    std::fs::write(root.join("100/mountstats"), T1).unwrap();
    let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
        },
        &mut r,
    );

    assert_eq!(r.storage.len(), 2, "{:#?}", r.storage);
    assert_eq!(r.storage_omitted, 0);
    let efs = &r.storage[0];
    assert_eq!(efs.pod.as_ref().unwrap().uid, UID);
    assert_eq!(efs.mount_point, "/var/lib/mysql");
    assert_eq!(
        efs.efs_filesystem_id.as_deref(),
        Some("fs-0123456789abcdef0")
    );
    assert_eq!(efs.version.as_deref(), Some("4.1"));
    assert_eq!(efs.volume.as_deref(), Some("pv-mysql-efs"));
    assert!(efs.measured);
    // d4: OPEN 2000, CLOSE 2000, GETATTR 6000, LOOKUP 1000, READ 500 over 10 s.
    assert_eq!(efs.ops, 11_500);
    assert_eq!(efs.ops_per_s, 1150.0);
    let o = |name: &str| efs.by_op.iter().find(|x| x.op == name).unwrap();
    let open = o("OPEN");
    assert_eq!((open.ops, open.ops_per_s), (2000, 200.0));
    assert_eq!(open.execute_ms_mean, Some(4.1), "8200 ms over 2000 opens");
    assert_eq!(open.rtt_ms_mean, Some(3.9));
    assert_eq!(
        (open.bytes_sent, open.bytes_recv, open.errors),
        (600_000, 800_000, Some(1))
    );
    assert_eq!(o("GETATTR").execute_ms_mean, Some(1.2));
    assert_eq!(o("READ").bytes_recv, 2_048_000);
    // Called since the mount but not in this window: listed with zero and no means.
    let w = o("WRITE");
    assert_eq!((w.ops, w.rtt_ms_mean, w.execute_ms_mean), (0, None, None));
    assert_eq!(efs.by_op[0].op, "GETATTR", "busiest first");
    assert!(
        efs.by_op.iter().all(|x| x.op != "COMMIT"),
        "never called: not listed"
    );
    assert_eq!(
        efs.totals.iter().find(|x| x.op == "OPEN").unwrap().ops,
        12_000
    );

    let v3 = &r.storage[1];
    assert_eq!(
        (v3.device.as_str(), v3.volume.as_deref()),
        ("10.0.2.5:/export/my data", Some("shared"))
    );
    assert_eq!((v3.ops, v3.bytes_recv), (1050, 32_768_000 + 5600));

    let table = r.table();
    assert!(table.contains("/var/lib/mysql on fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com (fs-0123456789abcdef0) NFS 4.1: 1150.0 ops/s"), "{table}");
    assert!(
        table.contains("OPEN              200.0/s  rtt     3.90 ms  execute     4.10 ms"),
        "{table}"
    );
    // JSON: the contract's field names.
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["storage"][0]["by_op"][0]["op"], "GETATTR");
    assert_eq!(v["storage"][0]["pod"]["uid"], UID);
    assert!(v["storage"][0].get("totals").is_none());
}

/// The fixture's window on /metrics (promtool accepts it) and in OTLP: counters are the
/// kernel's totals, gauges the window's.
#[test]
fn storage_figures_reach_both_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    pid(root, 1, None, 4026531841, &host_mounts(UID));
    pid(root, 100, Some(UID), 4026532001, T0);
    let mut s = Storage::start(root.to_path_buf());
    std::fs::write(root.join("100/mountstats"), T1).unwrap();
    const START: u64 = 1_700_000_000_000_000_000;
    let mut r = Report::new(Node::default(), START, START + 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: START,
            end_ns: START + 10_000_000_000,
        },
        &mut r,
    );
    let p = r.storage[0].pod.as_mut().unwrap();
    (p.namespace, p.name) = (Some("db".into()), Some("mysql-0".into()));
    r.storage[0].workload = Some(crate::pod::Workload {
        kind: "StatefulSet".into(),
        name: "mysql".into(),
    });

    let m = crate::export::prometheus::Metrics::new();
    m.update(&r);
    let text = m.encode();
    let l = r#"namespace="db",pod="mysql-0",workload_kind="StatefulSet",workload="mysql",mount="/var/lib/mysql",server="fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com",efs_filesystem="fs-0123456789abcdef0",volume="pv-mysql-efs",pvc="",database_image="",op="OPEN""#;
    for line in [
        format!("headroom_nfs_ops_total{{{l}}} 12000"),
        format!("headroom_nfs_execute_seconds_total{{{l}}} 49.2"),
        format!("headroom_nfs_rtt_seconds_total{{{l}}} 45.8"),
        format!("headroom_nfs_bytes_total{{{l},direction=\"received\"}} 4800000"),
        format!("headroom_nfs_ops_per_second{{{l}}} 200.0"),
        format!("headroom_nfs_execute_mean_seconds{{{l}}} 0.0041"),
        "headroom_nfs_mounts_omitted{} 0".to_string(),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    // WRITE had no call in the window: a rate of 0, no mean.
    assert!(text.contains(&format!(
        "headroom_nfs_ops_per_second{{{}}} 0.0",
        l.replace("OPEN", "WRITE")
    )));
    assert!(!text.contains(&format!(
        "headroom_nfs_execute_mean_seconds{{{}}}",
        l.replace("OPEN", "WRITE")
    )));
    if headroom_testbed::require(
        "promtool check metrics",
        &[headroom_testbed::Need::Tool("promtool")],
    ) {
        headroom_testbed::scrape::promtool_check(&text);
    }

    use crate::export::otlp::encode::{kv, request, resource};
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
    let req = request(&r, resource(&r, &[]), 42);
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    let point = |name: &str, op: &str| {
        let m = metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let points = match &m.data {
            Some(Data::Sum(s)) => {
                assert!(s.is_monotonic);
                &s.data_points
            }
            Some(Data::Gauge(g)) => &g.data_points,
            _ => panic!("{name}"),
        };
        let p = points
            .iter()
            .find(|p| {
                p.attributes.contains(&kv("op", op))
                    && p.attributes.contains(&kv("mount", "/var/lib/mysql"))
            })
            .unwrap_or_else(|| panic!("{name} {op}"));
        assert!(p
            .attributes
            .contains(&kv("efs_filesystem", "fs-0123456789abcdef0")));
        assert!(p.attributes.contains(&kv("workload_kind", "StatefulSet")));
        match p.value {
            Some(Value::AsInt(v)) => v as f64,
            Some(Value::AsDouble(v)) => v,
            None => f64::NAN,
        }
    };
    assert_eq!(point("headroom.nfs.ops", "GETATTR"), 31_000.0);
    assert_eq!(point("headroom.nfs.ops.per.second", "GETATTR"), 600.0);
    assert_eq!(point("headroom.nfs.execute.mean.seconds", "OPEN"), 0.0041);
    assert_eq!(
        metrics
            .iter()
            .find(|m| m.name == "headroom.nfs.execute.seconds")
            .unwrap()
            .unit,
        "s"
    );
}

#[test]
fn a_mount_first_seen_is_measured_only_when_younger_than_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = Storage::start(root.to_path_buf());
    pid(root, 100, Some(UID), 4026532001, T0);
    let young = T0.replace("\tage:\t3600\n", "\tage:\t5\n");
    pid(root, 300, Some(OTHER), 4026532003, &young);
    let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
        },
        &mut r,
    );
    let of = |uid: &str| {
        r.storage
            .iter()
            .filter(|m| m.pod.as_ref().unwrap().uid == uid)
            .collect::<Vec<_>>()
    };
    let old = of(UID);
    assert!(
        old.iter().all(|m| !m.measured && m.ops == 0),
        "an hour of counters is not one window"
    );
    let new = of(OTHER);
    let efs = new.iter().find(|m| m.efs_filesystem_id.is_some()).unwrap();
    assert!(efs.measured);
    assert_eq!(
        efs.by_op.iter().find(|x| x.op == "OPEN").unwrap().ops,
        10_000,
        "from zero"
    );
    // Next window: both have a baseline; nothing changed, so nothing was called.
    let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
        },
        &mut r,
    );
    assert!(r.storage.iter().all(|m| m.measured && m.ops == 0));
}

#[test]
fn a_read_cut_at_the_bound_drops_its_last_mount() {
    let mut text = T0.repeat(MAX_READ / T0.len() + 1);
    text.truncate(MAX_READ);
    let p = parse_bounded(&text);
    assert!(p.mounts_omitted >= 1);
    assert!(
        p.mounts
            .iter()
            .all(|m| m.ops.len() == 69 || m.ops.len() == 22),
        "no half-read mount"
    );
}

/// The pod list names the pod, its StatefulSet, the claim behind the mount and its database
/// image (what StorageLatencyRisk weighs).
#[test]
fn the_pod_spec_names_claim_workload_and_database_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    pid(root, 100, Some(UID), 4026532001, T0);
    let mut s = Storage::start(root.to_path_buf());
    std::fs::write(root.join("100/mountstats"), T1).unwrap();
    let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
        },
        &mut r,
    );
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mysql-0", "namespace": "db", "uid": UID,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "mysql", "uid": "s1", "controller": true}]},
        "spec": {
            "containers": [
                {"name": "sidecar", "image": "busybox:1.36", "volumeMounts": [{"name": "conf", "mountPath": "/etc/mysql"}]},
                {"name": "mysql", "image": "docker.io/library/mysql:8.0@sha256:abc", "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/mysql/"},
                    {"name": "shared", "mountPath": "/data"}]}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-mysql-0"}},
                {"name": "shared", "nfs": {"server": "10.0.2.5", "path": "/export/my data"}},
                {"name": "conf", "emptyDir": {}}]
        }
    }))
    .unwrap();
    let idx = crate::enrich::pods::PodIndex::default();
    idx.rebuild([&pod]);
    idx.label_storage(&mut r);
    let efs = &r.storage[0];
    let p = efs.pod.as_ref().unwrap();
    assert_eq!(
        (p.namespace.as_deref(), p.name.as_deref()),
        (Some("db"), Some("mysql-0"))
    );
    assert_eq!(efs.workload.as_ref().unwrap().kind, "StatefulSet");
    assert_eq!(
        (efs.pod_volume.as_deref(), efs.pvc.as_deref()),
        (Some("data"), Some("data-mysql-0"))
    );
    assert_eq!(
        efs.database_image.as_deref(),
        Some("docker.io/library/mysql:8.0@sha256:abc")
    );
    let v3 = &r.storage[1];
    assert_eq!(
        (v3.pod_volume.as_deref(), v3.pvc.as_deref()),
        (Some("shared"), None)
    );
}

#[test]
fn database_images_by_repository_name() {
    use super::report::is_database_image;
    for (image, db) in [
        ("mysql:8.0", true),
        ("postgres", true),
        ("bitnami/postgresql-repmgr:16", true),
        ("percona/percona-server-mongodb:7.0", true),
        ("registry.example.com:5000/team/mongo@sha256:00", true),
        ("public.ecr.aws/docker/library/redis:7", true),
        ("nginx:1.27", false),
        ("mysql-exporter-custom/app:1", false),
        ("mysqlbackup:1", false),
        ("registry.example.com:5000/mysql/app:1", false),
        ("", false),
    ] {
        assert_eq!(is_database_image(image), db, "{image}");
    }
}

/// Many pods with many NFS mounts each: the scan stops at its bound and the report at its own,
/// counting what they left out.
#[test]
fn many_namespaces_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut one = String::new();
    for i in 0..200 {
        one += &format!("device s:/{i} mounted on /m{i} with fstype nfs statvers=1.1\n\tage:\t1\n\tper-op statistics\n\t        READ: 1 1 0 1 1 0 1 1 0\n");
    }
    let pods = 12; // 2 400 mounts in all
    for p in 0..pods {
        let uid = format!("11111111-2222-4333-8444-{p:012}");
        pid(root, 100 + p, Some(&uid), 4026533000 + u64::from(p), &one);
    }
    let mut s = Storage::start(root.to_path_buf());
    let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[]);
    s.fill(
        Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
        },
        &mut r,
    );
    assert_eq!(r.storage.len(), MAX_REPORTED);
    // Ten namespaces whole and 48 of the 11th make MAX_SEEN; the 11th's other 152 are counted,
    // the 12th namespace is not read at all (so its mounts cannot be counted).
    assert_eq!(MAX_SEEN, 2048);
    assert_eq!(r.storage_omitted, (MAX_SEEN - MAX_REPORTED) + 152);
}
