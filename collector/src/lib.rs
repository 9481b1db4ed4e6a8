//! headroom-collector: receives OTLP from headroom agents (and any other OTLP sender), keeps
//! the fleet model (cluster → node → interface windows), and serves it as JSON, Prometheus
//! metrics and a status page.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod auth;
pub mod catalog;
mod check;
pub mod cli;
pub mod config;
pub mod findings;
pub mod fleet;
mod forward;
#[doc(hidden)]
pub mod fuzz;
mod http;
/// The `/metrics` text of a snapshot (for the evaluation bench).
#[doc(hidden)]
pub use http::metrics_text;
mod ingest;
pub mod kube;
pub mod rules;
mod send;
mod time;

use config::Settings;
use fleet::Fleet;
use ingest::Ingest;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors that end the collector, each with its exit code; the message is one line.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// A flag clap refused: its first line and "(see --help)".
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    ConfigFile(#[from] config::ConfigError),
    /// Every invalid setting, joined with "; ".
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<check::Invalid>),
    #[error(transparent)]
    StateFile(#[from] findings::StateError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error("cannot listen on {addr} ({source}); choose a free address with --{flag}")]
    Bind {
        addr: std::net::SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] headroom_service::tls::TlsError),
    #[error(transparent)]
    Web(#[from] headroom_service::web::WebError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl CollectorError {
    /// 64 (EX_USAGE) for bad flags, config, state file or an address that cannot be bound;
    /// 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CollectorError::Runtime(_) => 1,
            _ => 64,
        }
    }
}

/// What runs without Kubernetes access (logged once when there is none).
const KUBE_WITHOUT: &str =
    "HPAOverScaling and ScaleDownBlocked are off; set kube = false to say so";

async fn bind(
    addr: std::net::SocketAddr,
    flag: &'static str,
) -> Result<TcpListener, CollectorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CollectorError::Bind { addr, flag, source })
}

/// Binds every listener, then serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    // A state file that cannot be read is a usage error, reported before any port is bound; a
    // damaged one is moved aside and the collector starts without saved findings (exiting
    // would only crash-loop it on the same file).
    let now = SystemTime::now();
    let (keep, grace) = (settings.rules.keep_resolved, settings.rules.startup_grace);
    let engine = match &settings.state_file {
        Some(path) => match findings::Engine::load(path, keep, grace, now) {
            Ok(e) => e,
            Err(e) if e.is_damage() => {
                let aside = findings::set_aside(path, now)?;
                tracing::warn!(
                    message = "Damaged findings state file moved aside; starting without saved findings.",
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %e
                );
                findings::Engine::new(keep, grace, now)
            }
            Err(e) => return Err(e.into()),
        },
        None => findings::Engine::new(keep, grace, now),
    }
    .bounded(settings.max_findings);
    let catalog = catalog::Catalog::load(settings.instance_catalog_file.as_deref())?;
    // Certificates and credentials are read before any port is bound: a bad file exits 64.
    let tls = match &settings.tls {
        Some(files) => Some(headroom_service::tls::ServerTls::load(files.clone())?),
        None => None,
    };
    let web_auth = headroom_service::web::WebAuth::new(&settings.web)?;
    let listener = |tcp| headroom_service::http::Listener::new(tcp, tls.clone());
    let grpc = listener(bind(settings.otlp_grpc_listen, "otlp-grpc-listen").await?);
    let http = listener(bind(settings.otlp_http_listen, "otlp-http-listen").await?);
    let api = listener(bind(settings.http_listen, "http-listen").await?);
    let fleet = Arc::new(Mutex::new(Fleet::new(settings.limits)));
    let lean = Arc::new(
        // Kept for two evaluation intervals: a scrape after an evaluation that took longer than
        // usual still reads the last snapshot instead of building its own.
        fleet::LeanCache::new(fleet.clone(), settings.rules.evaluation_interval * 2)
            .encoding(http::metrics_text),
    );
    let stop = CancellationToken::new();
    headroom_service::tls::watch_all(&tls, &stop);
    let mut tasks = tokio::task::JoinSet::new();
    let forward = settings.traces_endpoint.clone().map(|url| {
        forward::Forwarder::start(url, settings.traces_protocol, fleet.clone(), stop.clone())
    });
    let sinks = alerts::Sinks::start(&settings.sinks, stop.clone());
    let findings = Arc::new(findings::Findings::new(
        engine,
        sinks,
        settings.state_file.clone(),
    ));
    let kube_view = kube::SharedView::default();
    // The client TokenReviews go through, once Kubernetes access is known.
    let kube_client = Arc::new(std::sync::OnceLock::new());
    if settings.kube {
        // Inferring access may read files or run a credential plugin: never hold up serving.
        let (view, stop, shared) = (kube_view.clone(), stop.clone(), kube_client.clone());
        tokio::spawn(async move {
            if let Some(client) = headroom_service::kube::client(KUBE_WITHOUT).await {
                let _ = shared.set(client.clone());
                kube::start(client, view, stop);
            }
        });
    }
    tasks.spawn(findings::run(
        findings.clone(),
        lean.clone(),
        kube_view,
        rules::all_with(&settings.rules, catalog),
        settings.rules.evaluation_interval,
        settings.sinks.resend_interval,
        stop.clone(),
    ));
    let ingest = Arc::new(Ingest::new(
        fleet.clone(),
        settings.max_request_bytes,
        forward,
        ingest::budget::Budget::new(settings.memory_limit, settings.max_concurrent_requests),
        auth::Auth::new(&settings.auth, kube_client),
    ));

    {
        let (ingest, stop) = (ingest.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(error) = ingest::grpc::serve(grpc, ingest, stop.cancelled_owned()).await {
                tracing::error!(message = "OTLP/gRPC server failed.", %error);
            }
        });
    }
    tasks.spawn(ingest::http::serve(
        http,
        ingest,
        stop.clone().cancelled_owned(),
    ));
    tasks.spawn(http::serve(
        api,
        web_auth.clone(),
        lean,
        findings,
        stop.clone().cancelled_owned(),
    ));
    {
        let fleet = fleet.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            // A pass over 5 000 nodes takes milliseconds: on a blocking thread, so ingest
            // requests queued on a runtime worker do not wait behind it.
            let expire = || {
                let fleet = fleet.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        fleet
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .expire(SystemTime::now())
                    })
                    .await
                    .unwrap_or(0)
                }
            };
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                // Nodes a snapshot was reading are expired once it is done (a snapshot takes
                // well under a second).
                let mut left = expire().await;
                for _ in 0..20 {
                    if left == 0 || stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    left = expire().await;
                }
            }
        });
    }
    tracing::info!(
        message = "Serving.",
        otlp_grpc = %settings.otlp_grpc_listen,
        otlp_http = %settings.otlp_http_listen,
        http = %settings.http_listen,
        traces_endpoint = ?settings.traces_endpoint.as_ref().map(|u| u.to_string()),
        alertmanagers = settings.sinks.alertmanagers.len(),
        webhook = settings.sinks.webhook.is_some(),
        kube = settings.kube,
        auth = if settings.auth.required { "required" } else { "none" },
        traces_protocol = ?settings.traces_protocol,
        tls = tls.is_some(),
        mutual_tls = settings.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
        web_auth = web_auth.is_some()
    );
    shutdown.await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
