//! Traces onward: spans received (gRPC, HTTP protobuf or JSON) are re-encoded as OTLP/HTTP
//! protobuf and POSTed to `--traces-endpoint` (e.g. Jaeger or Tempo at http://jaeger:4318), so
//! they appear in the user's tracing backend. A bounded queue (1000 requests) decouples ingest
//! from the downstream: when it is full, or a request fails 5 times (250 ms doubling backoff),
//! its spans are dropped and counted; ingest never waits.

use crate::fleet::Fleet;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 5;

pub struct Forwarder {
    tx: mpsc::Sender<(Bytes, u64)>,
    fleet: Arc<Mutex<Fleet>>,
}

/// `URL/v1/traces` for a base URL (kept as is when it already ends so); plain HTTP only.
pub fn traces_url(endpoint: &str) -> Result<hyper::Uri, String> {
    let bad = |why: &str| format!("invalid --traces-endpoint '{endpoint}': {why}");
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| bad("expected a URL such as http://jaeger:4318"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad(
            "expected an http:// URL such as http://jaeger:4318 (https is not supported yet)",
        ));
    }
    let base = endpoint.trim_end_matches('/');
    let full = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    full.parse().map_err(|_| bad("cannot append /v1/traces"))
}

impl Forwarder {
    /// Starts the sending task on the current runtime.
    pub fn start(url: hyper::Uri, fleet: Arc<Mutex<Fleet>>, stop: CancellationToken) -> Forwarder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, url, fleet.clone(), stop));
        Forwarder { tx, fleet }
    }

    /// Queues one request for the downstream; never waits.
    pub fn send(&self, req: &ExportTraceServiceRequest) {
        let spans: u64 = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        if spans == 0 {
            return;
        }
        if self
            .tx
            .try_send((Bytes::from(req.encode_to_vec()), spans))
            .is_err()
        {
            count(&self.fleet, 0, spans);
        }
    }
}

fn count(fleet: &Mutex<Fleet>, forwarded: u64, dropped: u64) {
    fleet
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .count_forwarded(forwarded, dropped);
}

async fn run(
    mut rx: mpsc::Receiver<(Bytes, u64)>,
    url: hyper::Uri,
    fleet: Arc<Mutex<Fleet>>,
    stop: CancellationToken,
) {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    loop {
        let (body, spans) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.cancelled() => return,
        };
        let mut backoff = Duration::from_millis(250);
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            let req = hyper::Request::post(url.clone())
                .header("content-type", "application/x-protobuf")
                .body(Full::new(body.clone()))
                .expect("static request parts are valid");
            let status =
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let s = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        Some(s)
                    }
                    _ => None,
                };
            match status {
                Some(200..=299) => {
                    sent = true;
                    break;
                }
                Some(s) if !matches!(s, 408 | 429 | 500..=599) => {
                    tracing::warn!(
                        message = "Traces endpoint refused spans; dropped.",
                        status = s
                    );
                    break;
                }
                _ if attempt < ATTEMPTS => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff *= 2;
                }
                _ => tracing::warn!(message = "Traces endpoint unreachable; spans dropped.", %url),
            }
        }
        if sent {
            count(&fleet, spans, 0);
        } else {
            count(&fleet, 0, spans);
        }
    }
}
