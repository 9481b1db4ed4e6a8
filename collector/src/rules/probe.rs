//! ProbeTimeoutRisk: a probe whose p99 is past a share of its timeout, that timed out, or that
//! would have been acted on (`predicted_removals`). The fix is a timeoutSeconds from measured
//! latency, or, when the workload's workers were all busy, the saturation behind the latency.

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::fleet::{ClusterSnapshot, ProbeSnapshot, WorkloadSnapshot};
use serde_json::json;
use std::time::{Duration, SystemTime};

pub struct TimeoutRisk(pub Thresholds);

/// The timeoutSeconds to suggest: twice the slowest measured attempt (or p99 when no maximum),
/// whole seconds, at least one more than now when attempts timed out.
pub fn suggested_timeout(p: &ProbeSnapshot) -> u64 {
    let slowest = p
        .latency_max_seconds
        .or(p.latency_p99_seconds)
        .unwrap_or(p.timeout_seconds);
    let mut s = (slowest * 2.0).ceil().max(1.0) as u64;
    if timeouts(p) > 0 {
        s = s.max(p.timeout_seconds.ceil() as u64 + 1);
    }
    s
}

fn timeouts(p: &ProbeSnapshot) -> u64 {
    p.attempts.get("timeout").copied().unwrap_or(0)
}

fn workload<'a>(c: &'a ClusterSnapshot, p: &ProbeSnapshot) -> Option<&'a WorkloadSnapshot> {
    c.workloads.iter().find(|w| {
        *w.namespace == *p.namespace
            && *w.name == *p.workload
            && w.kind.eq_ignore_ascii_case(&p.workload_kind)
    })
}

impl Rule for TimeoutRisk {
    fn id(&self) -> &'static str {
        "ProbeTimeoutRisk"
    }

    fn for_duration(&self) -> Duration {
        self.0.probe_for
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let share = self.0.probe_p99_share;
        let mut out = Vec::new();
        for c in &input.fleet.clusters {
            for n in &c.nodes {
                for p in &n.probes {
                    let slow = p
                        .latency_p99_seconds
                        .is_some_and(|l| p.timeout_seconds > 0.0 && l > share * p.timeout_seconds);
                    let timed_out = timeouts(p);
                    if !slow && timed_out == 0 && p.predicted_removals == 0 {
                        continue;
                    }
                    let severity = if p.predicted_removals > 0 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    let who = format!(
                        "{}/{} {} {} probe",
                        p.namespace, p.pod, p.container, p.probe
                    );
                    let p99 = p.latency_p99_seconds;
                    let mut why = Vec::new();
                    if let Some(l) = p99.filter(|_| slow) {
                        why.push(format!(
                            "p99 {:.3}s is {:.0}% of its {}s timeout",
                            l,
                            l / p.timeout_seconds * 100.0,
                            p.timeout_seconds
                        ));
                    }
                    if timed_out > 0 {
                        why.push(format!("{timed_out} attempt(s) timed out"));
                    }
                    if p.predicted_removals > 0 {
                        let act = if &*p.probe == "readiness" {
                            "taken out of its Service"
                        } else {
                            "restarted"
                        };
                        why.push(format!(
                            "the kubelet would have {act} {} time(s)",
                            p.predicted_removals
                        ));
                    }
                    let w = workload(c, p);
                    let saturated = w.filter(|w| w.saturated_seconds > 0.0 || w.queue_max > 0);
                    let timeout = suggested_timeout(p);
                    let fix = match saturated {
                        Some(w) => format!(
                            "The probe waits in the accept queue behind busy workers: {} {}/{} had every worker busy for {:.0}s (busy p95 {:.1} of {} per pod × {} pods, accept queue up to {}). Add workers per pod or replicas (see HPAOverScaling's busy-workers target); raising timeoutSeconds would only hide it.",
                            w.kind,
                            w.namespace,
                            w.name,
                            w.saturated_seconds,
                            w.busy_p95,
                            w.capacity_per_pod,
                            w.pods.len(),
                            w.queue_max
                        ),
                        // A timed-out attempt's latency is unknown beyond the timeout: the
                        // latest window's max may be a fast one, so do not quote it.
                        None if timed_out > 0 => format!(
                            "Set `timeoutSeconds: {timeout}` on the {} probe of container {} ({timed_out} attempt(s) ran into the {}s timeout, so their latency is at least that), and find what the endpoint waits on: no worker saturation was measured for it.",
                            p.probe,
                            p.container,
                            p.timeout_seconds
                        ),
                        None => format!(
                            "Set `timeoutSeconds: {timeout}` on the {} probe of container {} (twice the slowest measured attempt, {:.3}s).",
                            p.probe,
                            p.container,
                            p.latency_max_seconds.or(p99).unwrap_or(p.timeout_seconds)
                        ),
                    };
                    let mut ev = evidence([
                        ("timeout_seconds", json!(p.timeout_seconds)),
                        ("latency_p99_seconds", json!(p99.map(r3))),
                        ("latency_max_seconds", json!(p.latency_max_seconds.map(r3))),
                        ("headroom", json!(p.headroom.map(r3))),
                        ("attempts", json!(p.attempts)),
                        ("timeouts", json!(timed_out)),
                        ("predicted_removals", json!(p.predicted_removals)),
                        ("suggested_timeout_seconds", json!(timeout)),
                        ("target", json!(p.target)),
                    ]);
                    if let Some(w) = w {
                        ev.insert(
                            "workload_busy".into(),
                            json!({
                                "kind": w.kind, "name": w.name, "workers_per_pod": w.workers_per_pod,
                                "capacity_per_pod": w.capacity_per_pod, "pods": w.pods.len(), "busy_mean": r3(w.busy_mean), "busy_p95": r3(w.busy_p95),
                                "busy_max": r3(w.busy_max), "queue_max": w.queue_max,
                                "saturated_seconds": r3(w.saturated_seconds),
                            }),
                        );
                    }
                    out.push(Finding {
                        rule: self.id().into(),
                        severity,
                        subject: Subject {
                            cluster: c.name.clone(),
                            node: Some(n.name.clone()),
                            namespace: Some(p.namespace.to_string()),
                            workload: (!p.workload.is_empty()).then(|| p.workload.to_string()),
                            pod: Some(p.pod.to_string()),
                            probe: Some(format!("{}/{}", p.container, p.probe)),
                            ..Default::default()
                        },
                        summary: format!("{who}: {}", why.join("; ")),
                        evidence: ev,
                        fix,
                        cost: None,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{FleetSnapshot, NodeSnapshot};
    use crate::kube::KubeView;

    fn probe(
        timeout: f64,
        p99: Option<f64>,
        max: Option<f64>,
        t_outs: u64,
        removals: u64,
    ) -> ProbeSnapshot {
        ProbeSnapshot {
            namespace: "shop".into(),
            pod: "web-1".into(),
            container: "app".into(),
            probe: "readiness".into(),
            workload_kind: "Deployment".into(),
            workload: "web".into(),
            timeout_seconds: timeout,
            latency_p99_seconds: p99,
            latency_max_seconds: max,
            attempts: [("ok".into(), 10), ("timeout".into(), t_outs)].into(),
            predicted_removals: removals,
            ..Default::default()
        }
    }

    fn fleet(p: ProbeSnapshot, workloads: Vec<WorkloadSnapshot>) -> FleetSnapshot {
        let node = NodeSnapshot {
            name: "n1".into(),
            probes: vec![p],
            ..Default::default()
        };
        FleetSnapshot::one_cluster("prod", vec![node], workloads)
    }

    fn run(f: &FleetSnapshot) -> Vec<Finding> {
        TimeoutRisk(Thresholds::default()).evaluate(
            &Input {
                fleet: f,
                kube: &KubeView::default(),
            },
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn each_trigger_at_its_edge() {
        // (timeout, p99, max, timeouts, predicted removals) → (severity, suggested timeoutSeconds)
        type Row = (
            f64,
            Option<f64>,
            Option<f64>,
            u64,
            u64,
            Option<(Severity, u64)>,
        );
        let table: &[Row] = &[
            (1.0, Some(0.5), Some(0.6), 0, 0, None), // exactly half: not past it
            (
                1.0,
                Some(0.501),
                Some(0.7),
                0,
                0,
                Some((Severity::Warning, 2)),
            ), // ceil(1.4)
            (
                2.0,
                Some(1.2),
                Some(1.6),
                0,
                0,
                Some((Severity::Warning, 4)),
            ), // ceil(3.2)
            (
                1.0,
                Some(0.1),
                Some(1.0),
                1,
                0,
                Some((Severity::Warning, 2)),
            ), // one timeout
            (
                1.0,
                Some(0.1),
                Some(1.0),
                3,
                1,
                Some((Severity::Critical, 2)),
            ), // would be removed
            (5.0, None, None, 0, 0, None),           // no attempts
            (1.0, None, None, 2, 0, Some((Severity::Warning, 2))), // only timeouts
        ];
        for &(timeout, p99, max, t_outs, removals, want) in table {
            let got = run(&fleet(probe(timeout, p99, max, t_outs, removals), vec![]));
            let got_pair = got.first().map(|f| {
                (
                    f.severity,
                    f.evidence["suggested_timeout_seconds"].as_u64().unwrap(),
                )
            });
            assert_eq!(
                got_pair, want,
                "timeout {timeout} p99 {p99:?} max {max:?} timeouts {t_outs} removals {removals}"
            );
            if let (Some(f), Some((_, s))) = (got.first(), want) {
                assert!(f.fix.contains(&format!("timeoutSeconds: {s}")), "{}", f.fix);
                assert_eq!(f.subject.probe.as_deref(), Some("app/readiness"));
            }
        }
    }

    /// Timeouts earlier in the history, a fast latest window: the fix must not quote the fast
    /// attempt as "the slowest" (seen in the agent → collector bed test).
    #[test]
    fn timeouts_with_a_fast_latest_window_do_not_quote_it() {
        let got = run(&fleet(probe(1.0, Some(0.002), Some(0.002), 5, 1), vec![]));
        let f = &got[0];
        assert!(f.fix.contains("timeoutSeconds: 2"), "{}", f.fix);
        assert!(
            f.fix.contains("5 attempt(s) ran into the 1s timeout"),
            "{}",
            f.fix
        );
        assert!(!f.fix.contains("0.002"), "{}", f.fix);
    }

    #[test]
    fn saturated_workload_is_the_fix_not_the_timeout() {
        let w = WorkloadSnapshot {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            pods: vec!["n1/web-1".into(), "n2/web-2".into()],
            workers_per_pod: 4,
            capacity_per_pod: 4,
            busy_p95: 7.6,
            busy_mean: 5.0,
            busy_max: 8.0,
            queue_max: 12,
            saturated_seconds: 42.0,
            ..Default::default()
        };
        let got = run(&fleet(
            probe(1.0, Some(0.8), Some(0.95), 0, 0),
            vec![w.clone()],
        ));
        let f = &got[0];
        assert!(f.fix.contains("every worker busy for 42s"), "{}", f.fix);
        assert!(f.fix.contains("accept queue up to 12"), "{}", f.fix);
        assert!(!f.fix.contains("timeoutSeconds:"), "{}", f.fix);
        assert_eq!(f.evidence["workload_busy"]["busy_p95"], 7.6);
        assert_eq!(f.evidence["workload_busy"]["pods"], 2);
        // The same workload without saturation: the fix is the timeout again, the busy figures
        // stay in the evidence.
        let calm = WorkloadSnapshot {
            queue_max: 0,
            saturated_seconds: 0.0,
            ..w
        };
        let got = run(&fleet(probe(1.0, Some(0.8), Some(0.95), 0, 0), vec![calm]));
        assert!(got[0].fix.contains("timeoutSeconds: 2"), "{}", got[0].fix);
        assert_eq!(got[0].evidence["workload_busy"]["workers_per_pod"], 4);
    }
}
