//! `once`: measure for a while, return one report.

use super::{enrich, identify, node, start_capture, DRAIN};
use crate::config::Settings;
use crate::report::{now_ns, Report};
use crate::sources::linklocal::meter::Meter;
use crate::sources::listeners::Workers;
use crate::sources::resolver_checks::CheckLog;
use crate::AgentError;
use std::time::Duration;

pub fn once(settings: &Settings, duration: Duration) -> Result<Report, AgentError> {
    let meter = Meter::new(duration.as_secs() + 2);
    let (settings, eni) = identify(settings, true);
    let settings = &settings;
    super::learn_search(settings, &meter);
    let (cap, names) = start_capture(settings, meter.clone(), true)?;
    let mut ena = crate::sources::ena::Tracker::default();
    for n in &names {
        ena.sample(n);
    }
    let workers = Workers::start(&settings.workers);
    let start = now_ns();
    let log = CheckLog::default();
    let checks =
        crate::sources::resolver_checks::start_background(settings.checks.clone(), log.clone())
            .map_err(|e| AgentError::Runtime(format!("cannot start resolver checks: {e}")))?;
    let pods = crate::sources::probes::Handles {
        saturation: workers.latest(),
        ..Default::default()
    };
    let probes = crate::sources::probes::start_background(
        settings.probes.clone(),
        settings.node_name.clone(),
        pods.clone(),
    )
    .map_err(|e| AgentError::Runtime(format!("cannot start the probe source: {e}")))?;
    std::thread::sleep(duration);
    let listeners = workers.cut(duration.as_secs_f64());
    drop(workers);
    std::thread::sleep(DRAIN);
    let end = start + duration.as_nanos() as u64;
    drop(checks);
    let windows = meter.cut(start, end);
    let mut report = Report::new(node(settings), start, end, &windows);
    report.resolver_checks = log.take();
    report.listeners = listeners;
    enrich(&mut report, &eni, &mut ena);
    cap.stop();
    pods.fill(&mut report);
    drop(probes);
    Ok(report)
}
