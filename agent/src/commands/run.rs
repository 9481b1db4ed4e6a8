//! `run`: the daemon. Measures continuously, cuts a report every interval, serves /metrics.

use super::{enrich, identify, node, start_capture, DRAIN};
use crate::config::Settings;
use crate::export::otlp::{ExportStats, Exporter};
use crate::export::prometheus::Metrics;
use crate::http::{self, State};
use crate::report::{now_ns, Report};
use crate::sources::linklocal::meter::Meter;
use crate::sources::listeners::Workers;
use crate::AgentError;
use headroom_service::signal;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn run(settings: &Settings) -> Result<(), AgentError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("headroom-rt")
        .build()
        .map_err(|e| AgentError::Runtime(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(settings))
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
    let meter = Meter::new(settings.report_interval.as_secs() + 2);
    let (settings, eni) = identify(settings, false);
    let settings = &settings;
    super::learn_search(settings, &meter);
    let (cap, names) = start_capture(settings, meter.clone(), false)?;
    let mut ena = crate::sources::ena::Tracker::default();
    for n in &names {
        ena.sample(n);
    }
    let workers = Workers::start(&settings.workers);
    let mut metrics = Metrics::new();
    let exporter = match &settings.otlp {
        Some(otlp) => {
            let stats = ExportStats::default();
            metrics.register_export(&stats);
            let e = Exporter::start(otlp.clone(), settings.report_interval, stats)
                .map_err(|e| AgentError::Runtime(format!("cannot start the OTLP exporter: {e}")))?;
            Some(e)
        }
        None => None,
    };
    let state = Arc::new(State {
        metrics,
        meter: meter.clone(),
    });
    let stop = CancellationToken::new();
    let checks = crate::sources::resolver_checks::CheckLog::default();
    tokio::spawn(crate::sources::resolver_checks::run(
        settings.checks.clone(),
        checks.clone(),
        stop.clone(),
    ));
    let pods = crate::sources::probes::Handles {
        saturation: workers.latest(),
        ..Default::default()
    };
    tokio::spawn(crate::sources::probes::run(
        settings.probes.clone(),
        settings.node_name.clone(),
        pods.clone(),
        stop.clone(),
    ));
    let server = tokio::spawn(http::serve(
        listener,
        state.clone(),
        stop.clone().cancelled_owned(),
    ));
    tracing::info!(message = "Serving.", address = %settings.metrics_listen);

    let mut start = now_ns();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.report_interval + DRAIN,
        settings.report_interval,
    );
    let mut relearn = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(60),
    );
    let shutdown = signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = relearn.tick() => {
                // Pods come and go, each with its namespace's search list.
                let (settings, meter) = (settings.clone(), meter.clone());
                tokio::task::spawn_blocking(move || super::learn_search(&settings, &meter));
            }
            _ = tick.tick() => {
                let end = now_ns() - DRAIN.as_nanos() as u64;
                let mut report = Report::new(node(settings), start, end, &meter.cut(start, end));
                report.resolver_checks = checks.take();
                report.listeners = workers.cut(report.window.seconds);
                enrich(&mut report, &eni, &mut ena);
                pods.fill(&mut report);
                state.metrics.update(&report);
                if let Some(e) = &exporter {
                    e.push(&report);
                }
                tracing::debug!(
                    message = "Report.",
                    report = %serde_json::to_string(&report).unwrap_or_default()
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
                start = end;
            }
            _ = &mut shutdown => break,
        }
    }
    stop.cancel();
    let _ = server.await;
    tokio::task::spawn_blocking(move || cap.stop()).await.ok();
    if let Some(e) = exporter {
        // Joins the sender thread: off the runtime's workers.
        tokio::task::spawn_blocking(move || e.shutdown(std::time::Duration::from_secs(2)))
            .await
            .ok();
    }
    Ok(())
}
