//! Table-driven at the edges: co-burst 0, partial and unknown; idle containers; a change too
//! small to matter; requests too low (the change costs); short histories and other kinds.

use super::*;
use crate::catalog::InstanceType;

const MI: u64 = 1 << 20;

fn use_(mean_p95: f64, peak: f64, mem: u64, req: Option<(f64, u64)>) -> ContainerUse {
    ContainerUse {
        cpu_mean_p95: mean_p95,
        cpu_peak: peak,
        memory_peak: mem,
        cpu_request: req.map(|r| r.0),
        cpu_limit: None,
        memory_request: req.map(|r| r.1),
        memory_limit: None,
    }
}

#[test]
fn recommendations_at_the_edges() {
    // (mean p95, busiest second, memory, co-burst) → (cpu request, cpu limit, memory)
    let cases = [
        // A third of the pods burst together: the burst's third beats the mean.
        (
            (0.2, 1.0, 300 * MI, Some(1.0 / 3.0)),
            (0.385, 1.15, 345 * MI),
        ),
        // Never measured together: assume all do (request = burst).
        ((0.2, 1.0, 300 * MI, None), (1.15, 1.15, 345 * MI)),
        // Never above request at once: the mean alone.
        ((0.2, 1.0, 300 * MI, Some(0.0)), (0.23, 1.15, 345 * MI)),
        // The mean over the share of the burst.
        ((0.5, 0.6, 100 * MI, Some(0.5)), (0.575, 0.69, 115 * MI)),
        // Idle: the floors; the limit never under the request.
        ((0.0, 0.0, 0, Some(1.0)), (MIN_CPU, MIN_CPU, MIN_MEMORY)),
        // Shares outside 0..1 are clamped.
        ((0.1, 1.0, 64 * MI, Some(7.0)), (1.15, 1.15, 74 * MI)),
    ];
    for ((mean, peak, mem, share), (cpu, limit, memory)) in cases {
        let r = recommend(&use_(mean, peak, mem, None), share, 0.15);
        assert_eq!(
            (r.cpu_request, r.cpu_limit, r.memory_request, r.memory_limit),
            (cpu, limit, memory, memory),
            "{mean} {peak} {mem} {share:?}"
        );
    }
}

#[test]
fn node_share_freed_per_month() {
    // The seed's m5.4xlarge (16 vCPU, 64 GiB, $0.768/h = $560.64/month): 10 pods freeing half a
    // core each free 5/16 of a node.
    assert_eq!(freed_per_month(0.5, 0, 10, 16, 65536, 560.64), 175.2);
    // Memory is the larger share: 10 × 3 GiB of 64 GiB.
    assert_eq!(freed_per_month(0.1, 3 << 30, 10, 16, 65536, 560.64), 262.8);
    // Raising requests costs.
    assert_eq!(freed_per_month(-0.5, 0, 10, 16, 65536, 560.64), -175.2);
}

fn workload(hours: usize, c: ContainerUse, share: Option<f64>) -> WorkloadUse {
    WorkloadUse {
        containers: [("app".to_string(), c)].into_iter().collect(),
        hours,
        co_burst: share,
        pods: 10,
        node: "n1".into(),
    }
}

fn key(kind: &str) -> WorkloadKey {
    ("shop".into(), kind.into(), "api".into())
}

#[test]
fn findings_say_what_changes_and_what_it_frees() {
    let rule = RequestsRightSizing {
        s: Sizing::default(),
        catalog: Catalog::builtin(),
    };
    let m5 = InstanceType {
        vcpu: 16,
        memory_mib: 65536,
        max_enis: 8,
    };
    let price = |p: Option<f64>| Cost {
        usd_per_month: p,
        basis: "m5.4xlarge on demand in us-east-1".into(),
    };
    // Requests 1 core / 1 GiB; used 0.2 mean, 1.0 burst, 300 MiB; a third burst together.
    let over = workload(
        24,
        use_(0.2, 1.0, 300 * MI, Some((1.0, 1 << 30))),
        Some(1.0 / 3.0),
    );
    let f = rule
        .finding(
            "c",
            &key("Deployment"),
            &over,
            10,
            price(Some(560.64)),
            Some(&m5),
        )
        .unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.subject.workload.as_deref(), Some("Deployment/api"));
    // CPU frees 10 × 0.615 / 16 = 0.384 of a node; memory 10 × 679 MiB / 64 GiB = 0.104.
    let freed = f.cost.as_ref().unwrap().usd_per_month.unwrap();
    assert_eq!(freed, 215.5, "{}", f.summary);
    assert!(f
        .fix
        .contains("kubectl -n shop patch deployment api --patch-file requests.yaml"));
    assert!(
        f.fix.contains("cpu: \"385m\"") && f.fix.contains("memory: \"345Mi\""),
        "{}",
        f.fix
    );
    assert!(f.summary.contains("frees $215.50/month"), "{}", f.summary);
    // Within 20 % (and 50 m / 64 MiB) of what it asks: no finding.
    let close = workload(
        24,
        use_(0.2, 1.0, 300 * MI, Some((0.4, 350 * MI))),
        Some(1.0 / 3.0),
    );
    assert!(rule
        .finding(
            "c",
            &key("Deployment"),
            &close,
            10,
            price(Some(560.64)),
            Some(&m5)
        )
        .is_none());
    // Asking too little: the finding says what the change costs; no price: no figure.
    let under = workload(
        24,
        use_(0.9, 1.0, 900 * MI, Some((0.1, 128 * MI))),
        Some(1.0),
    );
    let f = rule
        .finding("c", &key("StatefulSet"), &under, 3, price(None), Some(&m5))
        .unwrap();
    assert_eq!(f.cost.as_ref().unwrap().usd_per_month, None);
    assert!(f.fix.contains("patch statefulset api"));
    let f = rule
        .finding(
            "c",
            &key("StatefulSet"),
            &under,
            3,
            price(Some(560.64)),
            Some(&m5),
        )
        .unwrap();
    assert!(f.cost.unwrap().usd_per_month.unwrap() < 0.0 && f.summary.contains("costs $"));
}

#[test]
fn recommended_requests_sum_containers_of_sized_workloads_only() {
    let two = WorkloadUse {
        containers: [
            ("app".to_string(), use_(0.2, 1.0, 300 * MI, None)),
            ("proxy".to_string(), use_(0.0, 0.0, 0, None)),
        ]
        .into_iter()
        .collect(),
        ..workload(24, use_(0.0, 0.0, 0, None), Some(0.0))
    };
    let sizing: BTreeMap<WorkloadKey, WorkloadUse> = [
        (key("Deployment"), two),
        (
            key("DaemonSet"),
            workload(24, use_(0.2, 1.0, 1, None), None),
        ),
        (
            ("shop".into(), "StatefulSet".into(), "young".into()),
            workload(5, use_(0.2, 1.0, 1, None), None),
        ),
    ]
    .into_iter()
    .collect();
    let r = recommended_requests(&sizing, &Sizing::default());
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        r[&key("Deployment")],
        PodRequests {
            cpu_cores: 0.24,
            memory_bytes: 345 * MI + MIN_MEMORY
        }
    );
    // `[rules] rightsizing_min_history = "5h"` sizes the young StatefulSet too; a margin of
    // 0.5 instead of 0.15: 0.2 × 1.5 = 0.3 core and 300 MiB × 1.5 = 450 MiB for the app,
    // the idle proxy's floors (10m, 16 MiB) on top.
    let s = Sizing {
        margin: 0.5,
        min_hours: 5,
        ..Sizing::default()
    };
    let r = recommended_requests(&sizing, &s);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        r[&key("Deployment")],
        PodRequests {
            cpu_cores: 0.31,
            memory_bytes: 450 * MI + MIN_MEMORY
        }
    );
}

/// The runbook's worked example, figure for figure.
#[test]
fn runbook_worked_example() {
    let rule = RequestsRightSizing {
        s: Sizing::default(),
        catalog: Catalog::builtin(),
    };
    let c5 = InstanceType {
        vcpu: 36,
        memory_mib: 73728,
        max_enis: 8,
    };
    let gib = 1u64 << 30;
    let c = use_(0.25, 1.0, (1.2 * gib as f64) as u64, Some((1.0, 2 * gib)));
    let r = recommend(&c, Some(9.0 / 30.0), 0.15);
    assert_eq!(
        (
            r.cpu_request,
            r.cpu_limit,
            memory_quantity(r.memory_request)
        ),
        (0.345, 1.15, "1414Mi".to_string())
    );
    let w = WorkloadUse {
        pods: 30,
        ..workload(24, c, Some(0.3))
    };
    let cost = Cost {
        usd_per_month: Some(1116.9),
        basis: "c5.9xlarge".into(),
    };
    let k = (
        "jobs".to_string(),
        "Deployment".to_string(),
        "worker".to_string(),
    );
    let f = rule.finding("c", &k, &w, 30, cost, Some(&c5)).unwrap();
    assert_eq!(f.cost.unwrap().usd_per_month, Some(609.64));
    assert!(f.fix.contains("cpu: \"1150m\""), "{}", f.fix);
}
