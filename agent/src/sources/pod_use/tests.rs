//! The sampler on a fixture cgroup tree: memory peaks, caps, names from the pod list and p95.

use super::sampler::p95_of;
use super::*;
use std::path::Path;

const UID: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
const CID: &str = "3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";

fn write(dir: &Path, name: &str, v: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), format!("{v}\n")).unwrap();
}

#[test]
fn p95_is_nearest_rank_over_samples() {
    assert_eq!(p95_of(&[]), 0);
    assert_eq!(p95_of(&[10]), 0);
    // 19 samples with 1 pod above, 1 with 3: p95 (rank 19 of 20) is 1, max would be 3.
    assert_eq!(p95_of(&[0, 19, 0, 1]), 1);
    assert_eq!(p95_of(&[0, 1, 0, 19]), 3);
}

/// v1 memory files: the kernel's lifetime peak counts only when it rose in the window;
/// otherwise the highest sample; names and requests come from the pod list. Memory is read
/// about once a second, so the samples here are a second apart.
#[test]
fn memory_peak_is_the_windows_and_pods_are_named() {
    let d = tempfile::tempdir().unwrap();
    let pod = d.path().join(format!("memory/kubepods/burstable/pod{UID}"));
    let c = pod.join(CID);
    write(&pod, "memory.usage_in_bytes", 1000);
    write(&pod, "memory.max_usage_in_bytes", 9000);
    write(&c, "memory.usage_in_bytes", 800);
    write(&c, "memory.max_usage_in_bytes", 800);
    let spec = PodUseSpec {
        cgroup_root: d.path().to_path_buf(),
        interval: std::time::Duration::from_millis(200),
        caps: PodUseConfig::default(),
    };
    let specs = PodSpecs::default();
    let mut s = Sampler::new(&spec, specs.clone());
    let second = || std::thread::sleep(std::time::Duration::from_millis(950));
    s.sample();
    write(&pod, "memory.usage_in_bytes", 3000);
    second();
    s.sample();
    write(&pod, "memory.usage_in_bytes", 2000);
    write(&c, "memory.max_usage_in_bytes", 5000);
    // Not a second later: memory is not read again.
    s.sample();
    second();
    s.sample();
    let (pods, omitted, co) = s.cut();
    assert_eq!(omitted.total(), 0);
    assert!(co.is_none(), "no CPU counters: no co-burst");
    let p = &pods[0];
    assert_eq!(p.uid, UID);
    assert_eq!(p.name, None);
    // Lifetime peak 9000 predates the window: the highest sample, 3000.
    assert_eq!(
        (p.memory.current_bytes, p.memory.peak_bytes),
        (Some(2000), Some(3000))
    );
    // The container's peak rose in the window: the kernel's 5000, above every sample.
    assert_eq!(p.containers[0].memory.peak_bytes, Some(5000));
    assert_eq!(p.cpu.mean_cores, None);
    // The next window: named from the pod list.
    let pod_obj: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "a", "name": "web", "uid": UID},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "1Ki"}}}]},
        "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true,
            "restartCount": 0, "containerID": format!("containerd://{CID}")}]}
    }))
    .unwrap();
    specs.set([&pod_obj]);
    second();
    s.sample();
    let (pods, _, _) = s.cut();
    let p = &pods[0];
    assert_eq!(
        (p.namespace.as_deref(), p.name.as_deref()),
        (Some("a"), Some("web"))
    );
    assert_eq!(
        p.memory.peak_bytes,
        Some(2000),
        "window starts at the last sample"
    );
    assert_eq!(p.containers[0].name.as_deref(), Some("app"));
    assert_eq!(p.containers[0].memory.request_bytes, Some(1024));
}

#[test]
fn caps_are_validated_and_counted() {
    let bad = PodUseConfig {
        max_pods: 0,
        max_containers_per_pod: 5000,
    };
    assert_eq!(bad.validate().len(), 2);
    assert!(PodUseConfig::default().validate().is_empty());
    let d = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let uid = format!("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5{i}");
        write(
            &d.path().join(format!("memory/kubepods/pod{uid}/{CID}")),
            "memory.usage_in_bytes",
            1,
        );
    }
    let spec = PodUseSpec {
        cgroup_root: d.path().to_path_buf(),
        interval: std::time::Duration::from_millis(200),
        caps: PodUseConfig {
            max_pods: 2,
            max_containers_per_pod: 1,
        },
    };
    let mut s = Sampler::new(&spec, PodSpecs::default());
    s.sample();
    let (pods, omitted, _) = s.cut();
    assert_eq!(
        (pods.len(), omitted.pod_cap, omitted.container_cap),
        (2, 1, 0)
    );
}
