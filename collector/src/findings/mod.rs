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
    /// Seconds the latest and the slowest evaluation took (snapshot, rules, engine).
    timing: Mutex<(f64, f64)>,
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
            timing: Mutex::new((0.0, 0.0)),
        }
    }

    /// Seconds the latest and the slowest evaluation took, for `/metrics`.
    pub fn evaluation_seconds(&self) -> (f64, f64) {
        *self.timing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timed(&self, took: Duration) {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let s = took.as_secs_f64();
        *t = (s, t.1.max(s));
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
    findings.timed(took.elapsed());
    drop((snapshot, replaced));
    lean.encode_kept();
}
