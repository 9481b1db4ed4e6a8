//! The sender thread: its own single-threaded Tokio runtime, so export never competes with
//! measurement for the agent's runtime (and the gRPC client never shares a runtime with
//! anything that blocks). Sends the oldest queued window first; on a network error or a
//! retryable status (HTTP 408, 429, 5xx; gRPC UNAVAILABLE, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED, ABORTED, CANCELLED, OUT_OF_RANGE, DATA_LOSS) it waits (250 ms doubling
//! to 5 s) and retries the same window; other answers mean the receiver will never take it:
//! dropped and counted.
//!
//! `https://` endpoints go through rustls (ring) with hyper-rustls' connector, for OTLP/HTTP
//! and for gRPC alike, verified against [`super::Trust`]. A certificate the CAs do not vouch
//! for is a send failure like any other: logged (naming the certificate problem), retried,
//! windows kept; measurement goes on.

use super::{OtlpSettings, Protocol, Queue, Signal};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);

enum Outcome {
    Sent,
    Refused(String),
    Retry(String),
}

type GrpcClients = (
    MetricsServiceClient<tonic::transport::Channel>,
    TraceServiceClient<tonic::transport::Channel>,
);

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type HttpClient = Client<Connector, Full<Bytes>>;

enum Transport {
    Http(Box<HttpClient>),
    Grpc(Box<GrpcClients>),
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
    let https = settings.metrics_url.scheme_str() == Some("https");
    let tls = if https {
        settings.trust.client_config()
    } else {
        // Never used: plain HTTP.
        super::Trust::File {
            path: Default::default(),
            certs: Vec::new(),
        }
        .client_config()
    };
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let mut transport = match settings.protocol {
        Protocol::HttpProtobuf => Transport::Http(Box::new(
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(builder.enable_http1().wrap_connector(tcp)),
        )),
        Protocol::Grpc => {
            // Connects on first use and again after every failure.
            let endpoint = tonic::transport::Endpoint::from(settings.metrics_url.clone())
                .tcp_nodelay(true)
                .timeout(TIMEOUT);
            let channel = if https {
                endpoint.connect_with_connector_lazy(builder.enable_http2().wrap_connector(tcp))
            } else {
                endpoint.connect_lazy()
            };
            Transport::Grpc(Box::new((
                MetricsServiceClient::new(channel.clone()),
                TraceServiceClient::new(channel),
            )))
        }
    };
    let mut backoff = headroom_service::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut failing = false;
    loop {
        let Some((seq, signal, body)) = queue.front() else {
            tokio::select! {
                _ = queue.notify.notified() => continue,
                _ = stop.cancelled() => return,
            }
        };
        let outcome = tokio::select! {
            o = send(&mut transport, &settings, signal, body) => o,
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
                backoff.reset();
            }
            Outcome::Refused(status) => {
                queue.done(seq);
                queue.stats.dropped.inc();
                tracing::warn!(message = "OTLP receiver refused a window; dropped.", %status);
            }
            Outcome::Retry(reason) => {
                queue.stats.failures.inc();
                if !failing {
                    tracing::warn!(message = "OTLP export failing; windows stay queued.", %reason);
                    if reason.contains("certificate") {
                        tracing::error!(
                            message = "The OTLP endpoint's TLS certificate is not trusted: set otlp_certificate (or OTEL_EXPORTER_OTLP_CERTIFICATE) to the PEM file of the CA that signed it.",
                            url = %settings.metrics_url,
                            %reason
                        );
                    }
                }
                failing = true;
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

async fn send(
    transport: &mut Transport,
    settings: &OtlpSettings,
    signal: Signal,
    body: Arc<Vec<u8>>,
) -> Outcome {
    match transport {
        Transport::Http(client) => send_http(client, settings, signal, body).await,
        Transport::Grpc(clients) => {
            let (metrics, traces) = &mut **clients;
            let result = match signal {
                Signal::Metrics => match ExportMetricsServiceRequest::decode(&body[..]) {
                    Ok(m) => {
                        let req = with_headers(m, settings);
                        tokio::time::timeout(TIMEOUT, metrics.export(req))
                            .await
                            .map(|r| r.map(|_| ()))
                    }
                    Err(e) => {
                        return Outcome::Refused(format!("cannot decode a queued window: {e}"))
                    }
                },
                Signal::Traces => match ExportTraceServiceRequest::decode(&body[..]) {
                    Ok(m) => {
                        let req = with_headers(m, settings);
                        tokio::time::timeout(TIMEOUT, traces.export(req))
                            .await
                            .map(|r| r.map(|_| ()))
                    }
                    Err(e) => return Outcome::Refused(format!("cannot decode queued spans: {e}")),
                },
            };
            grpc_outcome(result)
        }
    }
}

fn with_headers<T>(msg: T, settings: &OtlpSettings) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (k, v) in &settings.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
        if let (Ok(key), Ok(value)) = (key, v.parse()) {
            req.metadata_mut().insert(key, value);
        }
    }
    req
}

/// An error with its causes, `a: b: c` (where a TLS certificate problem shows).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out += &format!(": {text}");
        }
        cur = s.source();
    }
    out
}

fn grpc_outcome(result: Result<Result<(), tonic::Status>, tokio::time::error::Elapsed>) -> Outcome {
    use tonic::Code;
    match result {
        Ok(Ok(())) => Outcome::Sent,
        Ok(Err(status)) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::OutOfRange
            | Code::DataLoss => {
                let mut reason = format!("gRPC {:?}: {}", status.code(), status.message());
                if let Some(source) = std::error::Error::source(&status) {
                    reason += &format!(": {}", chain(source));
                }
                Outcome::Retry(reason)
            }
            code => Outcome::Refused(format!("gRPC {code:?}: {}", status.message())),
        },
        Err(_) => Outcome::Retry("timed out".into()),
    }
}

async fn send_http(
    client: &HttpClient,
    settings: &OtlpSettings,
    signal: Signal,
    body: Arc<Vec<u8>>,
) -> Outcome {
    let url = match signal {
        Signal::Metrics => &settings.metrics_url,
        Signal::Traces => &settings.traces_url,
    };
    let mut req = hyper::Request::post(url.clone())
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
        Ok(Err(e)) => return Outcome::Retry(chain(&e)),
        Err(_) => return Outcome::Retry("timed out".into()),
    };
    let status = resp.status().as_u16();
    // Read the body so the connection can be reused.
    let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}")),
        _ => Outcome::Refused(format!("HTTP {status}")),
    }
}
