//! Traces onward: spans received (gRPC, HTTP protobuf or JSON) go on to `--traces-endpoint`
//! (e.g. Jaeger or Tempo), so they appear in the user's tracing backend: re-encoded as OTLP/HTTP
//! protobuf and POSTed to `URL/v1/traces` (`--traces-protocol http`, the default), or sent with
//! the OTLP/gRPC `TraceService/Export` call through tonic (`--traces-protocol grpc`, endpoint
//! such as http://tempo:4317). A queue bounded in bytes ([`QUEUE_BYTES`] of encoded requests,
//! which is what it holds) decouples ingest from the downstream: when a request does not fit,
//! or fails 5 times (250 ms doubling backoff), its spans are dropped and counted; ingest never
//! waits.

use crate::check::Invalid;
use crate::fleet::Fleet;
use crate::send::{self, HttpClient, Retry};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most bytes of encoded requests waiting for the traces endpoint.
pub const QUEUE_BYTES: usize = 32 << 20;
/// Most requests waiting (each takes a slot however small).
const QUEUE: usize = 10_000;
const ATTEMPTS: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(10);

/// How spans are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesProtocol {
    /// OTLP/HTTP protobuf, POST `/v1/traces`.
    Http,
    /// OTLP/gRPC `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
}

/// One queued request: its protobuf encoding and its span count.
type Queued = (Bytes, u64);

pub struct Forwarder {
    tx: mpsc::Sender<Queued>,
    fleet: Arc<Mutex<Fleet>>,
    queued: Arc<AtomicUsize>,
}

/// For HTTP, `URL/v1/traces` for a base URL (kept as is when it already ends so); for gRPC the
/// URL as given (the service path is the call's). Plain HTTP (h2c for gRPC) only.
pub fn traces_url(endpoint: &str, protocol: TracesProtocol) -> Result<hyper::Uri, Invalid> {
    let bad = |why: &str| Invalid::text("--traces-endpoint", endpoint, why);
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| bad("expected a URL such as http://jaeger:4318"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad(
            "expected an http:// URL such as http://jaeger:4318 (https is not supported yet)",
        ));
    }
    let base = endpoint.trim_end_matches('/');
    if protocol == TracesProtocol::Grpc {
        return Ok(uri);
    }
    let full = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    full.parse().map_err(|_| bad("cannot append /v1/traces"))
}

impl Forwarder {
    /// Starts the sending task on the current runtime.
    pub fn start(
        url: hyper::Uri,
        protocol: TracesProtocol,
        fleet: Arc<Mutex<Fleet>>,
        stop: CancellationToken,
    ) -> Forwarder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let transport = match protocol {
            TracesProtocol::Http => Transport::Http(send::client()),
            TracesProtocol::Grpc => {
                // Connects on first use and again after a failure.
                let channel = tonic::transport::Endpoint::from(url.clone())
                    .tcp_nodelay(true)
                    .timeout(TIMEOUT)
                    .connect_lazy();
                Transport::Grpc(TraceServiceClient::new(channel))
            }
        };
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(rx, url, transport, fleet.clone(), queued.clone(), stop));
        Forwarder { tx, fleet, queued }
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
        let len = req.encoded_len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.full(spans, len);
            return;
        }
        if self
            .tx
            .try_send((Bytes::from(req.encode_to_vec()), spans))
            .is_err()
        {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.full(spans, len);
        }
    }

    fn full(&self, spans: u64, bytes: usize) {
        let mut f = self.fleet.lock().unwrap_or_else(|e| e.into_inner());
        f.count_forwarded(0, spans);
        f.count_bound(crate::fleet::Bound::TracesQueueBytes, bytes as u64);
    }
}

fn count(fleet: &Mutex<Fleet>, forwarded: u64, dropped: u64) {
    fleet
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .count_forwarded(forwarded, dropped);
}

enum Transport {
    Http(HttpClient),
    Grpc(TraceServiceClient<tonic::transport::Channel>),
}

/// What one attempt came to.
enum Outcome {
    Sent,
    /// Refused for good (4xx other than 408/429; gRPC codes other than the retryable ones).
    Refused(String),
    /// Worth another try.
    Retry,
}

impl Transport {
    async fn send(&mut self, url: &hyper::Uri, body: &Bytes) -> Outcome {
        match self {
            Transport::Http(client) => {
                let body = body.clone();
                let r = hyper::Request::post(url.clone())
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(body))
                    .expect("static request parts are valid");
                match tokio::time::timeout(TIMEOUT, client.request(r)).await {
                    Ok(Ok(resp)) => {
                        let s = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        match s {
                            200..=299 => Outcome::Sent,
                            408 | 429 | 500..=599 => Outcome::Retry,
                            s => Outcome::Refused(format!("HTTP {s}")),
                        }
                    }
                    _ => Outcome::Retry,
                }
            }
            Transport::Grpc(client) => {
                // Encoded by us a moment ago: it decodes.
                let Ok(req) = ExportTraceServiceRequest::decode(&body[..]) else {
                    return Outcome::Refused("cannot decode a queued request".into());
                };
                match tokio::time::timeout(TIMEOUT, client.export(req)).await {
                    Ok(Ok(_)) => Outcome::Sent,
                    Ok(Err(status)) => {
                        use tonic::Code::*;
                        // The OTLP specification's retryable codes.
                        match status.code() {
                            Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable
                            | DataLoss | ResourceExhausted | Unknown => Outcome::Retry,
                            c => Outcome::Refused(format!("gRPC {c:?}: {}", status.message())),
                        }
                    }
                    Err(_) => Outcome::Retry,
                }
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Queued>,
    url: hyper::Uri,
    mut transport: Transport,
    fleet: Arc<Mutex<Fleet>>,
    queued: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    loop {
        let (req, spans) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.cancelled() => return,
        };
        // 250 ms doubling: at most 250 + 500 + 1000 + 2000 ms between the five attempts.
        let mut retry = Retry::new(Duration::from_millis(250), Duration::from_secs(2));
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            match transport.send(&url, &req).await {
                Outcome::Sent => {
                    sent = true;
                    break;
                }
                Outcome::Refused(why) => {
                    tracing::warn!(message = "Traces endpoint refused spans; dropped.", %why);
                    break;
                }
                Outcome::Retry if attempt < ATTEMPTS => {
                    if !retry.pause(&stop).await {
                        return;
                    }
                }
                Outcome::Retry => {
                    tracing::warn!(message = "Traces endpoint unreachable; spans dropped.", %url)
                }
            }
        }
        queued.fetch_sub(req.len(), Ordering::AcqRel);
        if sent {
            count(&fleet, spans, 0);
        } else {
            count(&fleet, 0, spans);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let stop = CancellationToken::new();
        // Nothing listens on 127.0.0.1:1: the first request is retried for seconds, and the
        // rest wait in the queue.
        let url = traces_url("http://127.0.0.1:1", TracesProtocol::Http).unwrap();
        let f = Forwarder::start(url, TracesProtocol::Http, fleet.clone(), stop.clone());
        let span = Span {
            name: "s".into(),
            attributes: vec![KeyValue {
                key: "blob".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(1 << 20))),
                }),
                key_strindex: 0,
            }],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        for _ in 0..40 {
            f.send(&req);
        }
        let fit = QUEUE_BYTES / req.encoded_len();
        let s = fleet
            .lock()
            .unwrap()
            .snapshot_lean(std::time::SystemTime::now());
        stop.cancel();
        assert_eq!(s.ingest.spans_forward_dropped, 40 - fit as u64);
        assert_eq!(
            s.ingest.bounds["traces_queue_bytes"],
            ((40 - fit) * req.encoded_len()) as u64
        );
    }
}
