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

use super::{post_json, voice, Counters, Delivery, Posted, SinkStats, Voice};
use crate::findings::engine::{Change, Record, State};
use crate::rules::Severity;
use crate::send;
use crate::time::{ns, rfc3339};
use hyper::body::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the log says about this sink.
const VOICE: Voice = voice!("Alertmanager", "alerts", "alerts");

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
    /// A sink whose queue nothing sends yet (see [`Alertmanager::start`]).
    pub fn new(url: hyper::Uri, runbook: String, resend: Duration) -> Arc<Alertmanager> {
        Arc::new(Alertmanager {
            url,
            runbook,
            resend,
            queue: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            counters: Counters::default(),
        })
    }

    /// A sink and its sending task on the current runtime.
    pub fn start(
        url: hyper::Uri,
        runbook: String,
        resend: Duration,
        sender: send::Sender,
        stop: CancellationToken,
    ) -> Arc<Alertmanager> {
        let a = Self::new(url, runbook, resend);
        tokio::spawn(a.clone().run(sender, stop));
        a
    }

    /// What waits to be sent, by label set.
    pub fn queued(&self) -> Vec<Value> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.values().cloned().collect()
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

    async fn run(self: Arc<Self>, client: send::Sender, stop: CancellationToken) {
        let mut delivery = Delivery::new(&self.url, &self.counters, &VOICE);
        loop {
            let batch: Vec<(String, Value)> = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let keys: Vec<String> = q.keys().take(BATCH).cloned().collect();
                keys.into_iter()
                    .filter_map(|k| q.remove(&k).map(|v| (k, v)))
                    .collect()
            };
            if batch.is_empty() {
                if !Delivery::idle(&self.wake, &stop).await {
                    return;
                }
                continue;
            }
            let body: Vec<&Value> = batch.iter().map(|(_, v)| v).collect();
            let body = Bytes::from(serde_json::to_vec(&body).expect("alerts serialize"));
            let posted = post_json(&client, &self.url, body).await;
            if delivery.outcome(posted, batch.len()) == Posted::Again {
                {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    for (k, v) in batch {
                        // A newer copy that came meanwhile wins.
                        q.entry(k).or_insert(v);
                    }
                }
                if !delivery.pause(&stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::engine::Engine;
    use crate::rules::{Finding, Subject};
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn probe_finding(sev: Severity) -> Finding {
        Finding {
            rule: "ProbeTimeoutRisk".into(),
            severity: sev,
            subject: Subject {
                cluster: "prod".into(),
                node: Some("n1".into()),
                namespace: Some("shop".into()),
                workload: Some("web".into()),
                pod: Some("web-1".into()),
                probe: Some("app/readiness".into()),
                ..Default::default()
            },
            summary: "slow".into(),
            evidence: Default::default(),
            fix: "timeoutSeconds: 2".into(),
            cost: None,
        }
    }

    #[test]
    fn payloads_follow_the_findings_states() {
        let am = Alertmanager::new(
            "http://am:9093/api/v2/alerts".parse().unwrap(),
            "https://x/runbook.md".into(),
            Duration::from_secs(60),
        );
        let mut e = Engine::new(Duration::from_secs(3600), Duration::ZERO, at(0));
        let hold = Duration::from_secs(60);
        // Pending: nothing for Alertmanager.
        am.changes(
            &e.update(vec![(probe_finding(Severity::Warning), hold)], at(0)),
            at(0),
        );
        assert!(am.queued().is_empty());
        // Firing: one alert, ending 4 resend intervals ahead.
        am.changes(
            &e.update(vec![(probe_finding(Severity::Warning), hold)], at(60)),
            at(60),
        );
        let q = am.queued();
        assert_eq!(q.len(), 1);
        let a = &q[0];
        assert_eq!(
            a["labels"],
            json!({"alertname": "ProbeTimeoutRisk", "severity": "warning", "cluster": "prod",
                "node": "n1", "namespace": "shop", "workload": "web", "pod": "web-1",
                "probe": "app/readiness"})
        );
        assert_eq!(
            a["annotations"]["runbook_url"],
            "https://x/runbook.md#probetimeoutrisk"
        );
        assert_eq!(a["annotations"]["fix"], "timeoutSeconds: 2");
        assert_eq!(a["startsAt"], rfc3339(ns(at(60))));
        assert_eq!(a["endsAt"], rfc3339(ns(at(60 + 240))));
        // A resend while still queued replaces the copy (one per label set), with a later end.
        let records: Vec<Record> = e.records().cloned().collect();
        am.resend(&records.iter().collect::<Vec<_>>(), at(120));
        let q = am.queued();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0]["endsAt"], rfc3339(ns(at(120 + 240))));
        // Critical: the critical alert, and the warning one ended now.
        am.changes(
            &e.update(vec![(probe_finding(Severity::Critical), hold)], at(130)),
            at(130),
        );
        let q = am.queued();
        assert_eq!(q.len(), 2);
        let warn = q
            .iter()
            .find(|a| a["labels"]["severity"] == "warning")
            .unwrap();
        let crit = q
            .iter()
            .find(|a| a["labels"]["severity"] == "critical")
            .unwrap();
        assert_eq!(warn["endsAt"], rfc3339(ns(at(130))));
        assert_eq!(crit["endsAt"], rfc3339(ns(at(130 + 240))));
        // Resolved: endsAt is the resolve time.
        am.changes(&e.update(vec![], at(200)), at(200));
        let q = am.queued();
        let crit = q
            .iter()
            .find(|a| a["labels"]["severity"] == "critical")
            .unwrap();
        assert_eq!(crit["endsAt"], rfc3339(ns(at(200))));
        assert_eq!(crit["startsAt"], rfc3339(ns(at(60))));
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let am = Alertmanager::new(
            "http://am:9093/api/v2/alerts".parse().unwrap(),
            "r".into(),
            Duration::from_secs(60),
        );
        let alerts: Vec<Value> = (0..MAX_QUEUED + 5)
            .map(|i| json!({"labels": {"alertname": "X", "node": format!("n{i}")}}))
            .collect();
        am.enqueue(alerts.clone());
        assert_eq!(am.queued().len(), MAX_QUEUED);
        assert_eq!(am.stats().dropped, 5);
        // A newer copy of a queued alert is no new entry and drops nothing.
        am.enqueue(alerts[..10].to_vec());
        assert_eq!(am.stats().dropped, 5);
        assert_eq!(am.stats().queued, MAX_QUEUED as u64);
    }
}
