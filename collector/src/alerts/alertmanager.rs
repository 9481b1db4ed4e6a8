//! Alertmanager v2: `POST /api/v2/alerts` with one alert per firing or just resolved finding.
//! Labels: `alertname` (the rule), `severity` and the subject (`cluster`, `node`, `interface`,
//! `eni`, `namespace`, `workload`, `pod`, `probe`, `node_group`, each when set); annotations
//! `summary`, `fix`, `runbook_url`, `finding_id`. Firing alerts carry `endsAt` = now + 4 resend
//! intervals and are resent every interval, so Alertmanager keeps them while the collector
//! lives; a resolve sends `endsAt` = the resolve time.
//!
//! The queue holds the latest payload per alert (by label set): while Alertmanager is down a
//! resend replaces the older copy instead of piling up, a resolve replaces the firing copy, and
//! after a failure the batch goes back unless a newer copy came meanwhile. So nothing is lost,
//! and memory is bounded by the number of distinct alerts (at most 10 000; more are counted as
//! dropped).

use super::{next_backoff, post_json, Counters, HttpClient, PostError, SinkStats, FIRST_BACKOFF};
use crate::engine::{Change, Record, State};
use crate::fleet::rfc3339;
use crate::rules::Severity;
use hyper::body::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const MAX_QUEUED: usize = 10_000;
const BATCH: usize = 500;

pub struct Alertmanager {
    url: hyper::Uri,
    runbook: String,
    resend: Duration,
    queue: Mutex<BTreeMap<String, Value>>,
    wake: Notify,
    counters: Counters,
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// The runbook anchor for a rule: `BASE#<rule lowercased>`.
pub fn runbook_url(base: &str, rule: &str) -> String {
    format!("{base}#{}", rule.to_ascii_lowercase())
}

/// The label set of a finding (with `severity` as given).
pub fn labels(r: &Record, severity: Severity) -> Map<String, Value> {
    let mut l = Map::new();
    l.insert("alertname".into(), json!(r.rule));
    l.insert("severity".into(), json!(severity.as_str()));
    for (k, v) in r.subject.labels() {
        l.insert(k.into(), json!(v));
    }
    l
}

/// One postable alert: the finding with `severity` and `endsAt` (ns).
pub fn alert(r: &Record, severity: Severity, ends_at: u64, runbook: &str) -> Value {
    json!({
        "labels": labels(r, severity),
        "annotations": {
            "summary": r.summary,
            "fix": r.fix,
            "runbook_url": runbook_url(runbook, &r.rule),
            "finding_id": r.id,
        },
        "startsAt": rfc3339(r.fired_at.unwrap_or(r.started_at)),
        "endsAt": rfc3339(ends_at),
    })
}

fn key(v: &Value) -> String {
    v["labels"].to_string()
}

impl Alertmanager {
    pub fn start(
        url: hyper::Uri,
        runbook: String,
        resend: Duration,
        stop: CancellationToken,
    ) -> Arc<Alertmanager> {
        let a = Arc::new(Alertmanager {
            url,
            runbook,
            resend,
            queue: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            counters: Counters::default(),
        });
        tokio::spawn(a.clone().run(super::client(), stop));
        a
    }

    fn enqueue(&self, alerts: Vec<Value>) {
        if alerts.is_empty() {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for a in alerts {
            let k = key(&a);
            if !q.contains_key(&k) && q.len() >= MAX_QUEUED {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            q.insert(k, a);
        }
        drop(q);
        self.wake.notify_one();
    }

    fn firing_until(&self, now: SystemTime) -> u64 {
        ns(now + self.resend * 4)
    }

    /// Firing → an alert; resolved → its `endsAt`; a severity change also ends the alert under
    /// the old severity. Pending findings are not sent.
    pub fn changes(&self, changes: &[Change], now: SystemTime) {
        let mut out = Vec::new();
        for c in changes {
            let r = &c.record;
            match r.state {
                State::Firing => {
                    out.push(alert(r, r.severity, self.firing_until(now), &self.runbook));
                    if let Some(old) = c.previous_severity {
                        out.push(alert(r, old, ns(now), &self.runbook));
                    }
                }
                State::Resolved if c.previous == Some(State::Firing) => {
                    out.push(alert(
                        r,
                        r.severity,
                        r.resolved_at.unwrap_or(ns(now)),
                        &self.runbook,
                    ));
                }
                _ => {}
            }
        }
        self.enqueue(out);
    }

    pub fn resend(&self, records: &[&Record], now: SystemTime) {
        let until = self.firing_until(now);
        self.enqueue(
            records
                .iter()
                .filter(|r| r.state == State::Firing)
                .map(|r| alert(r, r.severity, until, &self.runbook))
                .collect(),
        );
    }

    pub fn stats(&self) -> SinkStats {
        let queued = self.queue.lock().map(|q| q.len()).unwrap_or(0);
        self.counters.stats("alertmanager", &self.url, queued)
    }

    async fn run(self: Arc<Self>, client: HttpClient, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        loop {
            let batch: Vec<(String, Value)> = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let keys: Vec<String> = q.keys().take(BATCH).cloned().collect();
                keys.into_iter()
                    .filter_map(|k| q.remove(&k).map(|v| (k, v)))
                    .collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let body: Vec<&Value> = batch.iter().map(|(_, v)| v).collect();
            let body = Bytes::from(serde_json::to_vec(&body).expect("alerts serialize"));
            match post_json(&client, &self.url, body).await {
                Ok(()) => {
                    self.counters
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if failing {
                        tracing::info!(message = "Alertmanager reachable again.", url = %self.url);
                    }
                    failing = false;
                    backoff = FIRST_BACKOFF;
                }
                Err(PostError::Refused(status, text)) => {
                    self.counters
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(message = "Alertmanager refused alerts; dropped.", url = %self.url, status, %text);
                }
                Err(PostError::Retry(error)) => {
                    self.counters
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(message = "Alertmanager unreachable; alerts kept and retried with backoff.", url = %self.url, %error);
                    }
                    failing = true;
                    {
                        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                        for (k, v) in batch {
                            // A newer copy that came meanwhile wins.
                            q.entry(k).or_insert(v);
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = next_backoff(backoff);
                }
            }
        }
    }
}
