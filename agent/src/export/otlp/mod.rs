//! OTLP export of the report: every report window becomes one OTLP metrics request (several
//! when it is over [`split::MAX_REQUEST_BYTES`], see [`split`]) and one traces request with
//! its resolver checks as `dns.resolve` spans, when there were any,
//! queued in memory and sent by a thread of its own, with retries and exponential backoff.
//!
//! Why not the opentelemetry SDK's periodic reader: it exports the *current* value of each
//! instrument at each interval, so a window measured while the collector is down is replaced
//! by the next one and its peak is lost. Here each window is its own request, timestamped with
//! the window's end, kept until the collector acknowledges it: after an outage the collector
//! receives every window's peak and places it where it belongs. The queue holds
//! [`BUFFER`] worth of windows; beyond that the oldest go first and are counted
//! (`headroom_otlp_windows_dropped_total`). Measurement never waits for export: `push` takes a
//! lock only to append.

pub mod encode;
#[cfg(test)]
mod encode_tests;
mod points;
mod probes;
mod sender;
mod spans;
pub mod split;
mod spool;
mod token;

use crate::report::Report;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prost::Message;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an outage the queue bridges: every window of the last 15 minutes is kept.
pub const BUFFER: Duration = Duration::from_secs(15 * 60);

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: POST to `…/v1/metrics`.
    HttpProtobuf,
    /// `grpc`: the MetricsService on the endpoint.
    Grpc,
}

/// A bad OTLP setting; the one line names it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("invalid --otlp-protocol '{0}': expected http/protobuf or grpc")]
    Protocol(String),
    #[error("invalid --otlp-endpoint '{endpoint}': {why}")]
    Endpoint { endpoint: String, why: &'static str },
    #[error("invalid OTLP header '{0}': not a valid HTTP header")]
    Header(String),
    #[error("invalid otlp_token_file '': name the file holding the token, such as /var/run/secrets/headroom/collector/token, or leave it unset")]
    TokenFile,
    #[error("invalid otlp_server_name '{0}': expected the DNS name on the collector's certificate, such as headroom-collector.monitoring.svc")]
    ServerName(String),
    #[error("invalid otlp_certificate '{path}': {why}; point it (or OTEL_EXPORTER_OTLP_CERTIFICATE) at the PEM file of the CA that signed the collector's certificate")]
    Certificate { path: String, why: String },
}

impl Protocol {
    pub fn parse(text: &str) -> Result<Protocol, SettingError> {
        match text {
            "http/protobuf" | "http" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(SettingError::Protocol(text.to_string())),
        }
    }
}

/// Where and how to export.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub protocol: Protocol,
    /// Where the requests go: `…/v1/metrics` for HTTP, the endpoint itself for gRPC.
    pub metrics_url: hyper::Uri,
    /// Where spans go over HTTP: `…/v1/traces`.
    pub traces_url: hyper::Uri,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `otlp_headers`).
    pub headers: Vec<(String, String)>,
    /// Resource attributes from `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_attributes: Vec<(String, String)>,
    /// Whom to trust for `https://` endpoints.
    pub trust: Trust,
    /// Where the queue is also kept on disk (`otlp_queue_dir`), so a restart loses nothing.
    pub queue_dir: Option<std::path::PathBuf>,
    /// File holding the bearer token sent as `Authorization: Bearer …` (`otlp_token_file`),
    /// read again when it changes. Unset: no token.
    pub token_file: Option<std::path::PathBuf>,
    /// The name the endpoint's certificate must carry, when not the URL's host.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// The certificate authorities an `https://` endpoint's certificate is checked against.
#[derive(Debug, Clone, PartialEq)]
pub enum Trust {
    /// The system's CA certificates (rustls-native-certs: SSL_CERT_FILE / SSL_CERT_DIR, else
    /// the distribution's bundle).
    System,
    /// The CA certificates of a PEM file (`otlp_certificate`, `OTEL_EXPORTER_OTLP_CERTIFICATE`),
    /// read once at startup.
    File {
        path: std::path::PathBuf,
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    },
}

impl Trust {
    /// Reads the PEM file `path`: every CERTIFICATE block in it; an error (one line naming the
    /// file and the fix) when it cannot be read or holds none.
    pub fn from_file(path: &str) -> Result<Trust, SettingError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let bad = |why: String| SettingError::Certificate {
            path: path.to_string(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE in it".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        let (_, bad_certs) = roots.add_parsable_certificates(certs.iter().cloned());
        if bad_certs > 0 {
            return Err(bad(format!(
                "{bad_certs} certificate(s) in it cannot be parsed"
            )));
        }
        Ok(Trust::File {
            path: path.into(),
            certs,
        })
    }

    /// The TLS client configuration (ring, TLS 1.2 and 1.3) trusting these CAs; logs when the
    /// system has none.
    pub(crate) fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        match self {
            Trust::File { certs, .. } => {
                roots.add_parsable_certificates(certs.iter().cloned());
            }
            Trust::System => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::warn!(message = "Cannot read some system CA certificates.", %error);
                }
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    tracing::error!(message = "No system CA certificates found: https OTLP endpoints cannot be verified; set otlp_certificate (or OTEL_EXPORTER_OTLP_CERTIFICATE) to the collector's CA file.");
                }
            }
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// The exporter's own counters, shown on the agent's /metrics.
#[derive(Clone, Default, Debug)]
pub struct ExportStats {
    /// Windows the collector acknowledged.
    pub sent: Counter,
    /// Windows dropped: oldest first when the queue was full, or refused by the receiver.
    pub dropped: Counter,
    /// Failed send attempts (each is retried).
    pub failures: Counter,
    /// Windows waiting to be sent.
    pub queued: Gauge,
}

/// What a queued request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Metrics,
    Traces,
}

type Item = (u64, Signal, Arc<Vec<u8>>);

pub(crate) struct Queue {
    items: Mutex<VecDeque<Item>>,
    next: Mutex<u64>,
    capacity: usize,
    notify: tokio::sync::Notify,
    stats: ExportStats,
    /// The same requests on disk, when `otlp_queue_dir` is set.
    spool: Option<Mutex<spool::Spool>>,
}

#[cfg(test)]
impl Queue {
    /// An empty queue of `capacity` with no spool on disk: what the exporter's tests fill.
    pub(crate) fn in_memory(capacity: usize, stats: ExportStats) -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            next: Mutex::new(0),
            capacity,
            notify: tokio::sync::Notify::new(),
            stats,
            spool: None,
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spool(&self) -> Option<std::sync::MutexGuard<'_, spool::Spool>> {
        self.spool
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, signal: Signal, body: Vec<u8>) {
        let seq = {
            let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        // On disk first (outside the queue's lock: the sender keeps sending meanwhile).
        let mut over = Vec::new();
        if let Some(mut s) = self.spool() {
            match s.write(seq, signal, &body) {
                Ok(removed) => over = removed,
                Err(error) => {
                    tracing::warn!(message = "Cannot write a window to otlp_queue_dir; it is queued in memory only.", %error)
                }
            }
        }
        let mut q = self.lock();
        if !over.is_empty() {
            let before = q.len();
            q.retain(|(s, _, _)| !over.contains(s));
            self.stats.dropped.inc_by((before - q.len()) as u64);
        }
        while q.len() >= self.capacity {
            if let Some((old, _, _)) = q.pop_front() {
                if let Some(mut s) = self.spool() {
                    s.remove(old);
                }
            }
            self.stats.dropped.inc();
        }
        q.push_back((seq, signal, Arc::new(body)));
        self.stats.queued.set(q.len() as i64);
        drop(q);
        self.notify.notify_one();
    }

    fn front(&self) -> Option<Item> {
        self.lock().front().cloned()
    }

    /// Removes the item `seq` if it is still at the front (it may have been dropped).
    fn done(&self, seq: u64) {
        let mut q = self.lock();
        if q.front().is_some_and(|(s, _, _)| *s == seq) {
            q.pop_front();
        }
        self.stats.queued.set(q.len() as i64);
        drop(q);
        if let Some(mut s) = self.spool() {
            s.remove(seq);
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The running exporter. `push` is cheap; `shutdown` flushes for a bounded time.
pub struct Exporter {
    queue: Arc<Queue>,
    settings: OtlpSettings,
    process_start_ns: u64,
    stop: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Starts the sender thread. `interval` is the report interval (sizes the queue); `beat`,
    /// when given, beats while the sender comes round (readiness watches it).
    pub fn start(
        settings: OtlpSettings,
        interval: Duration,
        stats: ExportStats,
        beat: Option<crate::health::Beat>,
    ) -> std::io::Result<Exporter> {
        // Two requests a window at most: metrics, and spans when there were checks.
        let capacity =
            2 * (BUFFER.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as usize;
        let capacity = capacity.clamp(2, 200_000);
        // What an earlier run left on disk goes first, oldest first.
        let (spool, left) = match &settings.queue_dir {
            Some(dir) => match spool::Spool::open(dir) {
                Ok((s, left)) => (Some(Mutex::new(s)), left),
                Err(error) => {
                    tracing::warn!(message = "Cannot use otlp_queue_dir; the queue is in memory only (a restart loses what is queued).", dir = %dir.display(), %error);
                    (None, Vec::new())
                }
            },
            None => (None, Vec::new()),
        };
        let next = left.iter().map(|l| l.0).max().unwrap_or(0);
        if !left.is_empty() {
            tracing::info!(
                message = "Sending what an earlier run queued.",
                requests = left.len()
            );
        }
        let items: VecDeque<Item> = left
            .into_iter()
            .map(|(seq, signal, body)| (seq, signal, Arc::new(body)))
            .collect();
        stats.queued.set(items.len() as i64);
        let queue = Arc::new(Queue {
            items: Mutex::new(items),
            next: Mutex::new(next),
            capacity,
            notify: tokio::sync::Notify::new(),
            stats,
            spool,
        });
        // More left than this run's queue holds (a shorter report interval): the oldest go.
        while queue.len() > queue.capacity {
            let old = queue.lock().pop_front().map(|i| i.0);
            if let (Some(old), Some(mut s)) = (old, queue.spool()) {
                s.remove(old);
            }
            queue.stats.dropped.inc();
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let thread = {
            let (queue, stop, settings) = (queue.clone(), stop.clone(), settings.clone());
            std::thread::Builder::new()
                .name("headroom-otlp".into())
                .spawn(move || sender::run(queue, settings, stop, beat))?
        };
        tracing::info!(
            message = "Exporting OTLP.",
            url = %settings.metrics_url,
            protocol = ?settings.protocol,
            queue_windows = queue.capacity
        );
        Ok(Exporter {
            queue,
            settings,
            process_start_ns: crate::time::now_ns(),
            stop,
            thread: Some(thread),
        })
    }

    /// Queues one report window for export. Never blocks on the network.
    pub fn push(&self, report: &Report) {
        let res: Resource = encode::resource(report, &self.settings.resource_attributes);
        if let Some(spans) = encode::spans(report, res.clone()) {
            self.queue.push(Signal::Traces, spans.encode_to_vec());
        }
        let req = encode::request(report, res, self.process_start_ns);
        for part in split::split(req, split::MAX_REQUEST_BYTES) {
            self.queue.push(Signal::Metrics, part.encode_to_vec());
        }
    }

    /// Windows waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Stops the sender after trying to send what is queued for at most `grace`. Call from a
    /// thread that is not a runtime worker (it joins a thread).
    pub fn shutdown(mut self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while self.queue.len() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.cancel();
        self.queue.notify.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let left = self.queue.len();
        if left > 0 {
            tracing::warn!(
                message = "Windows not exported at shutdown.",
                windows = left
            );
        }
    }
}

/// The metrics URL for an OTLP endpoint: for HTTP a base URL gets `/v1/metrics` appended (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` works), for gRPC it is the endpoint; `http://` or `https://`.
pub fn metrics_url(endpoint: &str, protocol: Protocol) -> Result<hyper::Uri, SettingError> {
    signal_url(endpoint, protocol, "/v1/metrics")
}

/// As [`metrics_url`], for spans (`/v1/traces`); an endpoint given as `…/v1/metrics` gets
/// `…/v1/traces` beside it.
pub fn traces_url(endpoint: &str, protocol: Protocol) -> Result<hyper::Uri, SettingError> {
    let base = endpoint.trim_end_matches('/');
    let base = base.strip_suffix("/v1/metrics").unwrap_or(base);
    signal_url(base, protocol, "/v1/traces")
}

fn signal_url(endpoint: &str, protocol: Protocol, path: &str) -> Result<hyper::Uri, SettingError> {
    let bad = |why: &'static str| SettingError::Endpoint {
        endpoint: endpoint.to_string(),
        why,
    };
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| bad("expected a URL such as http://headroom-collector:4318"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("expected a URL such as http://headroom-collector:4318")),
    }
    if uri.host().is_none() {
        return Err(bad("the URL has no host"));
    }
    let base = endpoint.trim_end_matches('/');
    let full = if protocol == Protocol::Grpc || base.ends_with(path) {
        base.to_string()
    } else {
        format!("{base}{path}")
    };
    full.parse().map_err(|_| bad("cannot form the URL"))
}

/// Parses `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values percent-encoded).
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, SettingError> {
    let mut out = Vec::new();
    for (k, v) in encode::parse_resource_attributes(text) {
        if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(&v).is_err()
        {
            return Err(SettingError::Header(k));
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_the_metrics_path() {
        assert_eq!(
            metrics_url("http://c:4318", Protocol::HttpProtobuf)
                .unwrap()
                .to_string(),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("http://c:4318/", Protocol::HttpProtobuf)
                .unwrap()
                .to_string(),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("http://c:4318/v1/metrics", Protocol::HttpProtobuf)
                .unwrap()
                .to_string(),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("https://c", Protocol::HttpProtobuf)
                .unwrap()
                .to_string(),
            "https://c/v1/metrics"
        );
        assert!(metrics_url("ftp://c", Protocol::HttpProtobuf).is_err());
        assert!(metrics_url("c:4318", Protocol::HttpProtobuf).is_err());
        assert_eq!(
            metrics_url("http://c:4317", Protocol::Grpc)
                .unwrap()
                .to_string(),
            "http://c:4317/"
        );
        assert!(Protocol::parse("http/json").is_err());
        assert_eq!(
            traces_url("http://c:4318/v1/metrics", Protocol::HttpProtobuf)
                .unwrap()
                .to_string(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            parse_headers("authorization=Bearer%20x, x-tenant = a").unwrap(),
            vec![
                ("authorization".to_string(), "Bearer x".to_string()),
                ("x-tenant".to_string(), "a".to_string())
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let stats = ExportStats::default();
        let q = Queue::in_memory(3, stats.clone());
        for i in 0..5u8 {
            q.push(Signal::Metrics, vec![i]);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(stats.dropped.get(), 2);
        let (seq, _, body) = q.front().unwrap();
        assert_eq!(*body, vec![2]);
        q.done(seq);
        q.done(seq);
        assert_eq!(q.len(), 2);
        assert_eq!(stats.queued.get(), 2);
    }
}
