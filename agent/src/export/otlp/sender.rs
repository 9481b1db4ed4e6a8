//! The sender thread: its own single-threaded Tokio runtime, so export never competes with
//! measurement for the agent's runtime (and the gRPC client never shares a runtime with
//! anything that blocks). Sends the oldest queued window first; on a network error or a
//! retryable status (HTTP 408, 429, 5xx; gRPC UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
//! CANCELLED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when it carries a RetryInfo, as
//! the OTLP specification says) it waits and retries the same window: full jitter, uniform in
//! [0, 250 ms doubling to 5 s], and never sooner than the receiver's `Retry-After` (HTTP) or
//! RetryInfo delay (gRPC), at most 5 minutes. Other answers (400, 413, INVALID_ARGUMENT,
//! RESOURCE_EXHAUSTED without RetryInfo: a request too large for the receiver) mean it will
//! never take the window: dropped and counted (`headroom_otlp_windows_dropped_total`).
//!
//! `https://` endpoints go through rustls (ring) with hyper-rustls' connector, for OTLP/HTTP
//! and for gRPC alike, verified against [`super::Trust`]. A certificate the CAs do not vouch
//! for is a send failure like any other: logged (naming the certificate problem), retried,
//! windows kept; measurement goes on.
//!
//! The loop beats every [`BEAT`] whatever it waits on (an empty queue, a request in flight,
//! a retry delay), so the daemon's readiness sees a wedged sender, not a failing one.

use super::{OtlpSettings, Protocol, Queue, Signal};
use crate::health::Beat;
use headroom_service::backoff::Backoff;
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
/// How often the loop beats while it waits.
const BEAT: Duration = Duration::from_millis(500);
/// The longest a receiver's Retry-After / RetryInfo may hold the queue back.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, PartialEq)]
enum Outcome {
    Sent,
    Refused(String),
    /// Retry, not before the receiver's delay when it gave one.
    Retry(String, Option<Duration>),
}

/// The wait before retrying: full jitter (uniform in [0, ceiling]) so agents that lost the
/// same collector spread out, but never sooner than the receiver asked, capped.
fn retry_delay(backoff: &mut Backoff, asked: Option<Duration>) -> Duration {
    let jitter = backoff.next_full_jitter();
    jitter.max(asked.unwrap_or_default().min(RETRY_AFTER_MAX))
}

/// `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(v: &hyper::header::HeaderValue) -> Option<Duration> {
    let v = v.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// `google.rpc.Status` and `google.rpc.RetryInfo`, as far as a retry delay needs them.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The RetryInfo delay in a gRPC status's details (`grpc-status-details-bin`), if any.
fn retry_info(status: &tonic::Status) -> Option<Duration> {
    use prost::Message;
    let s = rpc::Status::decode(status.details()).ok()?;
    let d = s
        .details
        .iter()
        .find(|a| a.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let d = rpc::RetryInfo::decode(&d.value[..]).ok()?.retry_delay?;
    Some(Duration::new(
        d.seconds.max(0) as u64,
        d.nanos.clamp(0, 999_999_999) as u32,
    ))
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

pub(super) fn run(
    queue: Arc<Queue>,
    settings: OtlpSettings,
    stop: CancellationToken,
    beat: Option<Beat>,
) {
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
    rt.block_on(send_loop(queue, settings, stop, beat));
}

/// Waits for `fut` (or `stop`: None), beating every [`BEAT`] meanwhile.
/// The loop's heartbeat, and the test hook (`HEADROOM_TEST_STALL_EXPORTER_AFTER`) that stops
/// it, and the loop with it, wherever the loop is waiting.
struct Pulse {
    beat: Option<Beat>,
    stall_at: Option<std::time::Instant>,
}

impl Pulse {
    /// Beats; false once the test hook says the loop is stuck.
    fn beat(&self) -> bool {
        if self
            .stall_at
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            return false;
        }
        if let Some(b) = &self.beat {
            b.beat();
        }
        true
    }
}

async fn beating<F: std::future::Future>(
    fut: F,
    stop: &CancellationToken,
    pulse: &Pulse,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        if !pulse.beat() {
            // Stuck, as the test hook asks: no work, no beats, until stopped.
            stop.cancelled().await;
            return None;
        }
        tokio::select! {
            o = &mut fut => return Some(o),
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(BEAT) => {}
        }
    }
}

async fn send_loop(
    queue: Arc<Queue>,
    settings: OtlpSettings,
    stop: CancellationToken,
    beat: Option<Beat>,
) {
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
    let (builder, tcp) = headroom_service::tls::client_connector(tls, settings.server_name.clone());
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
    let mut token = settings
        .token_file
        .clone()
        .map(super::token::TokenFile::new);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut failing = false;
    let pulse = Pulse {
        beat,
        stall_at: crate::health::test_stall_at("exporter"),
    };
    loop {
        let Some((seq, signal, body)) = queue.front() else {
            match beating(queue.notify.notified(), &stop, &pulse).await {
                Some(_) => continue,
                None => return,
            }
        };
        let authorization = token
            .as_mut()
            .and_then(|t| t.authorization().map(String::from));
        let Some(outcome) = beating(
            send(
                &mut transport,
                &settings,
                authorization.as_deref(),
                signal,
                body,
            ),
            &stop,
            &pulse,
        )
        .await
        else {
            return;
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
            Outcome::Retry(reason, asked) => {
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
                let delay = retry_delay(&mut backoff, asked);
                if beating(tokio::time::sleep(delay), &stop, &pulse)
                    .await
                    .is_none()
                {
                    return;
                }
            }
        }
    }
}

async fn send(
    transport: &mut Transport,
    settings: &OtlpSettings,
    authorization: Option<&str>,
    signal: Signal,
    body: Arc<Vec<u8>>,
) -> Outcome {
    match transport {
        Transport::Http(client) => send_http(client, settings, authorization, signal, body).await,
        Transport::Grpc(clients) => {
            let (metrics, traces) = &mut **clients;
            let result = match signal {
                Signal::Metrics => match ExportMetricsServiceRequest::decode(&body[..]) {
                    Ok(m) => {
                        let req = with_headers(m, settings, authorization);
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
                        let req = with_headers(m, settings, authorization);
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

fn with_headers<T>(
    msg: T,
    settings: &OtlpSettings,
    authorization: Option<&str>,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (k, v) in &settings.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
        if let (Ok(key), Ok(value)) = (key, v.parse()) {
            req.metadata_mut().insert(key, value);
        }
    }
    // The token file's token wins over a configured authorization header.
    if let Some(Ok(value)) = authorization.map(str::parse) {
        req.metadata_mut().insert("authorization", value);
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
            // Retryable only when the receiver says recovery is possible (OTLP spec); our
            // collector answers it, without RetryInfo, for a request over its size limit.
            Code::ResourceExhausted if retry_info(&status).is_none() => Outcome::Refused(format!(
                "gRPC ResourceExhausted without RetryInfo: {}",
                status.message()
            )),
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
                Outcome::Retry(reason, retry_info(&status))
            }
            code => Outcome::Refused(format!("gRPC {code:?}: {}", status.message())),
        },
        Err(_) => Outcome::Retry("timed out".into(), None),
    }
}

async fn send_http(
    client: &HttpClient,
    settings: &OtlpSettings,
    authorization: Option<&str>,
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
        if authorization.is_none() || !k.eq_ignore_ascii_case("authorization") {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    if let Some(a) = authorization.and_then(|a| hyper::header::HeaderValue::from_str(a).ok()) {
        let mut a = a;
        a.set_sensitive(true);
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let req = match req.body(Full::new(Bytes::from(body.as_ref().clone()))) {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(format!("cannot build the request: {e}"), None),
    };
    let resp = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Outcome::Retry(chain(&e), None),
        Err(_) => return Outcome::Retry("timed out".into(), None),
    };
    let status = resp.status().as_u16();
    let asked = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(retry_after);
    // Read the body so the connection can be reused.
    let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}"), asked),
        _ => Outcome::Refused(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tonic::Code;

    fn retry_info_details(delay: Duration) -> Bytes {
        let info = rpc::RetryInfo {
            retry_delay: Some(rpc::Duration {
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        let status = rpc::Status {
            details: vec![rpc::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        Bytes::from(status.encode_to_vec())
    }

    #[test]
    fn grpc_statuses_that_cannot_succeed_are_dropped() {
        let o = |s: tonic::Status| grpc_outcome(Ok(Err(s)));
        assert!(matches!(
            o(tonic::Status::invalid_argument("bad")),
            Outcome::Refused(_)
        ));
        // Our collector's answer to a request over its size limit: no RetryInfo.
        assert!(matches!(
            o(tonic::Status::resource_exhausted("request larger than 8388608 bytes")),
            Outcome::Refused(r) if r.contains("without RetryInfo")
        ));
        let throttled = tonic::Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            retry_info_details(Duration::from_millis(2500)),
        );
        assert!(matches!(
            o(throttled),
            Outcome::Retry(_, Some(d)) if d == Duration::from_millis(2500)
        ));
        assert!(matches!(
            o(tonic::Status::unavailable("down")),
            Outcome::Retry(_, None)
        ));
    }

    #[test]
    fn retry_after_and_full_jitter() {
        let h = |s: &str| retry_after(&hyper::header::HeaderValue::from_str(s).unwrap());
        assert_eq!(h("3"), Some(Duration::from_secs(3)));
        let at = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = h(&httpdate::fmt_http_date(at)).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(h("soon"), None);
        // Full jitter: the whole of [0, ceiling], not its upper half.
        let c = Duration::from_secs(1);
        let mut b = Backoff::new(c, c);
        let draws: Vec<Duration> = (0..200).map(|_| retry_delay(&mut b, None)).collect();
        assert!(draws.iter().all(|d| *d <= c));
        assert!(
            draws.iter().filter(|d| **d < c / 4).count() > 10,
            "{draws:?}"
        );
        // Never sooner than asked, capped.
        assert!(retry_delay(&mut b, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            retry_delay(&mut b, Some(Duration::from_secs(86_400))),
            RETRY_AFTER_MAX
        );
    }

    type Request = hyper::Request<hyper::body::Incoming>;
    /// A status and, optionally, a Retry-After value.
    type Reply = (u16, Option<&'static str>);

    /// A receiver on 127.0.0.1: for its n-th request (from 1) `answer` says what to record
    /// and the status (with a Retry-After) to answer.
    async fn receiver<T: Send + 'static>(
        answer: impl Fn(&Request, usize) -> (T, Reply) + Send + Sync + 'static,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<T>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<T>>> = Arc::new(Mutex::new(Vec::new()));
        let (log, answer) = (seen.clone(), Arc::new(answer));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, answer) = (log.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (code, retry) = {
                            let mut l = log.lock().unwrap();
                            let (record, reply) = answer(&req, l.len() + 1);
                            l.push(record);
                            reply
                        };
                        async move {
                            let mut r = hyper::Response::builder().status(code);
                            if let Some(v) = retry {
                                r = r.header("retry-after", v);
                            }
                            r.body(Full::new(Bytes::new()))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    /// OTLP/HTTP to `addr`, system trust, no token, no queue on disk.
    fn settings(addr: std::net::SocketAddr) -> OtlpSettings {
        let url: hyper::Uri = format!("http://{addr}/v1/metrics").parse().unwrap();
        OtlpSettings {
            protocol: Protocol::HttpProtobuf,
            metrics_url: url.clone(),
            traces_url: url,
            headers: Vec::new(),
            resource_attributes: Vec::new(),
            trust: super::super::Trust::System,
            queue_dir: None,
            token_file: None,
            server_name: None,
        }
    }

    /// A real OTLP/HTTP receiver on 127.0.0.1 answering, in order: 429 with `Retry-After: 1`,
    /// 200, 413, 400, 200. The retry waits the second the receiver asked (the backoff alone
    /// would wait ≤ 250 ms); 413 and 400 are dropped after one request each and counted.
    #[tokio::test]
    async fn the_sender_honours_retry_after_and_drops_what_cannot_succeed() {
        let (addr, seen) = receiver(|_, n| {
            let answer = match n {
                1 => (429, Some("1")),
                3 => (413, None),
                4 => (400, None),
                _ => (200, None),
            };
            (std::time::Instant::now(), answer)
        })
        .await;
        let queue = Arc::new(Queue::in_memory(10, Default::default()));
        for _ in 0..4 {
            queue.push(Signal::Metrics, vec![1, 2, 3]);
        }
        let settings = settings(addr);
        let stop = CancellationToken::new();
        let task = tokio::spawn(send_loop(queue.clone(), settings, stop.clone(), None));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queue.len() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        let _ = task.await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5, "one request each, one retry: {seen:?}");
        let gap = seen[1] - seen[0];
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
        assert_eq!(queue.stats.sent.get(), 2);
        assert_eq!(queue.stats.dropped.get(), 2);
        assert_eq!(queue.stats.failures.get(), 1);
    }

    /// The token file's token goes with every request as `Authorization: Bearer …`; a file
    /// replaced mid-run (as the kubelet rotates a projected token) is sent from the next
    /// request on, with no window lost between.
    #[tokio::test]
    async fn the_token_file_is_sent_and_followed_when_it_rotates() {
        let (addr, seen) = receiver(|req, _| {
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (auth, (200, None))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok.en.one\n").unwrap();
        let queue = Arc::new(Queue::in_memory(10, Default::default()));
        let settings = OtlpSettings {
            headers: vec![("authorization".into(), "Bearer configured".into())],
            token_file: Some(file.clone()),
            ..settings(addr)
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(send_loop(queue.clone(), settings, stop.clone(), None));
        let drain = |n: usize| {
            let (queue, seen) = (queue.clone(), seen.clone());
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while (queue.len() > 0 || seen.lock().unwrap().len() < n)
                    && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        for _ in 0..2 {
            queue.push(Signal::Metrics, vec![1]);
        }
        drain(2).await;
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "tok.en.two").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        for _ in 0..2 {
            queue.push(Signal::Metrics, vec![1]);
        }
        drain(4).await;
        stop.cancel();
        let _ = task.await;
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "Bearer tok.en.one",
                "Bearer tok.en.one",
                "Bearer tok.en.two",
                "Bearer tok.en.two"
            ]
        );
        assert_eq!((queue.stats.sent.get(), queue.stats.dropped.get()), (4, 0));
    }
}
