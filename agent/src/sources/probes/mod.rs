//! Probe shadowing: each readiness/liveness/startup probe of this node's pods, run the way the
//! kubelet runs it, timed against its own timeout — timeouts included, which the kubelet's own
//! `prober_probe_duration_seconds` leaves out — and the removals the kubelet would make.

mod config;
pub mod kubelet;
pub mod report;
pub mod shadow;
mod source;
pub mod spec;
pub mod stats;

pub use config::ProbeConfig;
pub use report::{NotOk, ProbeReport, ProbeTotals, Saturation};
pub use source::Probes;

use shadow::Attempt;
use spec::{Kind, ProbeSpec};
use stats::{Outcome, RemovalState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most attempts kept per probe between two report windows.
const KEEP: usize = 10_000;
/// Most slow, timed-out or failed attempts kept per probe and window for their `probe` spans;
/// beyond it they are counted (`not_ok_dropped`).
pub const KEEP_NOT_OK: usize = 100;

#[derive(Debug)]
struct Entry {
    spec: ProbeSpec,
    samples: Vec<(f64, Outcome)>,
    removals: u32,
    last_error: Option<String>,
    state: RemovalState,
    /// False once the probe left the pod list: reported one last time, then forgotten.
    present: bool,
    not_ok: Vec<NotOk>,
    not_ok_dropped: u64,
    totals: ProbeTotals,
}

type Key = (String, String, Kind);

/// Attempts since the last report window, shared between the probe tasks and the report.
#[derive(Debug, Clone, Default)]
pub struct ProbeLog(Arc<Mutex<BTreeMap<Key, Entry>>>);

impl ProbeLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The probes that exist now (shadowed or not).
    pub fn set_specs(&self, specs: &[ProbeSpec]) {
        let mut m = self.lock();
        for e in m.values_mut() {
            e.present = false;
        }
        for s in specs {
            let e = m.entry(s.key()).or_insert_with(|| Entry {
                spec: s.clone(),
                samples: Vec::new(),
                removals: 0,
                last_error: None,
                state: RemovalState::default(),
                present: true,
                not_ok: Vec::new(),
                not_ok_dropped: 0,
                totals: ProbeTotals {
                    since_ns: crate::time::now_ns(),
                    ..ProbeTotals::default()
                },
            });
            if e.spec.timing != s.timing || e.spec.action != s.action {
                e.state = RemovalState::default();
            }
            e.spec = s.clone();
            e.present = true;
        }
    }

    /// Records one attempt; `saturation`: the pod's workers at the attempt (not-ok attempts).
    pub fn record(&self, key: &Key, a: &Attempt, saturation: Option<Saturation>) {
        let mut m = self.lock();
        let Some(e) = m.get_mut(key) else { return };
        let t = e.spec.timing;
        e.totals.add(a.elapsed.as_secs_f64(), a.outcome);
        if a.outcome != Outcome::Ok {
            if e.not_ok.len() < KEEP_NOT_OK {
                e.not_ok.push(NotOk {
                    start_ns: a
                        .started
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos() as u64,
                    elapsed: a.elapsed,
                    outcome: a.outcome,
                    status: a.status,
                    error: a.error.clone(),
                    saturation,
                });
            } else {
                e.not_ok_dropped += 1;
            }
        }
        if e.state
            .step(a.outcome, t.failure_threshold, t.success_threshold)
        {
            e.removals += 1;
            e.totals.removals += 1;
            tracing::warn!(
                message = "Probe failed failureThreshold times in a row: the kubelet would take this pod out.",
                pod = %e.spec.pod, container = %e.spec.container, kind = e.spec.kind.as_str(),
                failure_threshold = t.failure_threshold
            );
        }
        if a.outcome.is_failure() {
            e.last_error = Some(
                a.error
                    .clone()
                    .unwrap_or_else(|| format!("timed out after {:?}", t.timeout)),
            );
        }
        if e.samples.len() < KEEP {
            e.samples.push((a.elapsed.as_secs_f64(), a.outcome));
        }
    }

    /// The window's figures per probe; starts the next window.
    pub fn cut(&self) -> Vec<ProbeReport> {
        let mut m = self.lock();
        let out = m.values_mut().map(report_of).collect();
        m.retain(|_, e| e.present);
        out
    }
}

fn report_of(e: &mut Entry) -> ProbeReport {
    let samples = std::mem::take(&mut e.samples);
    let count = |o: Outcome| samples.iter().filter(|s| s.1 == o).count() as u64;
    let ms: Vec<f64> = samples.iter().map(|s| s.0 * 1000.0).collect();
    let latency_ms = stats::latency(&ms);
    let t = e.spec.timing;
    ProbeReport {
        pod: e.spec.pod.clone(),
        container: e.spec.container.clone(),
        kind: e.spec.kind,
        target: match &e.spec.action {
            Ok(t) => t.to_string(),
            Err(_) => e.spec.target_text.clone(),
        },
        timeout_seconds: t.timeout.as_secs(),
        period_seconds: t.period.as_secs(),
        failure_threshold: t.failure_threshold,
        attempts: samples.len() as u64,
        ok: count(Outcome::Ok),
        slow: count(Outcome::Slow),
        timeouts: count(Outcome::Timeout),
        errors: count(Outcome::Error),
        headroom: stats::headroom(t.timeout, latency_ms.map(|l| l.p99)),
        latency_ms,
        predicted_removals: std::mem::take(&mut e.removals),
        reason: e.spec.action.clone().err(),
        last_error: e.last_error.take(),
        kubelet: None,
        workload: None,
        samples,
        not_ok: std::mem::take(&mut e.not_ok),
        not_ok_dropped: std::mem::take(&mut e.not_ok_dropped),
        totals: e.totals.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> ProbeSpec {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-1", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        spec::probes_of(&pod).remove(0)
    }

    fn attempt(outcome: Outcome, ms: u64) -> Attempt {
        Attempt {
            started: std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            outcome,
            elapsed: Duration::from_millis(ms),
            status: None,
            error: None,
        }
    }

    #[test]
    fn log_counts_outcomes_and_carries_failure_runs_across_windows() {
        let log = ProbeLog::default();
        let s = spec();
        log.set_specs(std::slice::from_ref(&s));
        let k = s.key();
        log.record(&k, &attempt(Outcome::Ok, 100), None);
        log.record(&k, &attempt(Outcome::Slow, 900), None);
        let busy = Saturation {
            busy: 2,
            workers: 2,
            queue: 1,
        };
        log.record(&k, &attempt(Outcome::Timeout, 1000), Some(busy));
        log.record(&k, &attempt(Outcome::Timeout, 1000), None);
        let r = log.cut();
        assert_eq!(r.len(), 1);
        let p = &r[0];
        assert_eq!(
            (p.attempts, p.ok, p.slow, p.timeouts, p.errors),
            (4, 1, 1, 2, 0)
        );
        assert_eq!(p.predicted_removals, 0);
        assert_eq!(p.latency_ms.unwrap().p50, 900.0);
        assert_eq!(p.latency_ms.unwrap().max, 1000.0);
        assert_eq!(p.headroom, Some(1.0));
        assert_eq!(p.last_error.as_deref(), Some("timed out after 1s"));
        // The slow one and both timeouts are kept for their spans, with their start times.
        let kinds: Vec<Outcome> = p.not_ok.iter().map(|n| n.outcome).collect();
        assert_eq!(kinds, [Outcome::Slow, Outcome::Timeout, Outcome::Timeout]);
        assert_eq!(p.not_ok[0].start_ns, 1_700_000_000_000_000_000);
        assert_eq!(p.not_ok[0].elapsed, Duration::from_millis(900));
        assert_eq!(p.not_ok[1].saturation, Some(busy));
        assert_eq!(p.not_ok[2].saturation, None);
        assert_eq!(p.not_ok_dropped, 0);
        // Cumulative totals: 0.1 s in the 0.1 bucket, 0.9 s in 1.0's (index 5 after 0.75),
        // timeouts at 1 s in 1.0's too.
        assert_eq!(p.totals.by_outcome, [1, 1, 2, 0]);
        assert_eq!(p.totals.buckets[1], 1);
        assert_eq!(p.totals.buckets[5], 3);
        assert_eq!(p.totals.count(), 4);
        assert!((p.totals.sum - 3.0).abs() < 1e-9);
        // The third timeout in a row lands in the next window: one removal there.
        log.record(&k, &attempt(Outcome::Timeout, 1000), None);
        log.record(&k, &attempt(Outcome::Timeout, 1000), None);
        let p = &log.cut()[0];
        assert_eq!((p.attempts, p.predicted_removals), (2, 1));
        assert_eq!((p.totals.count(), p.totals.removals), (6, 1));
        assert_eq!(p.not_ok.len(), 2, "each window has its own");
        let v = serde_json::to_value(p).unwrap();
        for f in [
            "pod",
            "container",
            "kind",
            "target",
            "timeout_seconds",
            "period_seconds",
            "failure_threshold",
            "attempts",
            "latency_ms",
            "slow",
            "timeouts",
            "predicted_removals",
            "headroom",
            "errors",
            "reason",
        ] {
            assert!(v.get(f).is_some(), "missing {f}: {v}");
        }
        assert_eq!(v["kind"], "readiness");
        assert_eq!(v["pod"]["uid"], "u1");
        assert_eq!(v["target"], "http://10.0.0.5:80/");
        // Gone from the pod list: reported once more, then forgotten.
        log.set_specs(&[]);
        let last = log.cut();
        assert_eq!(last.len(), 1);
        let t = crate::export::table::probes::table(&last);
        assert!(t.contains("shop/web-1/app"), "{t}");
        assert!(t.contains("KUBELET OK/FAILED"), "{t}");
        assert!(log.cut().is_empty());
    }

    #[test]
    fn not_ok_attempts_are_bounded_per_window_and_counted_beyond() {
        let log = ProbeLog::default();
        let s = spec();
        log.set_specs(std::slice::from_ref(&s));
        let k = s.key();
        for _ in 0..KEEP_NOT_OK + 7 {
            log.record(&k, &attempt(Outcome::Error, 3), None);
        }
        log.record(&k, &attempt(Outcome::Ok, 3), None);
        let p = &log.cut()[0];
        assert_eq!(p.not_ok.len(), KEEP_NOT_OK);
        assert_eq!(p.not_ok_dropped, 7);
        assert_eq!(p.errors, KEEP_NOT_OK as u64 + 7);
        let p = &log.cut()[0];
        assert_eq!((p.not_ok.len(), p.not_ok_dropped), (0, 0));
    }

    #[test]
    fn config_errors_all_at_once() {
        let c = ProbeConfig {
            slow_fraction: 0.0,
            period_fraction: 20.0,
            max_attempts_per_second: -1.0,
            kubelet_url: "127.0.0.1:10250".into(),
            kubelet_scrape_interval: "soon".into(),
            ..ProbeConfig::default()
        };
        assert_eq!(c.validate().len(), 5, "{:?}", c.validate());
        assert!(ProbeConfig::default().validate().is_empty());
    }
}
