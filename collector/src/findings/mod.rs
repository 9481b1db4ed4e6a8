//! The findings loop: every `evaluation_interval` the rules run over a fleet snapshot and the
//! Kubernetes view, the engine turns their findings into state changes, the state file is
//! written, and the sinks get the changes (and, every `alert_resend_interval`, every firing
//! alert again). Also what `/api/v1/findings` and the status page show.

pub mod engine;
mod state;

pub use engine::{Change, Engine, Record, State};
pub use state::{set_aside, StateError};

use crate::alerts::Sinks;
use crate::fleet::LeanCache;
use crate::kube::SharedView;
use crate::rules::{Input, Rule};
use crate::time::{ns, rfc3339};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// The engine and the sinks, shared by the loop and the API.
pub struct Findings {
    pub engine: Mutex<Engine>,
    pub sinks: Sinks,
    state_file: Option<PathBuf>,
    timing: Mutex<Timing>,
}

/// How long evaluations took (snapshot, rules, engine), in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// The latest evaluation's wall time.
    pub last: f64,
    /// The slowest evaluation's wall time since the start.
    pub max: f64,
    /// The CPU time the latest evaluation's thread used: far under `last` means it waited for
    /// a core (the collector short of CPU), close to it means the work itself was that long.
    pub last_cpu: f64,
}

/// Firing first, then pending, then resolved; critical before warning; newest first.
pub(crate) fn ordered(records: &mut [&Record]) {
    let rank = |s: State| match s {
        State::Firing => 0,
        State::Pending => 1,
        State::Resolved => 2,
    };
    records.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.severity.cmp(&a.severity))
            .then(b.started_at.cmp(&a.started_at))
            .then(a.id.cmp(&b.id))
    });
}

impl Findings {
    pub fn new(engine: Engine, sinks: Sinks, state_file: Option<PathBuf>) -> Findings {
        Findings {
            engine: Mutex::new(engine),
            sinks,
            state_file,
            timing: Mutex::new(Timing::default()),
        }
    }

    /// How long evaluations took, for `/metrics`.
    pub fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timed(&self, took: Duration, cpu: Duration) {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let s = took.as_secs_f64();
        *t = Timing {
            last: s,
            max: t.max.max(s),
            last_cpu: cpu.as_secs_f64(),
        };
    }

    /// The engine, for reading its records (never poisoned for readers).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One evaluation: rules → engine → state file → sinks.
    pub fn evaluate(&self, rules: &[Box<dyn Rule>], input: &Input, now: SystemTime) {
        let found = rules
            .iter()
            .flat_map(|r| {
                let hold = r.for_duration();
                r.evaluate(input, now).into_iter().map(move |f| (f, hold))
            })
            .collect();
        let mut engine = self.lock();
        let changes = engine.update(found, now);
        if !changes.is_empty() {
            if let Some(path) = &self.state_file {
                if let Err(error) = engine.save(path) {
                    tracing::warn!(message = "Cannot write the findings state file; a restart would forget the current findings.", path = %path.display(), %error);
                }
            }
            for c in &changes {
                let r = &c.record;
                tracing::info!(message = "Finding changed.", rule = %r.rule, id = %r.id, state = r.state.as_str(), severity = r.severity.as_str(), summary = %r.summary);
            }
        }
        drop(engine);
        self.sinks.changes(&changes, now);
    }

    /// Every firing finding to Alertmanager again.
    pub fn resend(&self, now: SystemTime) {
        let engine = self.lock();
        let records: Vec<&Record> = engine.records().collect();
        self.sinks.resend(&records, now);
    }

    /// `GET /api/v1/findings`.
    pub fn json(&self, now: SystemTime) -> String {
        let engine = self.lock();
        let mut records: Vec<&Record> = engine.records().collect();
        ordered(&mut records);
        let body = serde_json::json!({
            "schema": "headroom.findings/v1",
            "generated_at": rfc3339(ns(now)),
            "findings": records.iter().map(|r| r.view()).collect::<Vec<_>>(),
            "sinks": self.sinks.stats(),
        });
        serde_json::to_string(&body).expect("findings serialize")
    }
}

/// Runs the rules every `interval` and resends firing alerts every `resend`, until `stop`.
pub async fn run(
    findings: Arc<Findings>,
    lean: Arc<LeanCache>,
    kube: SharedView,
    rules: Vec<Box<dyn Rule>>,
    interval: Duration,
    resend: Duration,
    stop: CancellationToken,
) {
    let rules = Arc::new(rules);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resend_tick = tokio::time::interval(resend);
    resend_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (findings, lean, kube, rules) =
                    (findings.clone(), lean.clone(), kube.clone(), rules.clone());
                // At 5 000 nodes the snapshot, the rules and the /metrics text are a few
                // hundred ms of CPU: on a blocking thread, not on one of the runtime's two
                // workers, whose other tasks (ingest requests) would wait for it.
                let evaluated = tokio::task::spawn_blocking(move || {
                    evaluate_once(&findings, &lean, &kube, &rules)
                })
                .await;
                if let Err(e) = evaluated {
                    tracing::error!(message = "Evaluation failed.", error = %e);
                }
            }
            _ = resend_tick.tick() => findings.resend(SystemTime::now()),
            _ = stop.cancelled() => return,
        }
    }
}

/// One evaluation: a lean snapshot (built outside the fleet's lock, and kept for /metrics
/// and the page), the rules over it; then, with the findings out, the snapshot it replaced
/// freed and the new one's /metrics text made if anyone reads it.
fn evaluate_once(
    findings: &Findings,
    lean: &LeanCache,
    kube: &SharedView,
    rules: &[Box<dyn Rule>],
) {
    let now = SystemTime::now();
    let took = std::time::Instant::now();
    let cpu = thread_cpu();
    let (snapshot, replaced) = lean.replace(now);
    let view = kube.get();
    findings.evaluate(
        rules,
        &Input {
            fleet: &snapshot.snapshot,
            kube: &view,
        },
        now,
    );
    findings.timed(took.elapsed(), thread_cpu().saturating_sub(cpu));
    drop((snapshot, replaced));
    lean.encode_kept();
}

/// The calling thread's CPU time. Nodes silent past `LEAN_FRESH` that a refresh spreads over
/// other threads are not in it (rare: every reporting node's snapshot is made at its report).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Engine;
    use crate::fleet::Fleet;
    use crate::rules::Finding;
    use std::time::Instant;

    /// A rule that spends `busy` on the CPU and `asleep` off it.
    struct Spend {
        busy: Duration,
        asleep: Duration,
    }

    impl Rule for Spend {
        fn id(&self) -> &'static str {
            "Spend"
        }
        fn for_duration(&self) -> Duration {
            Duration::ZERO
        }
        fn evaluate(&self, _: &Input, _: SystemTime) -> Vec<Finding> {
            let started = Instant::now();
            let mut x = 0u64;
            while started.elapsed() < self.busy {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            std::thread::sleep(self.asleep);
            Vec::new()
        }
    }

    fn timing(busy: u64, asleep: u64) -> Timing {
        let findings = Findings::new(
            Engine::new(Duration::from_secs(60), Duration::ZERO, SystemTime::now()),
            Default::default(),
            None,
        );
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let lean = LeanCache::new(fleet, Duration::from_secs(60));
        let rules: Vec<Box<dyn Rule>> = vec![Box::new(Spend {
            busy: Duration::from_millis(busy),
            asleep: Duration::from_millis(asleep),
        })];
        evaluate_once(&findings, &lean, &SharedView::default(), &rules);
        findings.timing()
    }

    /// The evaluation's CPU time is its thread's: a rule computing 150 ms shows (nearly) all of
    /// it, one sleeping 150 ms none of it, while the wall time holds both. Tolerances: the
    /// busy loop can lose the CPU to other tests (so at least 60 % of it counted as CPU, never
    /// more than the wall time); the empty fleet and the engine cost well under 30 ms.
    #[test]
    fn the_evaluation_s_cpu_time_is_what_its_thread_computed() {
        let busy = timing(150, 0);
        assert!(busy.last >= 0.150, "{busy:?}");
        assert!(busy.last_cpu >= 0.090, "{busy:?}");
        assert!(busy.last_cpu <= busy.last + 0.001, "{busy:?}");
        let asleep = timing(0, 150);
        assert!(asleep.last >= 0.150, "{asleep:?}");
        assert!(asleep.last_cpu < 0.030, "{asleep:?}");
        assert_eq!(asleep.max, asleep.last, "one evaluation: the slowest");
    }
}
