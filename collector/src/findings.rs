//! The findings loop: every `evaluation_interval` the rules run over a fleet snapshot and the
//! Kubernetes view, the engine turns their findings into state changes, the state file is
//! written, and the sinks get the changes (and, every `alert_resend_interval`, every firing
//! alert again). Also what `/api/v1/findings` and the status page show.

use crate::alerts::Sinks;
use crate::engine::{Engine, Record, State};
use crate::fleet::Fleet;
use crate::kube::SharedView;
use crate::page::esc;
use crate::rules::{Input, Rule};
use crate::time::{ns, rfc3339};
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// The engine and the sinks, shared by the loop and the API.
pub struct Findings {
    pub engine: Mutex<Engine>,
    pub sinks: Sinks,
    state_file: Option<PathBuf>,
}

/// Firing first, then pending, then resolved; critical before warning; newest first.
fn ordered(records: &mut [&Record]) {
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
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

    /// The status page's "Open findings" section: firing and pending, each with its fix.
    pub fn page_section(&self) -> String {
        let engine = self.lock();
        let mut open: Vec<&Record> = engine
            .records()
            .filter(|r| r.state != State::Resolved)
            .collect();
        ordered(&mut open);
        let resolved = engine.records().count() - open.len();
        let mut h = String::from("<h2 id=\"findings\">Open findings</h2>");
        if open.is_empty() {
            let _ = write!(
                h,
                "<p>None. <small>{resolved} resolved recently; all in <a href=\"/api/v1/findings\">/api/v1/findings</a>.</small></p>"
            );
            return h;
        }
        h.push_str("<table><thead><tr><th>state</th><th>severity</th><th>rule</th><th>subject</th><th>summary</th><th>fix</th><th>since</th></tr></thead><tbody>");
        for r in open {
            let class = match r.severity {
                crate::rules::Severity::Critical => "crit",
                crate::rules::Severity::Warning => "warn",
            };
            let subject: Vec<String> = r
                .subject
                .labels()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td><small>{}</small></td><td>{}</td><td><pre style=\"white-space:pre-wrap;margin:0\">{}</pre></td><td><small>{}</small></td></tr>",
                r.state.as_str(),
                r.severity.as_str(),
                esc(&r.rule),
                esc(&subject.join(" ")),
                esc(&r.summary),
                esc(&r.fix),
                esc(&rfc3339(r.fired_at.unwrap_or(r.started_at))),
            );
        }
        let _ = write!(
            h,
            "</tbody></table><p><small>{resolved} resolved recently; all in <a href=\"/api/v1/findings\">/api/v1/findings</a>.</small></p>"
        );
        h
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SinkLabels {
    sink: String,
    url: String,
}

impl Findings {
    /// The findings' part of `/metrics`: findings by rule, severity and state, and each
    /// sink's counters (text format 0.0.4, appended to the fleet's exposition).
    pub fn metrics_text(&self) -> String {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let mut r = prometheus_client::registry::Registry::default();
        let findings = Family::<FindingLabels, Gauge>::default();
        for rec in self.lock().records() {
            findings
                .get_or_create(&FindingLabels {
                    rule: rec.rule.clone(),
                    severity: rec.severity.as_str().into(),
                    state: rec.state.as_str().into(),
                })
                .inc();
        }
        r.register(
            "headroom_collector_findings",
            "Findings by rule, severity and state (pending, firing, resolved within keep_resolved)",
            findings,
        );
        let sent = Family::<SinkLabels, Counter>::default();
        let failed = Family::<SinkLabels, Counter>::default();
        let dropped = Family::<SinkLabels, Counter>::default();
        let queued = Family::<SinkLabels, Gauge>::default();
        for st in self.sinks.stats() {
            let l = SinkLabels {
                sink: st.kind.into(),
                url: st.url.clone(),
            };
            sent.get_or_create(&l).inc_by(st.sent);
            failed.get_or_create(&l).inc_by(st.failed_attempts);
            dropped.get_or_create(&l).inc_by(st.dropped);
            queued.get_or_create(&l).set(st.queued as i64);
        }
        r.register(
            "headroom_collector_alerts_sent",
            "Alerts (Alertmanager) or finding changes (webhook) delivered",
            sent,
        );
        r.register(
            "headroom_collector_alert_send_failures",
            "POSTs to a sink that failed and are tried again",
            failed,
        );
        r.register(
            "headroom_collector_alerts_dropped",
            "Alerts or changes given up: queue full, or refused by the sink",
            dropped,
        );
        r.register(
            "headroom_collector_alerts_queued",
            "Alerts or changes waiting for a sink",
            queued,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        headroom_signals::openmetrics_to_text(&out)
    }
}

/// Runs the rules every `interval` and resends firing alerts every `resend`, until `stop`.
pub async fn run(
    findings: Arc<Findings>,
    fleet: Arc<Mutex<Fleet>>,
    kube: SharedView,
    rules: Vec<Box<dyn Rule>>,
    interval: Duration,
    resend: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resend_tick = tokio::time::interval(resend);
    resend_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = SystemTime::now();
                let snapshot = fleet
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .snapshot_lean(now);
                let view = kube.get();
                findings.evaluate(&rules, &Input { fleet: &snapshot, kube: &view }, now);
            }
            _ = resend_tick.tick() => findings.resend(SystemTime::now()),
            _ = stop.cancelled() => return,
        }
    }
}
