//! `run`: the daemon. Measures continuously, cuts a report every interval, serves /metrics,
//! /healthz and /readyz, and exports each report over OTLP when configured. Readiness and
//! liveness come from heartbeats: every capture thread, the listener sampler, the exporter and
//! the report tick; a loop silent for 2 intervals is not ready, for 4 not live.

use crate::config::Settings;
use crate::export::otlp::{ExportStats, Exporter};
use crate::export::prometheus::{Metrics, CONTENT_TYPE};
use crate::health::{self, Loops};
use crate::pipeline::{self, Mode, Pipeline, DRAIN};
use crate::report::Report;
use crate::sources::linklocal::meter::Meter;
use crate::time::now_ns;
use crate::AgentError;
use headroom_service::http::{self, Reply, TEXT};
use headroom_service::signal;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn run(settings: &Settings) -> Result<(), AgentError> {
    let rt = pipeline::runtime()?;
    let r = rt.block_on(serve(settings));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    r
}

/// What the HTTP endpoints read.
struct State {
    metrics: Metrics,
    meter: Meter,
    /// A capture thread silent for longer than this is stuck: one report interval.
    stall: std::time::Duration,
    /// The other loops that beat.
    loops: Loops,
}

fn route<B>(state: &State, req: &Request<B>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return http::reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => http::reply(StatusCode::OK, CONTENT_TYPE, state.metrics.encode()),
        // Liveness later than readiness: a capture thread silent for 3 intervals gets the
        // container restarted (the kubelet's failureThreshold adds its own patience).
        "/healthz" => match state.meter.stalled(state.stall * 3).first() {
            Some((n, age)) => http::reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("capture stuck on {n} for {:.1} s\n", age.as_secs_f64()),
            ),
            None => match state.loops.not_live() {
                silent if silent.is_empty() => http::reply(StatusCode::OK, TEXT, "ok\n"),
                silent => http::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("{}\n", health::describe(&silent)),
                ),
            },
        },
        "/readyz" => {
            let silent = state.loops.not_ready();
            let stalled = state.meter.stalled(state.stall);
            if !stalled.is_empty() {
                let list: Vec<String> = stalled
                    .iter()
                    .map(|(n, age)| format!("{n} ({:.1} s)", age.as_secs_f64()))
                    .collect();
                http::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("capture stuck on {}\n", list.join(", ")),
                )
            } else if !silent.is_empty() {
                http::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("{}\n", health::describe(&silent)),
                )
            } else if state.meter.capturing() {
                http::reply(StatusCode::OK, TEXT, "capturing\n")
            } else {
                http::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "not capturing on any interface\n",
                )
            }
        }
        _ => http::reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n",
        ),
    }
}

async fn serve(settings: &Settings) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|e| {
            AgentError::Usage(format!(
                "cannot listen on {} ({e}); choose a free address with --metrics-listen",
                settings.metrics_listen
            ))
        })?;
    // Certificates and credentials before anything starts: a bad file exits 64.
    let tls = match &settings.tls {
        Some(files) => Some(
            headroom_service::tls::ServerTls::load(files.clone())
                .map_err(|e| AgentError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    let auth = headroom_service::web::WebAuth::new(&settings.web)
        .map_err(|e| AgentError::Usage(e.to_string()))?;
    let mode = Mode {
        strict: false,
        keep_seconds: settings.report_interval.as_secs() + 2,
    };
    let mut p = Pipeline::start(settings, mode, tokio::runtime::Handle::current())?;
    let loops = p.loops().clone();
    let interval = settings.report_interval;
    let (ready, live) = (2 * interval, 4 * interval);
    let mut metrics = Metrics::new();
    let exporter = match &settings.otlp {
        Some(otlp) => {
            let stats = ExportStats::default();
            metrics.register_export(&stats);
            let beat = loops.register("exporter", ready, live);
            let e = Exporter::start(otlp.clone(), interval, stats, Some(beat))
                .map_err(|e| AgentError::Runtime(format!("cannot start the OTLP exporter: {e}")))?;
            Some(e)
        }
        None => None,
    };
    let state = Arc::new(State {
        metrics,
        meter: p.meter().clone(),
        stall: settings.report_interval,
        loops: loops.clone(),
    });
    // The tick also waits DRAIN and cuts the report: a second of slack.
    let report_beat = loops.register(
        "report",
        ready + std::time::Duration::from_secs(1),
        live + std::time::Duration::from_secs(1),
    );
    let stop = CancellationToken::new();
    let s = state.clone();
    let handler = headroom_service::web::guard(auth, move |req| {
        let reply = route(&s, &req);
        async move { reply }
    });
    headroom_service::tls::watch_all(&tls, &stop);
    let server = tokio::spawn(http::serve(
        http::Listener::new(listener, tls),
        handler,
        stop.clone().cancelled_owned(),
    ));
    tracing::info!(message = "Serving.", address = %settings.metrics_listen);

    let mut start = now_ns();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.report_interval + DRAIN,
        settings.report_interval,
    );
    let shutdown = signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let end = now_ns() - DRAIN.as_nanos() as u64;
                let report = p.report(start, end);
                report_beat.beat();
                state.metrics.update(&report);
                if let Some(e) = &exporter {
                    e.push(&report);
                }
                log(&report);
                start = end;
            }
            _ = &mut shutdown => break,
        }
    }
    stop.cancel();
    let _ = server.await;
    loops.forget("report");
    tokio::task::spawn_blocking(move || p.stop()).await.ok();
    if let Some(e) = exporter {
        // Joins the sender thread: off the runtime's workers.
        tokio::task::spawn_blocking(move || e.shutdown(std::time::Duration::from_secs(2)))
            .await
            .ok();
    }
    Ok(())
}

/// The report at debug level, and a warning for each interface near the limit or dropping.
fn log(report: &Report) {
    tracing::debug!(
        message = "Report.",
        report = %serde_json::to_string(report).unwrap_or_default()
    );
    for i in report.interfaces.iter().filter(|i| i.utilization >= 0.8) {
        tracing::warn!(
            message = "Link-local packets near the per-interface limit.",
            interface = %i.name, peak_pps = i.peak_pps, limit_pps = i.limit_pps
        );
    }
    for i in &report.interfaces {
        for (k, v) in i.allowance.iter().flatten().filter(|(_, v)| **v > 0) {
            tracing::warn!(
                message = "EC2 dropped packets: an ENA allowance was exceeded.",
                interface = %i.name, eni = %i.eni_id.as_deref().unwrap_or("-"), counter = %k, rise = v
            );
        }
    }
}
