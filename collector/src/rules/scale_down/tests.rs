//! Table-driven tests of the pure rule over clusters stated as the API server's JSON (the
//! same objects the fake API server serves in tests/it/scale_down.rs).

use super::*;
use crate::kube::pod::PodLite;
use headroom_testbed::cluster::{
    self as k, node, pdb, pod, with_annotations, with_labels, with_volume,
};
use serde_json::{json, Value};

const NOW: i64 = 1_780_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

fn state(objects: &[Value]) -> ClusterState {
    let mut s = ClusterState::default();
    for o in objects {
        match o["kind"].as_str() {
            Some("Node") => s.apply_node(&serde_json::from_value(o.clone()).unwrap()),
            Some("PodDisruptionBudget") => s.apply_pdb(&serde_json::from_value(o.clone()).unwrap()),
            _ => s.apply_pod(&serde_json::from_value::<PodLite>(o.clone()).unwrap()),
        }
    }
    s.all_listed()
}

fn rule(t: Thresholds) -> Blocked {
    Blocked {
        t,
        catalog: Catalog::builtin(),
    }
}

fn judge_with(t: Thresholds, objects: &[Value]) -> Vec<Finding> {
    rule(t).judge(&state(objects), &|_| "prod".to_string(), now())
}

fn judge(objects: &[Value]) -> Vec<Finding> {
    judge_with(Thresholds::default(), objects)
}

/// (node, [(namespace/pod or "", reason)]) of each finding.
fn summary(found: &[Finding]) -> Vec<(String, Vec<(String, String)>)> {
    found
        .iter()
        .map(|f| {
            let pods = f.evidence["blocking_pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let who = match (b["namespace"].as_str(), b["pod"].as_str()) {
                        (Some(ns), Some(p)) => format!("{ns}/{p}"),
                        _ => String::new(),
                    };
                    (who, b["reason"].as_str().unwrap().to_string())
                })
                .collect();
            (f.subject.node.clone().unwrap(), pods)
        })
        .collect()
}

fn small_node(name: &str, cpu: &str, mem: &str) -> Value {
    node(name, "m5.large", cpu, mem, NOW - 86_400)
}

fn rs_pod(ns: &str, name: &str, node: &str, cpu: &str, mem: &str) -> Value {
    with_labels(
        pod(
            ns,
            name,
            node,
            Some(("ReplicaSet", &format!("{name}-rs"))),
            Some((cpu, mem)),
        ),
        &[("app", name)],
    )
}

#[test]
fn the_issue_fixture_pins_five_nodes_each_by_its_pod() {
    let found = judge(&k::scale_down_fixture(NOW));
    let want: Vec<(String, Vec<(String, String)>)> = k::FIXTURE_BLOCKERS
        .iter()
        .map(|(n, p, r)| (n.to_string(), vec![(p.to_string(), r.to_string())]))
        .collect();
    assert_eq!(summary(&found), want);
    let a = &found[0];
    assert_eq!(a.severity, Severity::Info);
    assert_eq!(
        a.subject.node_group.as_deref(),
        Some("eks.amazonaws.com/nodegroup=general")
    );
    assert_eq!(a.subject.cluster, "prod");
    // m5.4xlarge in us-east-1: $0.768/h × 730 h.
    assert_eq!(a.cost.as_ref().unwrap().usd_per_month, Some(560.64));
    // Requests on node-a: aws-node 25m + CoreDNS 100m of 15890m; 64 + 70 MiB of 57691 MiB.
    assert_eq!(a.evidence["cpu_utilization"], json!(r3(125.0 / 15890.0)));
    assert_eq!(a.evidence["memory_utilization"], json!(r3(134.0 / 57691.0)));
    assert!(
        a.fix.contains("kind: PodDisruptionBudget") && a.fix.contains("\"k8s-app\": \"kube-dns\""),
        "{}",
        a.fix
    );
    assert!(!a.fix.contains("pod-template-hash"), "{}", a.fix);
    assert!(
        found[1]
            .fix
            .contains("safe-to-evict-local-volumes\":\"scratch\""),
        "{}",
        found[1].fix
    );
    assert!(found[1]
        .fix
        .contains("--skip-nodes-with-local-storage=false"));
    assert!(
        found[2].fix.contains("kind: Deployment")
            && found[2].fix.contains("registry.example/debug:1"),
        "{}",
        found[2].fix
    );
    assert!(
        found[3].fix.contains("patch deployment batch --type json")
            && found[3].fix.contains("safe-to-evict"),
        "{}",
        found[3].fix
    );
    assert!(
        found[4].fix.contains("maxUnavailable: 0") && found[4].fix.contains("maxUnavailable: 1"),
        "{}",
        found[4].fix
    );
    assert!(
        a.summary.contains("kube-system/coredns-5d78c9869d-x7k2p")
            && a.summary.contains("$560.64/month"),
        "{}",
        a.summary
    );
}

#[test]
fn each_fix_applied_to_the_fixture_frees_its_node() {
    let base = k::scale_down_fixture(NOW);
    let fixes: [(&str, Value); 5] = [
        (
            "node-a",
            pdb(
                "kube-system",
                "coredns",
                json!({"k8s-app": "kube-dns"}),
                json!({"maxUnavailable": 1}),
                1,
                2,
            ),
        ),
        (
            "node-b",
            with_annotations(
                base.iter()
                    .find(|o| o["metadata"]["name"] == "cache-6f9d8b7c5-q2w3e")
                    .unwrap()
                    .clone(),
                &[(
                    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes",
                    "scratch",
                )],
            ),
        ),
        (
            "node-c",
            with_annotations(
                base.iter()
                    .find(|o| o["metadata"]["name"] == "debug")
                    .unwrap()
                    .clone(),
                &[("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")],
            ),
        ),
        (
            "node-d",
            with_annotations(
                base.iter()
                    .find(|o| o["metadata"]["name"] == "batch-7c8d9e0f1-r4t5y")
                    .unwrap()
                    .clone(),
                &[("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")],
            ),
        ),
        (
            "node-e",
            pdb(
                "shop",
                "db",
                json!({"app": "db"}),
                json!({"maxUnavailable": 1}),
                1,
                3,
            ),
        ),
    ];
    for (freed, fix) in fixes {
        let mut objects = base.clone();
        objects.push(fix);
        let nodes: Vec<String> = judge(&objects)
            .iter()
            .map(|f| f.subject.node.clone().unwrap())
            .collect();
        assert_eq!(nodes.len(), 4, "{freed}: {nodes:?}");
        assert!(
            !nodes.iter().any(|n| n == freed),
            "{freed} still pinned: {nodes:?}"
        );
    }
}

#[test]
fn utilization_at_the_threshold_is_not_under_it() {
    // 1000m and 1000 MiB allocatable; a bare pod pins the node whenever it is judged.
    let case = |cpu: &str, mem: &str, threshold: f64| {
        let objects = [
            small_node("n", "1000m", "1000Mi"),
            small_node("roomy", "8", "32Gi"),
            pod("shop", "bare", "n", None, Some((cpu, mem))),
        ];
        let t = Thresholds {
            scale_down_utilization_threshold: threshold,
            ..Thresholds::default()
        };
        judge_with(t, &objects)
            .iter()
            .filter(|f| f.subject.node.as_deref() == Some("n"))
            .count()
    };
    assert_eq!(case("500m", "100Mi", 0.5), 0, "CPU at exactly 50 %");
    assert_eq!(case("499m", "100Mi", 0.5), 1, "CPU at 49.9 %");
    assert_eq!(
        case("100m", "500Mi", 0.5),
        0,
        "memory at 50 % decides (the larger share)"
    );
    assert_eq!(case("100m", "499Mi", 0.5), 1);
    assert_eq!(case("600m", "100Mi", 0.7), 1, "freee's 0.7");
    assert_eq!(case("700m", "100Mi", 0.7), 0);
}

#[test]
fn daemonset_and_mirror_pods_never_block() {
    let objects = [
        small_node("n", "2", "8Gi"),
        small_node("other", "2", "8Gi"),
        with_labels(
            pod(
                "kube-system",
                "ds",
                "n",
                Some(("DaemonSet", "ds")),
                Some(("100m", "64Mi")),
            ),
            &[("a", "b")],
        ),
        with_annotations(
            pod("kube-system", "static", "n", None, Some(("100m", "64Mi"))),
            &[("kubernetes.io/config.mirror", "abc")],
        ),
        with_annotations(
            pod(
                "kube-system",
                "custom-ds",
                "n",
                Some(("ExtendedDaemonSet", "x")),
                None,
            ),
            &[("cluster-autoscaler.kubernetes.io/daemonset-pod", "true")],
        ),
        with_volume(
            with_labels(
                pod(
                    "kube-system",
                    "ds-hostpath",
                    "n",
                    Some(("DaemonSet", "logs")),
                    None,
                ),
                &[("a", "c")],
            ),
            json!({"name": "varlog", "hostPath": {"path": "/var/log"}}),
        ),
    ];
    assert!(
        judge(&objects).is_empty(),
        "{:?}",
        summary(&judge(&objects))
    );
}

#[test]
fn young_nodes_are_not_judged_and_unlisted_clusters_are_not_judged() {
    let young = |age: i64| {
        let objects = [
            node("n", "m5.large", "2", "8Gi", NOW - age),
            small_node("other", "2", "8Gi"),
            pod("shop", "bare", "n", None, Some(("100m", "64Mi"))),
        ];
        judge(&objects).len()
    };
    assert_eq!(young(5 * 60), 0, "5 minutes old");
    assert_eq!(young(10 * 60 - 1), 0);
    assert_eq!(young(10 * 60), 1, "10 minutes old");
    let mut s = ClusterState::default();
    s.apply_node(&serde_json::from_value(small_node("n", "2", "8Gi")).unwrap());
    s.apply_pod(&serde_json::from_value(pod("shop", "bare", "n", None, None)).unwrap());
    assert!(
        rule(Thresholds::default())
            .judge(&s, &|_| String::new(), now())
            .is_empty(),
        "before every kind is listed"
    );
}

/// One pod (with its node and a roomy second node) → the reasons it pins its node for.
fn reasons_of(p: Value, extra: &[Value], karpenter: bool) -> Vec<String> {
    let mut n = small_node("n", "4", "16Gi");
    if karpenter {
        n = with_labels(n, &[("karpenter.sh/nodepool", "default")]);
    }
    let mut objects = vec![n, small_node("roomy", "8", "32Gi"), p];
    objects.extend_from_slice(extra);
    let found = judge(&objects);
    found
        .iter()
        .filter(|f| f.subject.node.as_deref() == Some("n"))
        .flat_map(|f| f.evidence["blocking_pods"].as_array().unwrap().clone())
        .flat_map(|b| {
            let mut r = vec![b["reason"].as_str().unwrap().to_string()];
            r.extend(
                b["other_reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string()),
            );
            r
        })
        .collect()
}

#[test]
fn pod_reasons_follow_the_autoscalers_rules() {
    let bare = || pod("shop", "p", "n", None, Some(("100m", "64Mi")));
    let rs = || rs_pod("shop", "p", "n", "100m", "64Mi");
    let sys = || rs_pod("kube-system", "p", "n", "100m", "64Mi");
    let empty_dir = |p: Value, medium: Option<&str>| {
        let v = match medium {
            Some(m) => json!({"name": "tmp", "emptyDir": {"medium": m}}),
            None => json!({"name": "tmp", "emptyDir": {}}),
        };
        with_volume(p, v)
    };
    let ann = |p: Value, k: &str, v: &str| with_annotations(p, &[(k, v)]);
    const STE: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
    const LOCAL: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
    let sys_pdb = pdb(
        "kube-system",
        "p",
        json!({"app": "p"}),
        json!({"maxUnavailable": 1}),
        1,
        2,
    );
    let zero_pdb = pdb(
        "shop",
        "p",
        json!({"app": "p"}),
        json!({"minAvailable": "100%"}),
        0,
        2,
    );
    let v = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    /// (what, the pod, other objects, on a Karpenter node, the reasons expected).
    type Case<'a> = (&'a str, Value, Vec<Value>, bool, Vec<String>);
    let cases: Vec<Case> = vec![
        ("replicated pod moves", rs(), vec![], false, v(&[])),
        ("bare pod", bare(), vec![], false, v(&["NotReplicated"])),
        (
            "custom controller",
            pod("shop", "p", "n", Some(("Rollout", "p")), None),
            vec![],
            false,
            v(&["NotReplicated"]),
        ),
        (
            "Job pod moves",
            pod("shop", "p", "n", Some(("Job", "p")), None),
            vec![],
            false,
            v(&[]),
        ),
        (
            "kube-system without PDB",
            sys(),
            vec![],
            false,
            v(&["UnmovableKubeSystemPod"]),
        ),
        (
            "kube-system with a PDB",
            sys(),
            vec![sys_pdb.clone()],
            false,
            v(&[]),
        ),
        (
            "emptyDir",
            empty_dir(rs(), None),
            vec![],
            false,
            v(&["LocalStorageRequested"]),
        ),
        (
            "emptyDir on Memory",
            empty_dir(rs(), Some("Memory")),
            vec![],
            false,
            v(&[]),
        ),
        (
            "emptyDir named safe",
            ann(empty_dir(rs(), None), LOCAL, "tmp"),
            vec![],
            false,
            v(&[]),
        ),
        (
            "other volume named safe",
            ann(empty_dir(rs(), None), LOCAL, "cache"),
            vec![],
            false,
            v(&["LocalStorageRequested"]),
        ),
        (
            "hostPath",
            with_volume(rs(), json!({"name": "h", "hostPath": {"path": "/x"}})),
            vec![],
            false,
            v(&["LocalStorageRequested"]),
        ),
        (
            "safe-to-evict false",
            ann(rs(), STE, "false"),
            vec![],
            false,
            v(&["NotSafeToEvictAnnotation"]),
        ),
        (
            "PDB allows 0",
            rs(),
            vec![zero_pdb.clone()],
            false,
            v(&["NotEnoughPdb"]),
        ),
        (
            "PDB of another namespace",
            rs(),
            vec![pdb(
                "other",
                "p",
                json!({"app": "p"}),
                json!({"maxUnavailable": 0}),
                0,
                1,
            )],
            false,
            v(&[]),
        ),
        (
            "safe-to-evict true overrides all",
            ann(empty_dir(bare(), None), STE, "true"),
            vec![zero_pdb.clone()],
            false,
            v(&[]),
        ),
        (
            "all at once, in the autoscaler's order",
            ann(
                empty_dir(pod("kube-system", "p", "n", None, None), None),
                STE,
                "false",
            ),
            vec![],
            false,
            v(&[
                "NotReplicated",
                "UnmovableKubeSystemPod",
                "NotSafeToEvictAnnotation",
                "LocalStorageRequested",
            ]),
        ),
        (
            "expendable pod",
            {
                let mut p = bare();
                p["spec"]["priority"] = json!(-100);
                p
            },
            vec![],
            false,
            v(&[]),
        ),
        ("karpenter: bare pod moves", bare(), vec![], true, v(&[])),
        (
            "karpenter: kube-system without PDB moves",
            sys(),
            vec![],
            true,
            v(&[]),
        ),
        (
            "karpenter: emptyDir moves",
            empty_dir(rs(), None),
            vec![],
            true,
            v(&[]),
        ),
        (
            "karpenter: do-not-disrupt",
            ann(rs(), "karpenter.sh/do-not-disrupt", "true"),
            vec![],
            true,
            v(&["DoNotDisrupt"]),
        ),
        (
            "karpenter: PDB allows 0",
            rs(),
            vec![zero_pdb],
            true,
            v(&["NotEnoughPdb"]),
        ),
    ];
    for (what, p, extra, karpenter, want) in cases {
        assert_eq!(reasons_of(p, &extra, karpenter), want, "{what}");
    }
}

#[test]
fn pods_that_fit_no_other_node_pin_theirs() {
    let selected = with_labels(
        {
            let mut p = rs_pod("shop", "p", "n", "100m", "64Mi");
            p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "n"});
            p
        },
        &[],
    );
    assert_eq!(reasons_of(selected, &[], false), ["NoPlaceToGo"]);
    // 3 of the roomy node's 8 CPUs are taken: 6 do not fit there.
    let big = rs_pod("shop", "big", "n", "6", "1Gi");
    let filler = rs_pod("shop", "filler", "roomy", "3", "1Gi");
    let wide = small_node("n", "16", "64Gi");
    let objects = [wide, small_node("roomy", "8", "32Gi"), big.clone(), filler];
    let f = judge(&objects);
    assert_eq!(
        summary(&f),
        [(
            "n".to_string(),
            vec![("shop/big".to_string(), "NoPlaceToGo".to_string())]
        )]
    );
    assert!(f[0].fix.contains("requests 6000m CPU"), "{}", f[0].fix);
    // A tainted node takes only pods that tolerate its taint.
    let mut tainted = small_node("roomy", "8", "32Gi");
    tainted["spec"]["taints"] =
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
    let p = rs_pod("shop", "p", "n", "100m", "64Mi");
    let mut tolerant = p.clone();
    tolerant["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
    let run = |p: Value| summary(&judge(&[small_node("n", "4", "16Gi"), tainted.clone(), p])).len();
    assert_eq!(run(p), 1);
    assert_eq!(run(tolerant), 0);
    // Pods of one node reserve room as they move: two of 5 CPUs do not both fit in 8.
    let two = [
        small_node("n", "32", "64Gi"),
        small_node("roomy", "8", "32Gi"),
        rs_pod("shop", "a", "n", "5", "1Gi"),
        rs_pod("shop", "b", "n", "5", "1Gi"),
    ];
    assert_eq!(
        summary(&judge(&two))[0].1,
        [("shop/b".to_string(), "NoPlaceToGo".to_string())]
    );
}

#[test]
fn node_annotations_pin_nodes_and_bad_input_is_said() {
    let disabled = with_annotations(
        small_node("n", "4", "16Gi"),
        &[(
            "cluster-autoscaler.kubernetes.io/scale-down-disabled",
            "true",
        )],
    );
    let f = judge(&[disabled, small_node("o", "4", "16Gi")]);
    assert_eq!(
        summary(&f),
        [(
            "n".to_string(),
            vec![(String::new(), "ScaleDownDisabled".to_string())]
        )]
    );
    assert!(f[0]
        .fix
        .contains("kubectl annotate node n cluster-autoscaler.kubernetes.io/scale-down-disabled-"));
    // Pods without requests count as nothing (as the autoscaler counts them) and are said.
    let mut unknown = node("n", "x9.huge", "4", "16Gi", NOW - 86_400);
    unknown["metadata"]["labels"]["karpenter.sh/nodepool"] = json!("default");
    unknown["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] = json!("true");
    let objects = [
        unknown,
        small_node("o", "4", "16Gi"),
        pod("shop", "a", "n", Some(("ReplicaSet", "a")), None),
        pod("shop", "b", "n", Some(("ReplicaSet", "b")), None),
    ];
    let f = judge(&objects);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence["pods_without_requests"], 2);
    assert_eq!(f[0].evidence["utilization"], 0.0);
    assert_eq!(f[0].evidence["autoscaler"], "karpenter");
    let cost = f[0].cost.as_ref().unwrap();
    assert_eq!(cost.usd_per_month, None);
    assert!(
        cost.basis
            .contains("x9.huge is not in the instance catalog"),
        "{}",
        cost.basis
    );
    assert!(f[0].summary.contains("cost is unknown"), "{}", f[0].summary);
    // A node without allocatable figures is not judged rather than judged wrong.
    let mut blank = small_node("n", "4", "16Gi");
    blank["status"]["allocatable"] = json!({});
    assert!(judge(&[blank, pod("shop", "bare", "n", None, None)]).is_empty());
}

#[test]
fn a_freed_node_says_whether_its_group_keeps_dns_under_the_limit() {
    use crate::fleet::{EniSnapshot, NodeSnapshot, WindowFigures};
    // node-a..node-f of the fixture; agents report each node's primary ENI: node-b at 700/s,
    // the others at 300/s, limit 1024. Removing node-b spreads 700/s over five nodes in
    // proportion to their load (140 each): 440/s, 43 % — under 0.8. At 0.4 it would not be.
    let eni = |peak: u64| EniSnapshot {
        interface: "eth0".into(),
        eni_id: Some("eni-1".into()),
        latest: Some(WindowFigures {
            peak_pps: peak,
            limit_pps: 1024,
            dns_peak_pps: Some(peak),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"]
        .iter()
        .map(|n| NodeSnapshot {
            name: n.to_string(),
            interfaces: vec![eni(if *n == "node-b" { 700 } else { 300 })],
            ..Default::default()
        })
        .collect();
    let fleet = crate::fleet::FleetSnapshot::one_cluster("prod", nodes, vec![]);
    let kube = crate::kube::KubeView {
        cluster: crate::kube::cluster::Cluster::from_state(state(&k::scale_down_fixture(NOW))),
        ..Default::default()
    };
    let input = Input {
        fleet: &fleet,
        kube: &kube,
    };
    let f = rule(Thresholds::default()).evaluate(&input, now());
    let b = f
        .iter()
        .find(|f| f.subject.node.as_deref() == Some("node-b"))
        .unwrap();
    let d = &b.evidence["dns_after_removal"];
    assert_eq!(d["predicted_peak_pps"], 440.0, "{d}");
    assert_eq!(d["keeps_under_threshold"], true);
    assert!(!b.summary.contains("link-local DNS limit"));
    let t = Thresholds {
        consolidation_threshold: 0.4,
        ..Thresholds::default()
    };
    let f = rule(t).evaluate(&input, now());
    let b = f
        .iter()
        .find(|f| f.subject.node.as_deref() == Some("node-b"))
        .unwrap();
    assert_eq!(
        b.evidence["dns_after_removal"]["keeps_under_threshold"],
        false
    );
    assert!(
        b.summary.contains("at 43% of the link-local DNS limit"),
        "{}",
        b.summary
    );
}
