//! Kubernetes objects in the API server's own JSON shapes (core/v1 Pods and Nodes,
//! policy/v1 PodDisruptionBudgets), for the fake API server and the rules' tests: builders,
//! and the issue-21 fixture cluster of six nodes where five are pinned, each by one pod for
//! one of the Cluster Autoscaler's reasons.

use serde_json::{json, Value};

/// RFC 3339 of seconds since the epoch.
pub fn rfc3339(s: i64) -> String {
    let days = s.div_euclid(86_400);
    let secs = s.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A Ready node of `instance_type` in us-east-1a with `cpu` and `memory` allocatable, created
/// at `created_s`.
pub fn node(name: &str, instance_type: &str, cpu: &str, memory: &str, created_s: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": rfc3339(created_s),
            "labels": {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": instance_type,
                "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": "us-east-1a",
                "eks.amazonaws.com/nodegroup": "general"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": format!("aws:///us-east-1a/i-{name}")},
        "status": {"capacity": {"cpu": "16", "memory": "64Gi", "pods": "234"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "234"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": rfc3339(created_s), "lastTransitionTime": rfc3339(created_s)}],
            "images": [{"names": ["602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.19.0"], "sizeBytes": 45_000_000}],
            "nodeInfo": {"kubeletVersion": "v1.32.1", "containerRuntimeVersion": "containerd://1.7.25"}}})
}

/// A running pod on `node` with one container requesting `cpu`/`memory` (None: no requests),
/// owned by `owner` (kind, name) as its controller.
pub fn pod(
    ns: &str,
    name: &str,
    node: &str,
    owner: Option<(&str, &str)>,
    requests: Option<(&str, &str)>,
) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{ns}-{name}"),
            "labels": {}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}},
        "spec": {"nodeName": node, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "serviceAccountName": "default", "priority": 0,
            "containers": [{"name": "main", "image": format!("registry.example/{name}:1"),
                "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {}}],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "podIP": "10.0.0.10", "conditions": [{"type": "Ready", "status": "True"}]}});
    if let Some((kind, owner_name)) = owner {
        let api = match kind {
            "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Node" => "v1",
            "Job" => "batch/v1",
            _ => "example.io/v1",
        };
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": owner_name,
            "uid": format!("uid-{owner_name}"), "controller": true, "blockOwnerDeletion": true}]);
    }
    if let Some((cpu, mem)) = requests {
        p["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": cpu, "memory": mem}});
    }
    p
}

/// Sets labels on an object.
pub fn with_labels(mut o: Value, labels: &[(&str, &str)]) -> Value {
    for (k, v) in labels {
        o["metadata"]["labels"][*k] = json!(v);
    }
    o
}

/// Sets annotations on an object.
pub fn with_annotations(mut o: Value, ann: &[(&str, &str)]) -> Value {
    for (k, v) in ann {
        o["metadata"]["annotations"][*k] = json!(v);
    }
    o
}

/// Adds a volume to a pod.
pub fn with_volume(mut p: Value, v: Value) -> Value {
    p["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(v);
    p
}

/// A policy/v1 PodDisruptionBudget over `match_labels` with `spec` (e.g. maxUnavailable) and
/// the status the disruption controller would write.
pub fn pdb(
    ns: &str,
    name: &str,
    match_labels: Value,
    spec: Value,
    allowed: i32,
    healthy: i32,
) -> Value {
    let mut s = json!({"selector": {"matchLabels": match_labels}});
    for (k, v) in spec.as_object().expect("spec object") {
        s[k] = v.clone();
    }
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-pdb-{name}"), "generation": 1},
        "spec": s,
        "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": healthy,
            "desiredHealthy": healthy - allowed, "expectedPods": healthy}})
}

/// The six nodes of issue 21 (m5.4xlarge in us-east-1, a day old at `now_s`), each with the
/// aws-node DaemonSet pod; node-a runs CoreDNS (kube-system, no PDB), node-b a pod with an
/// emptyDir, node-c a pod without a controller, node-d a pod annotated safe-to-evict "false",
/// node-e a StatefulSet pod whose PDB allows 0 disruptions, node-f an ordinary ReplicaSet pod
/// and kube-proxy as a mirror pod. Every node is far under half requested.
pub fn scale_down_fixture(now_s: i64) -> Vec<Value> {
    let day_ago = now_s - 86_400;
    let mut out = Vec::new();
    for n in ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"] {
        out.push(node(n, "m5.4xlarge", "15890m", "57691Mi", day_ago));
        out.push(with_labels(
            pod(
                "kube-system",
                &format!("aws-node-{n}"),
                n,
                Some(("DaemonSet", "aws-node")),
                Some(("25m", "64Mi")),
            ),
            &[
                ("k8s-app", "aws-node"),
                ("controller-revision-hash", "7d5b9c8f6"),
            ],
        ));
    }
    out.push(with_labels(
        pod(
            "kube-system",
            "coredns-5d78c9869d-x7k2p",
            "node-a",
            Some(("ReplicaSet", "coredns-5d78c9869d")),
            Some(("100m", "70Mi")),
        ),
        &[("k8s-app", "kube-dns"), ("pod-template-hash", "5d78c9869d")],
    ));
    out.push(with_volume(
        with_labels(
            pod(
                "shop",
                "cache-6f9d8b7c5-q2w3e",
                "node-b",
                Some(("ReplicaSet", "cache-6f9d8b7c5")),
                Some(("500m", "1Gi")),
            ),
            &[("app", "cache"), ("pod-template-hash", "6f9d8b7c5")],
        ),
        json!({"name": "scratch", "emptyDir": {}}),
    ));
    out.push(with_labels(
        pod("shop", "debug", "node-c", None, Some(("100m", "128Mi"))),
        &[("run", "debug")],
    ));
    out.push(with_annotations(
        with_labels(
            pod(
                "shop",
                "batch-7c8d9e0f1-r4t5y",
                "node-d",
                Some(("ReplicaSet", "batch-7c8d9e0f1")),
                Some(("1", "2Gi")),
            ),
            &[("app", "batch"), ("pod-template-hash", "7c8d9e0f1")],
        ),
        &[("cluster-autoscaler.kubernetes.io/safe-to-evict", "false")],
    ));
    out.push(with_labels(
        pod(
            "shop",
            "db-0",
            "node-e",
            Some(("StatefulSet", "db")),
            Some(("2", "8Gi")),
        ),
        &[
            ("app", "db"),
            ("statefulset.kubernetes.io/pod-name", "db-0"),
            ("controller-revision-hash", "db-5b6c7d8e9f"),
        ],
    ));
    out.push(pdb(
        "shop",
        "db",
        json!({"app": "db"}),
        json!({"maxUnavailable": 0}),
        0,
        3,
    ));
    out.push(with_labels(
        pod(
            "shop",
            "web-8a9b0c1d2-u6i7o",
            "node-f",
            Some(("ReplicaSet", "web-8a9b0c1d2")),
            Some(("250m", "512Mi")),
        ),
        &[("app", "web"), ("pod-template-hash", "8a9b0c1d2")],
    ));
    out.push(with_annotations(
        with_labels(
            pod(
                "kube-system",
                "kube-proxy-node-f",
                "node-f",
                Some(("Node", "node-f")),
                Some(("100m", "0")),
            ),
            &[("k8s-app", "kube-proxy")],
        ),
        &[
            ("kubernetes.io/config.mirror", "4b1c9e1f2a3d"),
            ("kubernetes.io/config.source", "file"),
        ],
    ));
    out
}

/// The issue-21 fixture's expected findings: node → (namespace/pod, the autoscaler's reason).
pub const FIXTURE_BLOCKERS: [(&str, &str, &str); 5] = [
    (
        "node-a",
        "kube-system/coredns-5d78c9869d-x7k2p",
        "UnmovableKubeSystemPod",
    ),
    (
        "node-b",
        "shop/cache-6f9d8b7c5-q2w3e",
        "LocalStorageRequested",
    ),
    ("node-c", "shop/debug", "NotReplicated"),
    (
        "node-d",
        "shop/batch-7c8d9e0f1-r4t5y",
        "NotSafeToEvictAnnotation",
    ),
    ("node-e", "shop/db-0", "NotEnoughPdb"),
];

/// Nodes of [`packing_fixture`], and its pods' requests: 40 pods of Deployment shop/api at
/// 4 CPU and 11 GiB each, and the aws-node DaemonSet at 500m and 1 GiB on every node.
pub const PACKING_NODES: usize = 14;
pub const PACKING_API_PODS: usize = 40;

/// The node group of issue 22's background reading: 14 c5.9xlarge nodes (36 vCPU, 72 GiB
/// allocatable, us-east-1a, EKS node group `general`, a day old at `now_s`), each with the
/// aws-node DaemonSet pod (500m, 1Gi), and 40 pods of Deployment shop/api (4 CPU, 11Gi)
/// spread round-robin: 160 CPU and 440 GiB requested of 504 and 1008.
pub fn packing_fixture(now_s: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let name = |i: usize| format!("pack-{:02}", i + 1);
    for i in 0..PACKING_NODES {
        let n = name(i);
        out.push(node(&n, "c5.9xlarge", "36", "72Gi", now_s - 86_400));
        out.push(with_labels(
            pod(
                "kube-system",
                &format!("aws-node-{n}"),
                &n,
                Some(("DaemonSet", "aws-node")),
                Some(("500m", "1Gi")),
            ),
            &[("k8s-app", "aws-node")],
        ));
    }
    for k in 0..PACKING_API_PODS {
        out.push(with_labels(
            pod(
                "shop",
                &format!("api-5d8f7c6b9-{k:02}"),
                &name(k % PACKING_NODES),
                Some(("ReplicaSet", "api-5d8f7c6b9")),
                Some(("4", "11Gi")),
            ),
            &[("app", "api"), ("pod-template-hash", "5d8f7c6b9")],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
