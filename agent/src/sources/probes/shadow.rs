//! Shadow probes, run the way the kubelet runs them: a new TCP connection per attempt (no
//! keep-alive, `Connection: close`), one deadline over connect + headers + body, status 200–399
//! is success, each probe on its own period. A node-wide rate cap bounds what headroom adds.

use super::spec::{ProbeSpec, Target};
use super::stats::{classify_success, Outcome};
use super::{ProbeConfig, ProbeLog};
use crate::sources::listeners::LatestSamples;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the probed application sees: headroom, not the kubelet.
pub use super::spec::USER_AGENT;
/// The kubelet reads at most this much of an HTTP probe's response body; a gRPC probe's
/// response larger than this is a failure.
pub const MAX_BODY: usize = 10 * 1024;

/// One attempt: how it went and how long it took (a timeout takes its full timeout).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// When the attempt began (wall clock).
    pub started: std::time::SystemTime,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Runs one attempt against `target` within `timeout`.
pub async fn attempt(target: &Target, timeout: Duration, slow_fraction: f64) -> Attempt {
    let started = std::time::SystemTime::now();
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        match target {
            Target::Tcp { host, port } => tcp(*host, *port).await.map(|()| None),
            Target::Grpc {
                host,
                port,
                service,
            } => grpc_check(*host, *port, service).await.map(|()| None),
            Target::Http {
                tls,
                host,
                port,
                path,
                host_header,
                headers,
            } => http_get(*tls, *host, *port, path, host_header.as_deref(), headers)
                .await
                .map(Some),
        }
    })
    .await;
    let elapsed = start.elapsed();
    match result {
        Err(_) => Attempt {
            started,
            outcome: Outcome::Timeout,
            elapsed: timeout,
            status: None,
            error: None,
        },
        Ok(Err(e)) => Attempt {
            started,
            outcome: Outcome::Error,
            elapsed,
            status: None,
            error: Some(e),
        },
        Ok(Ok(Some(status))) if !(200..400).contains(&status) => Attempt {
            started,
            outcome: Outcome::Error,
            elapsed,
            status: Some(status),
            error: Some(format!("HTTP status {status}")),
        },
        Ok(Ok(status)) => Attempt {
            started,
            outcome: classify_success(elapsed, timeout, slow_fraction),
            elapsed,
            status,
            error: None,
        },
    }
}

async fn tcp(host: IpAddr, port: u16) -> Result<(), String> {
    TcpStream::connect(SocketAddr::new(host, port))
        .await
        .map(drop)
        .map_err(|e| format!("connect to {}: {e}", SocketAddr::new(host, port)))
}

async fn http_get(
    tls: bool,
    host: IpAddr,
    port: u16,
    path: &str,
    host_header: Option<&str>,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let addr = SocketAddr::new(host, port);
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut req = Request::get(path)
        .header(
            hyper::header::HOST,
            host_header
                .map(str::to_string)
                .unwrap_or_else(|| addr.to_string()),
        )
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header(hyper::header::ACCEPT, "*/*")
        .header(hyper::header::CONNECTION, "close");
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("user-agent") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid probe request: {e}"))?;
    if !tls {
        return exchange(TokioIo::new(stream), req, addr).await;
    }
    // As the kubelet: TLS without verifying the certificate (no SNI for an IP address).
    let stream = tokio_rustls::TlsConnector::from(tls_config())
        .connect(
            rustls::pki_types::ServerName::IpAddress(host.into()),
            stream,
        )
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    exchange(TokioIo::new(stream), req, addr).await
}

/// One HTTP/1.1 request on a fresh connection; the status once at most 10 KiB of the body is read.
async fn exchange<I>(io: I, req: Request<Empty<Bytes>>, addr: SocketAddr) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    let exchange = async move {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP request to {addr}: {e}"))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut read = 0usize;
        while read < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len()),
                Some(Err(e)) => return Err(format!("reading the body from {addr}: {e}")),
            }
        }
        Ok(status)
    };
    tokio::pin!(exchange);
    tokio::select! {
        r = &mut exchange => r,
        c = conn => match c {
            // The server closed after answering: the response is already with `exchange`.
            Ok(()) => exchange.await,
            Err(e) => Err(format!("HTTP connection to {addr}: {e}")),
        },
    }
}

/// Accepts any server certificate, as the kubelet's HTTPS probes do (`InsecureSkipVerify`);
/// signatures are still checked so the handshake is a real one.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(cfg)
        })
        .clone()
}

/// Protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The gRPC length-prefixed `HealthCheckRequest { service }`.
pub fn health_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend(msg);
    out
}

/// Pure: the serving status (field 1) of a length-prefixed `HealthCheckResponse`; 0 (UNKNOWN)
/// when absent, None when the bytes are not one.
pub fn health_status(data: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(data.get(1..5)?.try_into().ok()?) as usize;
    let msg = data.get(5..5 + len)?;
    let mut i = 0;
    let mut status = 0;
    while i < msg.len() {
        let tag = msg[i];
        i += 1;
        let mut v = 0u64;
        let mut shift = 0;
        match tag & 7 {
            0 => loop {
                let b = *msg.get(i)?;
                i += 1;
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
                if shift > 63 {
                    return None;
                }
            },
            2 => {
                let n = *msg.get(i)? as usize;
                i += 1 + n;
                continue;
            }
            _ => return None,
        }
        if tag >> 3 == 1 {
            status = v;
        }
    }
    Some(status)
}

/// One `grpc.health.v1.Health/Check` over a new plaintext HTTP/2 connection, as the kubelet:
/// success only for SERVING.
async fn grpc_check(host: IpAddr, port: u16, service: &str) -> Result<(), String> {
    let addr = SocketAddr::new(host, port);
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    let req = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .body(http_body_util::Full::new(Bytes::from(health_request(
            service,
        ))))
        .map_err(|e| format!("invalid gRPC request: {e}"))?;
    let exchange = async move {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("gRPC request to {addr}: {e}"))?;
        let (parts, body) = resp.into_parts();
        if parts.status != hyper::StatusCode::OK {
            return Err(format!("HTTP status {} from a gRPC server", parts.status));
        }
        // Bounded like an HTTP probe's body: a HealthCheckResponse is a few bytes, and a pod
        // that streams more gets a failure, not the agent's memory.
        let mut body = body;
        let mut data = Vec::new();
        let mut trailers = hyper::HeaderMap::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the gRPC response from {addr}: {e}"))?;
            match frame.into_data() {
                Ok(d) => {
                    if data.len() + d.len() > MAX_BODY {
                        return Err(format!(
                            "gRPC response from {addr} larger than {MAX_BODY} bytes; a HealthCheckResponse is a few bytes"
                        ));
                    }
                    data.extend_from_slice(&d);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                }
            }
        }
        let code = trailers
            .get("grpc-status")
            .or(parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if code != "0" {
            let msg = trailers
                .get("grpc-message")
                .or(parts.headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(format!("gRPC status {code} {msg}").trim().to_string());
        }
        match health_status(&data) {
            Some(1) => Ok(()),
            Some(2) => Err("NOT_SERVING".into()),
            Some(3) => Err("SERVICE_UNKNOWN".into()),
            Some(_) => Err("UNKNOWN serving status".into()),
            None => Err("malformed HealthCheckResponse".into()),
        }
    };
    tokio::pin!(exchange);
    tokio::select! {
        r = &mut exchange => r,
        c = conn => match c {
            Ok(()) => exchange.await,
            Err(e) => Err(format!("HTTP/2 connection to {addr}: {e}")),
        },
    }
}

/// Node-wide cap on attempts per second: attempts wait their turn.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimit {
    pub fn new(per_second: f64) -> RateLimit {
        RateLimit {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Where in its period a probe starts: spread by its identity, as the kubelet spreads workers
/// with a random start, so probes of many pods do not fire together.
fn start_offset(spec: &ProbeSpec, period: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.key().hash(&mut h);
    let ms = period.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

async fn probe_loop(
    spec: ProbeSpec,
    target: Target,
    cfg: ProbeConfig,
    limit: Arc<RateLimit>,
    log: ProbeLog,
    saturation: LatestSamples,
) {
    let period = spec.timing.period.mul_f64(cfg.period_fraction);
    // Not before the container's start plus initialDelaySeconds, as the kubelet.
    let delay = spec
        .not_before
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .unwrap_or_default();
    let first = tokio::time::Instant::now() + delay + start_offset(&spec, period);
    let mut tick = tokio::time::interval_at(first, period);
    // Like the kubelet's ticker: an attempt longer than the period drops the missed ticks.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let key = spec.key();
    let target_text = target.to_string();
    let (host, port) = target.addr();
    loop {
        tick.tick().await;
        limit.acquire().await;
        let a = attempt(&target, spec.timing.timeout, cfg.slow_fraction).await;
        let mut workers = None;
        if a.outcome != Outcome::Ok {
            emit_span(&spec, &target_text, &a, a.started);
            // The pod's workers as the sampler saw them last, before this attempt ended.
            workers = saturation
                .find(&spec.pod.uid, host, port)
                .map(|l| super::Saturation {
                    busy: l.busy,
                    workers: l.workers,
                    queue: l.queue,
                });
        }
        log.record(&key, &a, workers);
    }
}

/// A `probe` span for each slow, timed-out or failed attempt (made once the outcome is known:
/// its attributes carry the start time and elapsed time).
pub(crate) fn emit_span(
    spec: &ProbeSpec,
    target: &str,
    a: &Attempt,
    started: std::time::SystemTime,
) {
    let span = tracing::info_span!(
        "probe",
        pod = %spec.pod,
        container = %spec.container,
        kind = spec.kind.as_str(),
        target = %target,
        timeout = spec.timing.timeout.as_secs_f64(),
        elapsed = a.elapsed.as_secs_f64(),
        outcome = a.outcome.as_str(),
        http_status = a.status.map(u64::from),
        error = a.error.as_deref(),
        started_at = %humantime::format_rfc3339_millis(started),
    );
    let _e = span.enter();
    tracing::debug!(message = "Probe attempt was not ok.");
}

/// Runs a task per shadowed probe of the pods published on `pods`, restarting a probe's task
/// when its spec changes and stopping it when the probe goes away. Returns when cancelled.
pub async fn supervise(
    cfg: ProbeConfig,
    mut pods: watch::Receiver<Vec<Arc<Pod>>>,
    log: ProbeLog,
    saturation: LatestSamples,
    stop: CancellationToken,
) {
    let limit = Arc::new(RateLimit::new(cfg.max_attempts_per_second));
    let mut tasks: HashMap<(String, String, super::spec::Kind), (ProbeSpec, JoinHandle<()>)> =
        HashMap::new();
    loop {
        let specs: Vec<ProbeSpec> = pods
            .borrow_and_update()
            .iter()
            .flat_map(|p| super::spec::probes_of(p))
            .collect();
        log.set_specs(&specs);
        let mut keep = std::collections::HashSet::new();
        for s in specs {
            let key = s.key();
            keep.insert(key.clone());
            let Ok(target) = s.action.clone() else {
                continue;
            };
            if tasks.get(&key).is_some_and(|(old, _)| *old == s) {
                continue;
            }
            if let Some((_, h)) = tasks.remove(&key) {
                h.abort();
            }
            let h = tokio::spawn(probe_loop(
                s.clone(),
                target,
                cfg.clone(),
                limit.clone(),
                log.clone(),
                saturation.clone(),
            ));
            tasks.insert(key, (s, h));
        }
        tasks.retain(|k, (_, h)| {
            let alive = keep.contains(k);
            if !alive {
                h.abort();
            }
            alive
        });
        tokio::select! {
            r = pods.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    for (_, (_, h)) in tasks {
        h.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// (span name, [(field, value)]) of each span created.
    type Recorded = Vec<(String, Vec<(String, String)>)>;

    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<Recorded>>);

    struct Fields(Vec<(String, String)>);
    impl Visit for Fields {
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.push((f.name().to_string(), format!("{v:?}")));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Spans {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            let mut f = Fields(Vec::new());
            attrs.record(&mut f);
            self.0
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_string(), f.0));
        }
    }

    fn spec() -> ProbeSpec {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web", "uid": "u"},
            "spec": {"containers": [{"name": "app", "livenessProbe": {"httpGet": {"port": 80, "path": "/h"}}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        super::super::spec::probes_of(&pod).remove(0)
    }

    #[test]
    fn a_timed_out_attempt_is_a_probe_span_with_its_attributes() {
        let spans = Spans::default();
        let sub = tracing_subscriber::registry().with(spans.clone());
        tracing::subscriber::with_default(sub, || {
            let a = Attempt {
                started: std::time::UNIX_EPOCH,
                outcome: Outcome::Timeout,
                elapsed: Duration::from_secs(1),
                status: None,
                error: None,
            };
            emit_span(&spec(), "http://10.0.0.5:80/h", &a, std::time::UNIX_EPOCH);
        });
        let got = spans.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        let (name, fields) = &got[0];
        assert_eq!(name, "probe");
        let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1.as_str());
        assert_eq!(get("pod"), Some("shop/web"));
        assert_eq!(get("container"), Some("app"));
        assert_eq!(get("kind"), Some("\"liveness\""));
        assert_eq!(get("target"), Some("http://10.0.0.5:80/h"));
        assert_eq!(get("timeout"), Some("1.0"));
        assert_eq!(get("elapsed"), Some("1.0"));
        assert_eq!(get("outcome"), Some("\"timeout\""));
        assert_eq!(get("started_at"), Some("1970-01-01T00:00:00.000Z"));
    }

    #[test]
    fn health_messages() {
        assert_eq!(health_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(health_request("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(health_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(health_status(&[0, 0, 0, 0, 9, 0x08]), None);
        assert_eq!(health_status(&[]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 1, 0x08]), None);
    }

    /// A gRPC health server on 127.0.0.1 (hyper, HTTP/2 without TLS): SERVING for "",
    /// NOT_SERVING for "db", grpc-status 12 (UNIMPLEMENTED) for anything else.
    async fn grpc_server() -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        assert_eq!(req.headers()["content-type"], "application/grpc");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let (status, code) = match &body[..] {
                            [0, 0, 0, 0, 0] => (1u8, "0"),
                            b if b.ends_with(b"db") => (2, "0"),
                            _ => (0, "12"),
                        };
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", code.parse().unwrap());
                        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                            Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let resp = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(futures::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_health_checks() {
        let port = grpc_server().await;
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Duration::from_secs(1);
        let target = |service: &str| Target::Grpc {
            host,
            port,
            service: service.into(),
        };
        let a = attempt(&target(""), t, 0.5).await;
        assert_eq!(a.outcome, Outcome::Ok, "{a:?}");
        let a = attempt(&target("db"), t, 0.5).await;
        assert_eq!(
            (a.outcome, a.error.as_deref()),
            (Outcome::Error, Some("NOT_SERVING"))
        );
        let a = attempt(&target("other"), t, 0.5).await;
        assert_eq!(a.outcome, Outcome::Error);
        assert!(a.error.unwrap().starts_with("gRPC status 12"));
    }

    #[tokio::test]
    async fn attempts_against_a_local_server() {
        // A server on 127.0.0.1 that answers 503 to the first request and 200 after 50 ms to
        // the second, each on its own connection (the probe sends `Connection: close`).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut requests = Vec::new();
            for (i, status) in ["503 Service Unavailable", "200 OK"].iter().enumerate() {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).to_string());
                if i == 1 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let r = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                s.write_all(r.as_bytes()).await.unwrap();
            }
            requests
        });
        let target = Target::Http {
            tls: false,
            host: "127.0.0.1".parse().unwrap(),
            port,
            path: "/healthz".into(),
            host_header: None,
            headers: vec![("X-A".into(), "b".into())],
        };
        let t = Duration::from_secs(1);
        let a = attempt(&target, t, 0.5).await;
        assert_eq!((a.outcome, a.status), (Outcome::Error, Some(503)));
        let a = attempt(&target, t, 0.5).await;
        assert_eq!((a.outcome, a.status), (Outcome::Ok, Some(200)));
        assert!(a.elapsed >= Duration::from_millis(50) && a.elapsed < Duration::from_millis(500));
        let reqs = server.await.unwrap();
        let r = reqs[1].to_ascii_lowercase();
        assert!(r.starts_with("get /healthz http/1.1\r\n"), "{r}");
        for h in [
            "connection: close",
            "user-agent: headroom-probe/",
            "x-a: b",
            "accept: */*",
        ] {
            assert!(r.contains(h), "{h} missing in {r}");
        }
        // Nothing listens now: refused at once, an error with the cause.
        let a = attempt(
            &Target::Tcp {
                host: "127.0.0.1".parse().unwrap(),
                port,
            },
            t,
            0.5,
        )
        .await;
        assert_eq!(a.outcome, Outcome::Error);
        assert!(a.error.unwrap().contains("refused"));
    }

    /// A gRPC health server that answers with a 100 MiB body, 1 MiB a frame, counting what it
    /// was let to send: the probe fails naming the bound, and the server could hand over only
    /// what HTTP/2 flow control lets through before the agent stopped reading (nothing near
    /// 100 MiB was ever buffered).
    #[tokio::test]
    async fn a_huge_grpc_response_fails_with_bounded_reads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const CHUNK: usize = 1 << 20;
        const OFFERED: usize = 100;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |_req| {
                let counter = counter.clone();
                async move {
                    let frames = futures::stream::iter(0..OFFERED).map(move |i| {
                        counter.fetch_add(CHUNK, Ordering::SeqCst);
                        let mut chunk = vec![0u8; CHUNK];
                        if i == 0 {
                            // A length prefix announcing the whole body as one message.
                            chunk[1..5]
                                .copy_from_slice(&((OFFERED * CHUNK - 5) as u32).to_be_bytes());
                        }
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            chunk,
                        )))
                    });
                    hyper::Response::builder()
                        .header(hyper::header::CONTENT_TYPE, "application/grpc")
                        .body(http_body_util::StreamBody::new(frames))
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        use futures::StreamExt;
        let target = Target::Grpc {
            host: addr.ip(),
            port: addr.port(),
            service: String::new(),
        };
        let a = attempt(&target, Duration::from_secs(20), 0.5).await;
        let sent = sent.load(Ordering::SeqCst);
        assert_eq!(a.outcome, Outcome::Error, "{a:?}");
        let e = a.error.unwrap();
        assert!(e.contains("larger than 10240 bytes"), "{e}");
        assert!(
            sent <= 8 * CHUNK,
            "the server handed over {sent} bytes of {} offered",
            OFFERED * CHUNK
        );
    }
}
