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

fn fixture_spec(root: &Path) -> PodUseSpec {
    PodUseSpec {
        cgroup_root: root.to_path_buf(),
        interval: std::time::Duration::from_millis(200),
        caps: PodUseConfig::default(),
    }
}

fn pod_spec(uid: &str, cid: &str) -> PodSpec {
    PodSpec {
        pod: crate::pod::PodRef {
            namespace: "a".into(),
            name: format!("p-{}", &uid[..4]),
            uid: uid.into(),
        },
        workload: None,
        resources: Resources::default(),
        containers: Default::default(),
        ids: [(cid.to_string(), "app".to_string())].into(),
    }
}

/// With a pod list, the trees are walked when the list changes (a new pod or container id)
/// or a kept file fails, not on the 10 s timer; the same list again is no change.
#[test]
fn the_trees_are_walked_when_the_pod_list_changes() {
    let d = tempfile::tempdir().unwrap();
    let uid2 = "1f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    let acct = |uid: &str| {
        d.path()
            .join(format!("cpuacct/kubepods/burstable/pod{uid}/{CID}"))
    };
    write(&acct(UID), "cpuacct.usage", 1000);
    let specs = PodSpecs::default();
    specs.insert(pod_spec(UID, CID));
    let g = specs.generation();
    specs.insert(pod_spec(UID, CID));
    assert_eq!(specs.generation(), g, "the same spec again is no change");
    let mut s = Sampler::new(&fixture_spec(d.path()), specs.clone());
    s.sample();
    assert_eq!(s.cost.discoveries, 1);
    // A new pod's cgroup: not walked into without an event, even after a second.
    write(&acct(uid2), "cpuacct.usage", 1000);
    std::thread::sleep(std::time::Duration::from_millis(1050));
    s.sample();
    assert_eq!(s.cost.discoveries, 1);
    assert_eq!(s.cut().0.len(), 1);
    // The pod list names it: the next sample walks and finds it.
    specs.insert(pod_spec(uid2, CID));
    s.sample();
    assert_eq!(s.cost.discoveries, 2);
    s.sample();
    let (pods, _, _) = s.cut();
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_eq!(pods[1].name.as_deref(), Some("p-1f1e"));
}

/// The node's busiest second comes from the kubelet's top cgroup at every sample (5 Hz), so
/// a one-second burst that straddles two one-second pod samples is still seen whole; the
/// pods themselves, read once a second, each see only part of it. The counters here are the
/// test's own writes of what the kernel would show: 0.8 core for 1 s from 1.4 s, on the
/// 200 ms steps but 0.4 s past a one-second sample (a burst off the steps loses up to a
/// step's share: the sampler's resolution).
#[test]
fn the_nodes_busiest_second_slides_at_every_sample() {
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("cpuacct/kubepods");
    let pod = top.join(format!("burstable/pod{UID}"));
    write(&top, "cpuacct.usage", 0);
    write(&pod, "cpuacct.usage", 0);
    write(&pod.join(CID), "cpuacct.usage", 0);
    let specs = PodSpecs::default();
    specs.insert(pod_spec(UID, CID));
    let mut s = Sampler::new(&fixture_spec(d.path()), specs);
    let t0 = std::time::Instant::now();
    // ns of CPU used by `t` seconds: 0.8 core between 1.4 s and 2.4 s.
    let used = |t: f64| (0.8 * (t.clamp(1.4, 2.4) - 1.4) * 1e9) as u64;
    let step = std::time::Duration::from_millis(200);
    for i in 0..22u32 {
        std::thread::sleep((t0 + step * i).saturating_duration_since(std::time::Instant::now()));
        let v = used(t0.elapsed().as_secs_f64());
        write(&top, "cpuacct.usage", v);
        write(&pod, "cpuacct.usage", v);
        s.sample();
    }
    let (pods, _, co) = s.cut();
    let co = co.unwrap();
    // Sampling jitter moves a step's edge by a few ms: ±5 %.
    assert!(
        (0.76..=0.84).contains(&co.cpu_busiest_second_cores),
        "node {co:?}"
    );
    assert_eq!(co.pods, 1);
    let b = pods[0].cpu.busiest_second_cores.unwrap();
    assert!(
        b < 0.7,
        "the pod at one-second samples sees part of it: {b}"
    );
}

/// A listed pod's containers the pod list does not name (the sandbox's pause container) are
/// neither read nor reported; before the list has the pod, every container is.
#[test]
fn the_sandbox_is_not_read_once_the_pod_list_names_the_containers() {
    let d = tempfile::tempdir().unwrap();
    let sandbox = "9".repeat(64);
    let top = d.path().join("cpuacct/kubepods");
    let pod = top.join(format!("burstable/pod{UID}"));
    write(&top, "cpuacct.usage", 0);
    write(&pod, "cpuacct.usage", 0);
    write(&pod.join(CID), "cpuacct.usage", 0);
    write(&pod.join(&sandbox), "cpuacct.usage", 0);
    let specs = PodSpecs::default();
    let mut s = Sampler::new(&fixture_spec(d.path()), specs.clone());
    s.sample();
    let (pods, _, _) = s.cut();
    assert_eq!(pods[0].containers.len(), 2, "unlisted pod: every container");
    specs.insert(pod_spec(UID, CID));
    std::thread::sleep(std::time::Duration::from_millis(1050));
    let r0 = s.cost.reads;
    s.sample();
    // The node's and the pod's CPU, and the named container's CPU (no memory files here).
    assert_eq!(s.cost.reads - r0, 3);
    let (pods, _, _) = s.cut();
    let ids: Vec<&str> = pods[0].containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [CID]);
}
