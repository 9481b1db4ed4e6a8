//! The sender thread: its own single-threaded Tokio runtime, so export never competes with
//! measurement for the agent's runtime. Sends the oldest queued window first; on a network
//! error or a retryable status (408, 429, 5xx) it waits (250 ms doubling to 5 s) and retries
//! the same window; other 4xx mean the receiver will never take it: dropped and counted.

use super::{OtlpSettings, Queue};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);

enum Outcome {
    Sent,
    Refused(u16),
    Retry(String),
}

pub(super) fn run(queue: Arc<Queue>, settings: OtlpSettings, stop: CancellationToken) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(message = "Cannot start the OTLP sender runtime; not exporting.", %error);
            return;
        }
    };
    rt.block_on(send_loop(queue, settings, stop));
}

async fn send_loop(queue: Arc<Queue>, settings: OtlpSettings, stop: CancellationToken) {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let Some((seq, body)) = queue.front() else {
            tokio::select! {
                _ = queue.notify.notified() => continue,
                _ = stop.cancelled() => return,
            }
        };
        let outcome = tokio::select! {
            o = send(&client, &settings, body) => o,
            _ = stop.cancelled() => return,
        };
        match outcome {
            Outcome::Sent => {
                queue.done(seq);
                queue.stats.sent.inc();
                if failing {
                    tracing::info!(message = "OTLP export resumed.", queued = queue.len());
                }
                failing = false;
                backoff = BACKOFF_MIN;
            }
            Outcome::Refused(status) => {
                queue.done(seq);
                queue.stats.dropped.inc();
                tracing::warn!(message = "OTLP receiver refused a window; dropped.", status);
            }
            Outcome::Retry(reason) => {
                queue.stats.failures.inc();
                if !failing {
                    tracing::warn!(message = "OTLP export failing; windows stay queued.", %reason);
                }
                failing = true;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    settings: &OtlpSettings,
    body: Arc<Vec<u8>>,
) -> Outcome {
    let mut req = hyper::Request::post(settings.metrics_url.clone())
        .header("content-type", "application/x-protobuf")
        .header(
            "user-agent",
            concat!("headroom-agent/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in &settings.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Full::new(Bytes::from(body.as_ref().clone()))) {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(format!("cannot build the request: {e}")),
    };
    let resp = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Outcome::Retry(format!("{e}")),
        Err(_) => return Outcome::Retry("timed out".into()),
    };
    let status = resp.status().as_u16();
    // Read the body so the connection can be reused.
    let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}")),
        _ => Outcome::Refused(status),
    }
}
