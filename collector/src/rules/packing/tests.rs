//! Table-driven tests of NodeGroupPacking over the issue-22 fixture (14 × c5.9xlarge, the
//! shop/api Deployment at 4 CPU / 11 GiB, aws-node at 500m / 1 GiB per node) priced by the
//! shipped catalog. Every expected figure is worked by hand in the comments: the rule's
//! arithmetic is not reused to make them.

use super::plan::{self, Demand, GroupDns, Res};
use super::*;
use crate::fleet::{DnsSnapshot, EniSnapshot, FleetSnapshot, Savings, WindowFigures};
use crate::kube::pod::PodLite;
use headroom_testbed::cluster::{self as k, PACKING_NODES};
use serde_json::Value;

const NOW: i64 = 1_780_000_000;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

fn state(objects: &[Value]) -> ClusterState {
    let mut s = ClusterState::default();
    for o in objects {
        match o["kind"].as_str() {
            Some("Node") => s.apply_node(&serde_json::from_value(o.clone()).unwrap()),
            _ => s.apply_pod(&serde_json::from_value::<PodLite>(o.clone()).unwrap()),
        }
    }
    s.all_listed()
}

/// An ENI with `peak` link-local packets/s of which `dns` are DNS; `cache` of the DNS a
/// NodeLocal DNSCache would answer, when measured.
fn eni(name: &str, peak: u64, dns: u64, cache: Option<f64>) -> EniSnapshot {
    EniSnapshot {
        interface: name.into(),
        eni_id: Some(format!("eni-{name}")),
        latest: Some(WindowFigures {
            peak_pps: peak,
            limit_pps: 1024,
            utilization: peak as f64 / 1024.0,
            dns_peak_pps: Some(dns),
            ..Default::default()
        }),
        dns: cache.map(|c| DnsSnapshot {
            measured: Savings {
                cache_peak_pps: Some(c),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The agents of the first `reporting` fixture nodes: eth0 peaks at 520/s (500 DNS, 20 IMDS
/// and Time Sync), eth1 at 100/s of DNS; `cache`: the share a cache would answer.
fn agents(reporting: usize, cache: Option<f64>) -> FleetSnapshot {
    let nodes = (0..reporting)
        .map(|i| crate::fleet::NodeSnapshot {
            name: format!("pack-{:02}", i + 1),
            instance_type: Some("c5.9xlarge".into()),
            availability_zone: Some("us-east-1a".into()),
            interfaces: vec![
                eni("eth0", 520, 500, cache.map(|c| 500.0 * c)),
                eni("eth1", 100, 100, cache.map(|c| 100.0 * c)),
            ],
            ..Default::default()
        })
        .collect();
    FleetSnapshot::one_cluster("prod", nodes, vec![])
}

fn rule(t: Thresholds) -> Packing {
    Packing {
        t,
        catalog: Catalog::builtin(),
    }
}

/// shop/api recommended at 2 CPU and 11 GiB per pod (the CPU requests were twice the use).
fn recommended() -> Recommended {
    [(
        (
            "shop".to_string(),
            "Deployment".to_string(),
            "api".to_string(),
        ),
        (2.0, 11 * 1024 * 1024 * 1024),
    )]
    .into()
}

fn judge(t: Thresholds, fleet: &FleetSnapshot, rec: &Recommended) -> Vec<Finding> {
    rule(t).judge(&state(&k::packing_fixture(NOW)), fleet, rec, now())
}

/// (instance type, nodes, $/month, DNS peak per ENI rounded, its utilization to 3 places).
type Move = (&'static str, u64, f64, f64, f64);

/// The listed moves of an evidence list, as [`Move`]s with owned names.
fn moves(list: &Value) -> Vec<(String, u64, f64, f64, f64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["instance_type"].as_str().unwrap().to_string(),
                c["nodes"].as_u64().unwrap(),
                c["usd_per_month"].as_f64().unwrap(),
                c["dns_peak_per_eni_pps"].as_f64().unwrap_or(-1.0),
                c["dns_utilization"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

fn owned(m: &Move) -> (String, u64, f64, f64, f64) {
    (m.0.to_string(), m.1, m.2, m.3, m.4)
}

/// The seed move, c5.9xlarge → m5.4xlarge, with today's and with the recommended requests.
///
/// Each node keeps aws-node (0.5 CPU, 1 GiB), so a node of V vCPU and M GiB holds
/// V × 0.65 − 0.5 CPU and M × 0.65 − 1 GiB of the api pods. The group's DNS: 14 × 500/s on
/// primary ENIs, 14 × 100/s on 14 secondary ones, 20/s of IMDS and Time Sync per primary. On N
/// nodes the primary ENI sends 7000/N + 20; the secondary DNS spreads over min(⌈14/N⌉, ENIs − 1)
/// secondaries per node. Now: 14 × $1.53 × 730 = $15 636.60.
#[test]
fn the_seed_move_and_the_moves_dns_ranks_out() {
    let fleet = agents(PACKING_NODES, None);
    let none = Recommended::new();
    let rec = recommended();
    // (requests, nodes needed on c5.9xlarge, best move, cheaper moves ranked out by DNS)
    let table: &[(&Recommended, u64, Move, &[Move])] = &[
        // Today: 160 CPU, 440 GiB. c5.9xlarge: 160/22.9 = 6.99 → 7, 440/45.8 = 9.61 → 10.
        // m5.4xlarge: 160/9.9 = 16.2 → 17 (440/40.6 = 10.8 → 11); 17 × 0.768 × 730 = 9530.88;
        // DNS 7000/17 + 20 = 431.8 (0.422). Cheaper: m5.8xlarge 160/20.3 = 7.9 → 8 nodes,
        // $8 970.24, 7000/8 + 20 = 895 (0.874 ≥ 0.8); m5.16xlarge 160/41.1 → 4, $8 970.24,
        // 1770 (1.729).
        (
            &none,
            10,
            ("m5.4xlarge", 17, 9530.88, 432.0, 0.422),
            &[
                ("m5.8xlarge", 8, 8970.24, 895.0, 0.874),
                ("m5.16xlarge", 4, 8970.24, 1770.0, 1.729),
            ],
        ),
        // Recommended: 80 CPU, 440 GiB: memory decides. c5.9xlarge still 10. m5.4xlarge:
        // 440/40.6 = 10.84 → 11 (80/9.9 → 9); 11 × 560.64 = 6167.04; 7000/11 + 20 = 656.4
        // (0.641). Cheaper: r5.8xlarge (32 vCPU, 256 GiB, $2.016/h) 80/20.3 → 4 nodes
        // (440/165.4 → 3), $5 886.72, 1750 + 20 = 1770 (1.729); r5.16xlarge 2 nodes,
        // $5 886.72, 3520 (3.438).
        (
            &rec,
            10,
            ("m5.4xlarge", 11, 6167.04, 656.0, 0.641),
            &[
                ("r5.8xlarge", 4, 5886.72, 1770.0, 1.729),
                ("r5.16xlarge", 2, 5886.72, 3520.0, 3.438),
            ],
        ),
    ];
    for (rec, needed, best, out) in table {
        let f = judge(Thresholds::default(), &fleet, rec);
        assert_eq!(f.len(), 1, "{f:?}");
        let f = &f[0];
        let e = &f.evidence;
        assert_eq!(f.severity, Severity::Info);
        assert_eq!(
            f.subject.node_group.as_deref(),
            Some("eks.amazonaws.com/nodegroup=general")
        );
        assert_eq!(e["nodes_now"], 14);
        assert_eq!(e["usd_per_month_now"], 15636.6);
        assert_eq!(e["nodes_needed_today_requests"], 10);
        assert_eq!(e["nodes_needed_recommended"], *needed);
        assert_eq!(
            moves(&e["candidates"])[0],
            owned(best),
            "{}",
            e["candidates"]
        );
        assert_eq!(
            moves(&e["ranked_out_by_dns"]),
            out.iter().map(owned).collect::<Vec<_>>()
        );
        assert_eq!(e["instance_type_after"], best.0);
        assert_eq!(e["nodes_after"], best.1);
        let saving = ((15636.6 - best.2) * 100.0_f64).round() / 100.0;
        assert_eq!(e["saving_usd_per_month"], saving);
        assert_eq!(f.cost.as_ref().unwrap().usd_per_month, Some(saving));
        assert_eq!(e["dns_threshold"], 0.8);
        // 520/1024 today.
        assert_eq!(e["dns_utilization_now"], 0.508);
        assert_eq!(e["candidates_judged"], 24, "c5, m5, r5 sizes but metal");
        let first = out[0];
        for part in [
            format!("Move node group eks.amazonaws.com/nodegroup=general to {}: {} nodes at 65% requested", best.0, best.1),
            format!("DNS breaks first on the cheaper {} ({} nodes, ${:.2}/month)", first.0, first.1, first.2),
            format!("≈ {:.0} link-local packets/s, {:.0}% of the 1024/s limit", first.3, first.4 * 100.0),
            "NodeLocal DNSCache first (these agents do not measure".to_string(),
            format!("eksctl create nodegroup --cluster CLUSTER --name general-m5-4xlarge --node-type m5.4xlarge --nodes {0} --nodes-min {0}", best.1),
        ] {
            assert!(f.fix.contains(&part), "{part}\nnot in\n{}", f.fix);
        }
        assert!(
            f.summary.contains(&format!(
                "14 × c5.9xlarge ($15636.60/month) → {} × m5.4xlarge (${:.2}/month)",
                best.1, best.2
            )),
            "{}",
            f.summary
        );
    }
    // The recommended requests are used for exactly the api pods.
    let f = &judge(Thresholds::default(), &fleet, &rec)[0];
    assert_eq!(f.evidence["pods_moving"], 40);
    assert_eq!(f.evidence["pods_with_recommendation"], 40);
    assert_eq!(f.evidence["requests_today"]["cpu_cores"], 160.0);
    assert_eq!(f.evidence["requests_recommended"]["cpu_cores"], 80.0);
    assert_eq!(f.evidence["requests_recommended"]["memory_gib"], 440.0);
    assert_eq!(f.evidence["per_node_daemonsets"]["memory_gib"], 1.0);
}

/// Without agents the cheapest move wins and DNS is said to be unmeasured; with a measured
/// cache the fix says whether the cheaper move becomes safe behind NodeLocal DNSCache.
#[test]
fn dns_unmeasured_and_cache_measured() {
    let rec = recommended();
    let f = &judge(
        Thresholds::default(),
        &FleetSnapshot::one_cluster("prod", vec![], vec![]),
        &rec,
    )[0];
    // r5.8xlarge and r5.16xlarge cost the same ($5 886.72); without DNS figures the name decides.
    assert_eq!(f.evidence["instance_type_after"], "r5.16xlarge");
    assert_eq!(f.evidence["usd_per_month_after"], 5886.72);
    assert_eq!(f.evidence["dns_peak_after_pps"], Value::Null);
    assert_eq!(f.evidence["dns_nodes_measured"], 0);
    assert!(
        f.summary.contains("DNS after not measured"),
        "{}",
        f.summary
    );
    assert!(!f.fix.contains("DNS breaks first"), "{}", f.fix);

    // 60 % cacheable: r5.8xlarge's primary would send 1750 × 0.4 + 20 = 720/s (70 %) → safe.
    // At a threshold of 0.7 it is not (0.703): the fix says to keep the safer move.
    for (threshold, safe) in [(0.8, true), (0.7, false)] {
        let t = Thresholds {
            consolidation_threshold: threshold,
            ..Thresholds::default()
        };
        let f = &judge(t, &agents(PACKING_NODES, Some(0.6)), &rec)[0];
        assert!(
            f.fix.contains(
                "takes ≈ 60% of the DNS off, so that peak would be ≈ 720/s (70% of the limit)"
            ),
            "{}",
            f.fix
        );
        assert_eq!(
            f.fix.contains("and r5.8xlarge would then be safe"),
            safe,
            "{}",
            f.fix
        );
    }
}

/// Half the nodes report: their figures stand for the whole group (×2), so the moves' DNS
/// is the same as with every agent reporting.
#[test]
fn unreported_nodes_are_counted_like_the_reporting_ones() {
    let rec = recommended();
    let all = &judge(Thresholds::default(), &agents(PACKING_NODES, None), &rec)[0];
    let half = &judge(Thresholds::default(), &agents(7, None), &rec)[0];
    assert_eq!(half.evidence["dns_nodes_measured"], 7);
    assert_eq!(all.evidence["candidates"], half.evidence["candidates"]);
    assert_eq!(half.evidence["dns_peak_after_pps"], 656.0);
}

/// No finding when no move is cheaper; none before the first lists; a Karpenter pool's fix
/// is its NodePool.
#[test]
fn no_cheaper_move_no_finding_and_karpenter_pools() {
    let fleet = agents(PACKING_NODES, None);
    // At 20 % requested the cheapest move (m5.12xlarge × 18, $30 274.56) costs more than now.
    let t = Thresholds {
        target_node_utilization: 0.2,
        ..Thresholds::default()
    };
    assert!(judge(t, &fleet, &Recommended::new()).is_empty());
    let unlisted = ClusterState::default();
    assert!(rule(Thresholds::default())
        .judge(&unlisted, &fleet, &Recommended::new(), now())
        .is_empty());
    let objects: Vec<Value> = k::packing_fixture(NOW)
        .into_iter()
        .map(|o| {
            if o["kind"] == "Node" {
                k::with_labels(o, &[("karpenter.sh/nodepool", "general")])
            } else {
                o
            }
        })
        .collect();
    let f = &rule(Thresholds::default()).judge(&state(&objects), &fleet, &recommended(), now())[0];
    assert_eq!(
        f.subject.node_group.as_deref(),
        Some("eks.amazonaws.com/nodegroup=general"),
        "the EKS label comes first, as ScaleDownBlocked groups"
    );
    let t = Thresholds {
        consolidation_group_label: "karpenter.sh/nodepool".into(),
        ..Thresholds::default()
    };
    let f = &rule(t).judge(&state(&objects), &fleet, &recommended(), now())[0];
    assert_eq!(
        f.subject.node_group.as_deref(),
        Some("karpenter.sh/nodepool=general")
    );
    for part in [
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: general\n",
        "        - key: node.kubernetes.io/instance-type\n          operator: In\n          values: [\"m5.4xlarge\"]",
    ] {
        assert!(f.fix.contains(part), "{part}\nnot in\n{}", f.fix);
    }
    assert!(!f.fix.contains("eksctl"));
}

/// When today's type stays the cheapest, the fix shrinks the group instead of moving it: a
/// catalog where m5.4xlarge costs $5/h. c5.9xlarge × 10 (today's requests, see the seed test)
/// = 10 × 1.53 × 730 = $11 169/month.
#[test]
fn the_same_type_with_fewer_nodes() {
    let mut c = (*Catalog::builtin()).clone();
    c.types
        .retain(|t, _| t == "c5.9xlarge" || t == "m5.4xlarge");
    c.prices
        .insert(("m5.4xlarge".into(), "us-east-1".into()), 5.0);
    let r = Packing {
        t: Thresholds::default(),
        catalog: Arc::new(c),
    };
    let f = &r.judge(
        &state(&k::packing_fixture(NOW)),
        &agents(PACKING_NODES, None),
        &Recommended::new(),
        now(),
    )[0];
    assert_eq!(f.evidence["instance_type_after"], "c5.9xlarge");
    assert_eq!(f.evidence["nodes_after"], 10);
    assert_eq!(f.evidence["usd_per_month_after"], 11169.0);
    assert_eq!(f.evidence["candidates_judged"], 2);
    for part in [
        "Keep node group eks.amazonaws.com/nodegroup=general on c5.9xlarge: 10 nodes",
        "eksctl scale nodegroup --cluster CLUSTER --name general --nodes 10",
    ] {
        assert!(f.fix.contains(part), "{part}\nnot in\n{}", f.fix);
    }
}

#[test]
fn nodes_needed_edges() {
    let d = |pods: (f64, f64), largest: (f64, f64), per: (f64, f64)| Demand {
        pods: Res {
            cpu: pods.0,
            mem: pods.1 * GIB,
        },
        largest: Res {
            cpu: largest.0,
            mem: largest.1 * GIB,
        },
        per_node: Res {
            cpu: per.0,
            mem: per.1 * GIB,
        },
        ..Default::default()
    };
    let node = |cpu: f64, mem: f64| Res {
        cpu,
        mem: mem * GIB,
    };
    // (demand, node, target, nodes)
    let table = [
        // 16 × 0.65 − 0.5 = 9.9 CPU per node: 99 CPU is exactly 10 nodes, 99.1 is 11.
        (
            d((99.0, 1.0), (1.0, 1.0), (0.5, 1.0)),
            node(16.0, 64.0),
            0.65,
            Some(10),
        ),
        (
            d((99.1, 1.0), (1.0, 1.0), (0.5, 1.0)),
            node(16.0, 64.0),
            0.65,
            Some(11),
        ),
        // Memory decides: 64 × 0.5 − 2 = 30 GiB per node, 91 GiB → 4.
        (
            d((1.0, 91.0), (1.0, 1.0), (0.0, 2.0)),
            node(16.0, 64.0),
            0.5,
            Some(4),
        ),
        // Nothing to place: still one node.
        (
            d((0.0, 0.0), (0.0, 0.0), (0.5, 1.0)),
            node(16.0, 64.0),
            0.65,
            Some(1),
        ),
        // DaemonSets fill the target: no count.
        (
            d((1.0, 1.0), (1.0, 1.0), (1.5, 1.0)),
            node(2.0, 8.0),
            0.65,
            None,
        ),
        // The largest pod does not fit a node beside the DaemonSets.
        (
            d((10.0, 10.0), (1.8, 1.0), (0.5, 1.0)),
            node(2.0, 8.0),
            0.65,
            None,
        ),
    ];
    for (dm, n, target, want) in table {
        assert_eq!(plan::nodes_needed(&dm, n, target), want, "{dm:?} on {n:?}");
    }
}

#[test]
fn dns_after_a_move_spreads_over_nodes_and_enis() {
    let fleet = agents(PACKING_NODES, None);
    let nodes: Vec<&crate::fleet::NodeSnapshot> =
        fleet.clusters[0].nodes.iter().map(|n| &**n).collect();
    let g = GroupDns::measure(&nodes, PACKING_NODES).unwrap();
    assert_eq!(
        (g.primary, g.secondary, g.secondary_enis, g.base),
        (7000.0, 1400.0, 14.0, 20.0)
    );
    // (nodes, max ENIs, cut, peak): 7 nodes of 8 ENIs: 1000 + 20 on the primary, the
    // secondaries 1400/(7 × 2) = 100. One ENI: all 8400/7 = 1200 + 20 on it. 2 nodes of 3
    // ENIs: primaries 3520, secondaries min(7, 2) → 350. With 50 % cut: 500 + 20.
    for (n, enis, cut, want) in [
        (7, 8, 0.0, 1020.0),
        (7, 1, 0.0, 1220.0),
        (2, 3, 0.0, 3520.0),
        (7, 8, 0.5, 520.0),
        (14, 8, 0.0, 520.0),
    ] {
        assert_eq!(
            g.peak_after(n, enis, cut),
            want,
            "{n} nodes, {enis} ENIs, cut {cut}"
        );
    }
    // Secondary-heavy: 10 nodes with 900/s on eth1 and 50 on eth0 moved to 5 nodes of 2 ENIs:
    // each node's one secondary carries 9000/5 = 1800, the primary 100 + 0.
    let heavy: Vec<crate::fleet::NodeSnapshot> = (0..10)
        .map(|i| crate::fleet::NodeSnapshot {
            name: format!("h{i}"),
            interfaces: vec![eni("eth0", 50, 50, None), eni("eth1", 900, 900, None)],
            ..Default::default()
        })
        .collect();
    let refs: Vec<&crate::fleet::NodeSnapshot> = heavy.iter().collect();
    let g = GroupDns::measure(&refs, 10).unwrap();
    assert_eq!(g.peak_after(5, 2, 0.0), 1800.0);
    assert!(GroupDns::measure(&[], 3).is_none());
}

#[test]
fn candidates_are_the_same_generation_and_bounded() {
    let c = Catalog::builtin();
    let names = |t: &str| -> Vec<String> {
        plan::candidates(&c, t, "us-east-1")
            .into_iter()
            .map(|x| x.0.to_string())
            .collect()
    };
    let c5 = names("c5.9xlarge");
    assert_eq!(c5.len(), 24, "{c5:?}");
    assert!(c5
        .iter()
        .all(|n| ["c5.", "m5.", "r5."].iter().any(|p| n.starts_with(p))));
    assert!(!c5.iter().any(|n| n.contains("metal")));
    let m6i = names("m6i.large");
    assert!(m6i.iter().all(|n| n.contains("6i.")), "{m6i:?}");
    assert!(m6i.len() <= plan::MAX_CANDIDATES);
    assert!(names("x9.huge").is_empty());
    assert!(plan::candidates(&c, "c5.9xlarge", "eu-west-9").is_empty());
}

/// Hostile or odd input: zero or missing allocatable, requests larger than any node, a
/// recommendation that is not a number, a node of a type the catalog lacks. No panic, and no
/// finding that is not a real saving.
#[test]
fn odd_input_never_panics() {
    let mut objects = vec![
        k::node("zero", "c5.9xlarge", "0", "0", NOW - 86_400),
        k::node("odd", "x9.huge", "36", "72Gi", NOW - 86_400),
        k::node("fine", "m5.large", "2", "8Gi", NOW - 86_400),
    ];
    objects.push(k::pod(
        "shop",
        "giant",
        "fine",
        Some(("ReplicaSet", "giant-1")),
        Some(("100000", "900Ti")),
    ));
    let mut no_alloc = k::node("none", "m5.large", "1", "1Gi", NOW - 86_400);
    no_alloc["status"]
        .as_object_mut()
        .unwrap()
        .remove("allocatable");
    objects.push(no_alloc);
    let rec: Recommended = [
        (
            (
                "shop".to_string(),
                "ReplicaSet".to_string(),
                "giant-1".to_string(),
            ),
            (f64::NAN, u64::MAX),
        ),
        (
            (
                "shop".to_string(),
                "Deployment".to_string(),
                "api".to_string(),
            ),
            (f64::INFINITY, 0),
        ),
    ]
    .into();
    let fleet = agents(3, None);
    let f = rule(Thresholds::default()).judge(&state(&objects), &fleet, &rec, now());
    assert!(f.is_empty(), "{f:?}");
    // The fixture with an infinite recommendation for api: today's requests stand.
    let f = judge(Thresholds::default(), &fleet, &rec);
    assert_eq!(f[0].evidence["pods_with_recommendation"], 0);
}

/// The rule takes RequestsRightSizing's recommendations from the measured history of the fleet
/// cluster that holds the watched nodes: shop/api's 40 pods are counted with them.
#[test]
fn recommendations_come_from_the_measured_history() {
    use crate::fleet::{ContainerUse, WorkloadUse};
    let st = state(&k::packing_fixture(NOW));
    let key = (
        "shop".to_string(),
        "Deployment".to_string(),
        "api".to_string(),
    );
    let use_ = WorkloadUse {
        containers: [(
            "app".to_string(),
            ContainerUse {
                cpu_mean_p95: 1.5,
                cpu_peak: 1.7,
                memory_peak: 9 << 30,
                cpu_request: Some(4.0),
                cpu_limit: None,
                memory_request: Some(11 << 30),
                memory_limit: None,
            },
        )]
        .into_iter()
        .collect(),
        hours: 24,
        co_burst: Some(0.5),
        pods: 3,
        node: "pack-01".into(),
    };
    let sizing: std::collections::BTreeMap<_, _> = [(key.clone(), use_)].into_iter().collect();
    let mut fleet = agents(14, None);
    // No measured history: today's requests.
    assert!(
        super::recommended(&st, &fleet, &crate::rules::rightsizing::Sizing::default()).is_empty()
    );
    // A second cluster that holds none of the watched nodes, with a history of its own.
    let mut other = FleetSnapshot::one_cluster("staging", vec![], vec![]).clusters[0].clone();
    other.sizing = std::sync::Arc::new(sizing.clone());
    fleet.clusters[0].sizing = std::sync::Arc::new(sizing.clone());
    fleet.clusters.insert(0, other);
    fleet.clusters[0].sizing = std::sync::Arc::new(Default::default());
    let rec = super::recommended(&st, &fleet, &crate::rules::rightsizing::Sizing::default());
    let want = crate::rules::rightsizing::recommended_requests(
        &sizing,
        &crate::rules::rightsizing::Sizing::default(),
    );
    assert_eq!(rec.len(), 1, "{rec:?}");
    let (cpu, mem) = rec[&key];
    assert_eq!((cpu, mem), (want[&key].cpu_cores, want[&key].memory_bytes));
    // max(p95 1.5, busiest 1.7 × co-burst 0.5) × 1.15, and the peak × 1.15 up to whole MiB.
    assert!((cpu - 1.725).abs() < 1e-9, "{cpu}");
    assert_eq!(
        mem,
        (((9u64 << 30) as f64 * 1.15) / 1048576.0).ceil() as u64 * 1048576
    );
    let f = judge(Thresholds::default(), &fleet, &rec);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].evidence["pods_with_recommendation"], 40,
        "{:?}",
        f[0].evidence
    );
}
