//! Where findings go: Alertmanager (v2 API) and a generic JSON webhook. Each sink has its own
//! bounded queue and task; a sink that is down is retried with backoff (0.5 s doubling to
//! 30 s) and never holds up the rules or the other sinks. What could not be queued is counted.

pub mod alertmanager;
pub mod webhook;

use crate::findings::engine::{Change, Record};
use crate::send::{ClientSettings, Retry, Sender};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a POST failed: worth retrying (down, 5xx, 408, 429) or not (another 4xx).
#[derive(Debug)]
pub enum PostError {
    Retry(String),
    Refused(u16, String),
}

/// POSTs a JSON body with the sender's credentials; 2xx is success.
pub async fn post_json(sender: &Sender, url: &hyper::Uri, body: Bytes) -> Result<(), PostError> {
    let mut req = hyper::Request::post(url.clone())
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("headroom-collector/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .expect("static request parts are valid");
    if let Some(c) = &sender.credentials {
        // Read for every POST: a rotated Secret is used at once; unreadable is retried.
        let v = c.header().map_err(PostError::Retry)?;
        req.headers_mut().insert(hyper::header::AUTHORIZATION, v);
    }
    match tokio::time::timeout(Duration::from_secs(10), sender.client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let text = resp
                .into_body()
                .collect()
                .await
                .map(|b| {
                    String::from_utf8_lossy(&b.to_bytes())
                        .chars()
                        .take(300)
                        .collect()
                })
                .unwrap_or_default();
            match status {
                200..=299 => Ok(()),
                408 | 429 | 500..=599 => Err(PostError::Retry(format!("HTTP {status}: {text}"))),
                s => Err(PostError::Refused(s, text)),
            }
        }
        Ok(Err(e)) => Err(PostError::Retry(chain(&e))),
        Err(_) => Err(PostError::Retry("no answer within 10s".into())),
    }
}

/// An error and its causes (`a: b: c`), so a TLS certificate problem shows in the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct Counters {
    /// Alerts (Alertmanager) or changes (webhook) delivered.
    pub sent: AtomicU64,
    /// POSTs that failed and will be tried again.
    pub failed_attempts: AtomicU64,
    /// Alerts or changes given up: queue full, or refused with a 4xx.
    pub dropped: AtomicU64,
}

/// A sink's figures as `/api/v1/findings` shows them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkStats {
    pub kind: &'static str,
    pub url: String,
    pub sent: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    pub queued: u64,
}

impl Counters {
    pub fn stats(&self, kind: &'static str, url: &hyper::Uri, queued: usize) -> SinkStats {
        SinkStats {
            kind,
            url: url.to_string(),
            sent: self.sent.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: queued as u64,
        }
    }
}

/// What a sink's log lines say when it comes back, refuses, or cannot be reached.
pub struct Voice {
    pub back: &'static str,
    pub refused: &'static str,
    pub unreachable: &'static str,
}

/// A sink's [`Voice`] from its name and what it sends (as refused, as kept).
macro_rules! voice {
    ($sink:literal, $refused:literal, $kept:literal) => {
        crate::alerts::Voice {
            back: concat!($sink, " reachable again."),
            refused: concat!($sink, " refused ", $refused, "; dropped."),
            unreachable: concat!(
                $sink,
                " unreachable; ",
                $kept,
                " kept and retried with backoff."
            ),
        }
    };
}
pub(crate) use voice;

/// What became of one POST of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Delivered, or refused for good: the batch leaves the queue.
    Done,
    /// Worth another try after a pause.
    Again,
}

/// One sink's sending state: its counters, whether it is failing (so an outage is logged
/// once), and its retry pause (0.5 s doubling to 30 s).
pub struct Delivery<'a> {
    url: &'a hyper::Uri,
    counters: &'a Counters,
    voice: &'static Voice,
    failing: bool,
    retry: Retry,
}

impl<'a> Delivery<'a> {
    pub fn new(url: &'a hyper::Uri, counters: &'a Counters, voice: &'static Voice) -> Self {
        Delivery {
            url,
            counters,
            voice,
            failing: false,
            retry: Retry::new(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }

    /// Counts and logs the outcome of POSTing `n` alerts or changes.
    pub fn outcome(&mut self, result: Result<(), PostError>, n: usize) -> Posted {
        let url = self.url;
        match result {
            Ok(()) => {
                self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                if self.failing {
                    tracing::info!(message = self.voice.back, %url);
                }
                self.failing = false;
                self.retry.reset();
                Posted::Done
            }
            Err(PostError::Refused(status, text)) => {
                self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                tracing::warn!(message = self.voice.refused, %url, status, %text);
                Posted::Done
            }
            Err(PostError::Retry(error)) => {
                self.counters
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(message = self.voice.unreachable, %url, %error);
                }
                self.failing = true;
                Posted::Again
            }
        }
    }

    /// Waits until `wake` says there is something to send; false when `stop` came first.
    pub async fn idle(wake: &Notify, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = wake.notified() => true,
            _ = stop.cancelled() => false,
        }
    }

    /// The pause before the next try; false when `stop` came first.
    pub async fn pause(&mut self, stop: &CancellationToken) -> bool {
        self.retry.pause(stop).await
    }
}

/// Where findings go, checked (from the config's `alertmanager_urls`, `webhook_url`,
/// `alert_resend_interval` and `runbook_base_url`).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSettings {
    /// Each Alertmanager's `…/api/v2/alerts`.
    pub alertmanagers: Vec<hyper::Uri>,
    pub webhook: Option<hyper::Uri>,
    /// Trust and credentials for the Alertmanagers (`[alertmanager_http]`).
    pub alertmanager_http: ClientSettings,
    /// Trust and credentials for the webhook (`[webhook_http]`).
    pub webhook_http: ClientSettings,
    /// How often firing alerts are sent again.
    pub resend_interval: Duration,
    /// Base of each alert's `runbook_url` (without a trailing `#`).
    pub runbook_base_url: String,
}

/// Every sink of the collector.
#[derive(Default, Clone)]
pub struct Sinks {
    alertmanagers: Vec<Arc<alertmanager::Alertmanager>>,
    webhook: Option<Arc<webhook::Webhook>>,
}

impl Sinks {
    /// Starts one task per sink on the current runtime.
    pub fn start(settings: &SinkSettings, stop: CancellationToken) -> Sinks {
        Sinks {
            alertmanagers: settings
                .alertmanagers
                .iter()
                .map(|u| {
                    alertmanager::Alertmanager::start(
                        u.clone(),
                        settings.runbook_base_url.clone(),
                        settings.resend_interval,
                        Sender::new(&settings.alertmanager_http),
                        stop.clone(),
                    )
                })
                .collect(),
            webhook: settings.webhook.as_ref().map(|u| {
                webhook::Webhook::start(
                    u.clone(),
                    Sender::new(&settings.webhook_http),
                    stop.clone(),
                )
            }),
        }
    }

    /// Passes one evaluation's state changes on.
    pub fn changes(&self, changes: &[Change], now: SystemTime) {
        if changes.is_empty() {
            return;
        }
        for a in &self.alertmanagers {
            a.changes(changes, now);
        }
        if let Some(w) = &self.webhook {
            w.changes(changes);
        }
    }

    /// Sends every firing finding to Alertmanager again (it forgets alerts whose `endsAt`
    /// passes).
    pub fn resend(&self, records: &[&Record], now: SystemTime) {
        for a in &self.alertmanagers {
            a.resend(records, now);
        }
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.alertmanagers
            .iter()
            .map(|a| a.stats())
            .chain(self.webhook.iter().map(|w| w.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_sink_logs_its_own_words() {
        let w = voice!("Webhook", "finding changes", "changes");
        assert_eq!(w.back, "Webhook reachable again.");
        assert_eq!(w.refused, "Webhook refused finding changes; dropped.");
        assert_eq!(
            w.unreachable,
            "Webhook unreachable; changes kept and retried with backoff."
        );
    }
}
