//! RequestsRightSizing through the fleet: eight hours of pod-use windows shaped exactly as the
//! agent sends them (OTLP gauges with the pod-use attributes), taken by `Fleet::apply_metrics`
//! at their own times, summarized, judged; the fix, merged into the Deployment it patches,
//! passes kubernetes-validate --strict. Expected figures worked out by hand from what was sent.

use crate::common::agent_otlp::Window;
use crate::common::run_ok;
use headroom_collector::fleet::{Fleet, Limits};
use headroom_collector::kube::KubeView;
use headroom_collector::rules::rightsizing::{RequestsRightSizing, Sizing};
use headroom_collector::rules::{Input, Rule, Severity};
use headroom_testbed::{require, Need};
use std::time::{Duration, UNIX_EPOCH};

const H: u64 = 3_600_000_000_000;
const MI: u64 = 1 << 20;

#[test]
fn eight_hours_of_pod_use_make_a_valid_patch() {
    let mut fleet = Fleet::new(Limits::default());
    let t0 = 20_000 * H;
    let mut now = UNIX_EPOCH;
    for h in 0..8u64 {
        for (i, mean) in [0.1, 0.2].into_iter().enumerate() {
            // Two windows an hour, three pods on one node; the busiest mean of hour h is
            // 0.2 + h/100, its busiest second 0.9; memory peaks at 200 MiB + h MiB.
            let end = t0 + h * H + (i as u64 + 1) * 10_000_000_000;
            let mut w = Window::new("node-a", end - 10_000_000_000, end, t0);
            for pod in ["api-1", "api-2", "api-3"] {
                let m = mean + h as f64 / 100.0;
                w.pod_use(
                    "shop",
                    pod,
                    "api",
                    "app",
                    m,
                    0.9,
                    (200 + h) * MI,
                    (1.0, 1 << 30),
                );
            }
            w.co_burst("shop", "api", 3, 1);
            now = UNIX_EPOCH + Duration::from_nanos(end);
            let applied = fleet.apply_metrics(&w.request(), now);
            assert_eq!(applied.rejected, 0);
        }
    }
    let snap = fleet.snapshot(now + Duration::from_secs(61));
    let rule = RequestsRightSizing {
        s: Sizing::default(),
        catalog: headroom_collector::catalog::Catalog::builtin(),
    };
    let kube = KubeView::default();
    let input = Input {
        fleet: &snap,
        kube: &kube,
    };
    let found = rule.evaluate(&input, now);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.evidence["hours"], 8);
    // p95 (rank 8 of 8) of the hourly busiest means 0.20..0.27 = 0.27; the burst 0.9 × a third
    // = 0.3 wins: × 1.15 = 0.345. Memory 207 MiB × 1.15 = 238.05 → 239 MiB.
    assert_eq!(f.evidence["cpu_recommended_cores"], 0.345);
    assert_eq!(f.evidence["memory_recommended_bytes"], 239 * MI);
    assert_eq!(f.evidence["co_burst_share"], 0.333);
    eprintln!("{}\n{}", f.summary, f.fix);
    validate_strict(&f.fix);
}

/// The patch, merged into the Deployment it patches (what `kubectl patch` makes), validated.
fn validate_strict(fix: &str) {
    if !require(
        "RequestsRightSizing fix passes kubernetes-validate",
        &[Need::Tool("kubernetes-validate")],
    ) {
        return;
    }
    let patch = fix
        .split_once("):\n")
        .map(|(_, y)| y)
        .expect("a YAML after the comment line");
    let merged = patch
        .replacen(
            "spec:\n  template:\n",
            "spec:\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n",
            1,
        )
        .replacen("      - name: \"app\"\n", "      - name: \"app\"\n        image: \"nginx\"\n", 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deployment.yaml");
    std::fs::write(&file, &merged).unwrap();
    run_ok(
        &format!("kubernetes-validate of\n{merged}\n"),
        std::process::Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.32.0"])
            .arg(&file),
    );
}
