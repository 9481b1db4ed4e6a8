//! A generic JSON webhook for users without Alertmanager: every finding state change (new
//! pending, pending → firing, firing → resolved, a firing finding's severity change) is POSTed
//! in order as
//! `{"schema": "headroom.findings-webhook/v1", "changes": [{"previous_state", "previous_severity", "finding"}]}`
//! where `finding` has the `/api/v1/findings` fields. A receiver that is down is retried with
//! backoff; the queue keeps the latest 10 000 changes (older ones dropped and counted).

use super::{post_json, voice, Counters, Delivery, Posted, SinkStats, Voice};
use crate::findings::engine::Change;
use crate::send;
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the log says about this sink.
const VOICE: Voice = voice!("Webhook", "finding changes", "changes");

pub const MAX_QUEUED: usize = 10_000;
const BATCH: usize = 100;
pub const SCHEMA: &str = "headroom.findings-webhook/v1";

pub struct Webhook {
    url: hyper::Uri,
    queue: Mutex<VecDeque<Value>>,
    wake: Notify,
    counters: Counters,
}

/// One change as the webhook sends it.
pub fn change_json(c: &Change) -> Value {
    json!({
        "previous_state": c.previous.map(|s| s.as_str()),
        "previous_severity": c.previous_severity.map(|s| s.as_str()),
        "finding": c.record.view(),
    })
}

impl Webhook {
    /// A sink whose queue nothing sends yet (see [`Webhook::start`]).
    pub fn new(url: hyper::Uri) -> Arc<Webhook> {
        Arc::new(Webhook {
            url,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            counters: Counters::default(),
        })
    }

    /// A sink and its sending task on the current runtime.
    pub fn start(url: hyper::Uri, sender: send::Sender, stop: CancellationToken) -> Arc<Webhook> {
        let w = Self::new(url);
        tokio::spawn(w.clone().run(sender, stop));
        w
    }

    pub fn changes(&self, changes: &[Change]) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            if q.len() >= MAX_QUEUED {
                q.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(change_json(c));
        }
        drop(q);
        self.wake.notify_one();
    }

    pub fn stats(&self) -> SinkStats {
        let queued = self.queue.lock().map(|q| q.len()).unwrap_or(0);
        self.counters.stats("webhook", &self.url, queued)
    }

    async fn run(self: Arc<Self>, client: send::Sender, stop: CancellationToken) {
        let mut delivery = Delivery::new(&self.url, &self.counters, &VOICE);
        loop {
            // Peek, send, and only then remove: order is kept across failures.
            let batch: Vec<Value> = {
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                if !Delivery::idle(&self.wake, &stop).await {
                    return;
                }
                continue;
            }
            let body = json!({"schema": SCHEMA, "changes": batch});
            let body = Bytes::from(serde_json::to_vec(&body).expect("changes serialize"));
            let posted = post_json(&client, &self.url, body).await;
            match delivery.outcome(posted, batch.len()) {
                Posted::Done => {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    // The queue may have dropped its oldest meanwhile: remove only what is
                    // still the batch's front.
                    for v in &batch {
                        if q.front() == Some(v) {
                            q.pop_front();
                        }
                    }
                }
                Posted::Again => {
                    if !delivery.pause(&stop).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::engine::Engine;
    use crate::rules::{Finding, Severity, Subject};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn finding(node: &str) -> Finding {
        Finding {
            rule: "DNSThrottleRisk".into(),
            severity: Severity::Warning,
            subject: Subject {
                cluster: "c".into(),
                node: Some(node.into()),
                ..Default::default()
            },
            summary: "s".into(),
            evidence: Default::default(),
            fix: "f".into(),
            cost: None,
        }
    }

    #[test]
    fn changes_queue_in_order_and_the_oldest_go_first_when_full() {
        let w = Webhook::new("http://hook/x".parse().unwrap());
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let mut e = Engine::new(Duration::from_secs(3600), Duration::ZERO, at(0));
        let fire = e.update(vec![(finding("n1"), Duration::ZERO)], at(0));
        let resolve = e.update(vec![], at(10));
        w.changes(&fire);
        w.changes(&resolve);
        let q: Vec<Value> = w.queue.lock().unwrap().iter().cloned().collect();
        assert_eq!(q.len(), 2);
        assert!(q[0]["previous_state"].is_null());
        assert_eq!(q[0]["finding"]["state"], "firing");
        assert_eq!(q[1]["previous_state"], "firing");
        assert_eq!(q[1]["finding"]["state"], "resolved");
        assert_eq!(
            q[1]["finding"]["resolved_at"],
            crate::time::rfc3339(1_700_000_010_000_000_000)
        );
        assert_eq!(q[0]["finding"]["id"], q[1]["finding"]["id"]);
        // Full: the oldest change goes, counted.
        for k in 0..MAX_QUEUED {
            let mut e = Engine::new(Duration::ZERO, Duration::ZERO, SystemTime::now());
            w.changes(&e.update(vec![(finding(&format!("m{k}")), Duration::ZERO)], at(20)));
        }
        assert_eq!(w.stats().queued, MAX_QUEUED as u64);
        assert_eq!(w.stats().dropped, 2);
        let front = w.queue.lock().unwrap().front().cloned().unwrap();
        assert_eq!(front["finding"]["subject"]["node"], "m0");
    }
}
