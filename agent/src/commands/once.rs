//! `once`: measure for a while, return one report.

use crate::config::Settings;
use crate::pipeline::{self, Mode, Pipeline, DRAIN};
use crate::report::Report;
use crate::time::now_ns;
use crate::AgentError;
use std::time::Duration;

pub fn once(settings: &Settings, duration: Duration) -> Result<Report, AgentError> {
    let rt = pipeline::runtime()?;
    let mode = Mode {
        strict: true,
        keep_seconds: duration.as_secs() + 2,
    };
    let mut p = Pipeline::start(settings, mode, rt.handle().clone())?;
    let start = p.start_ns();
    std::thread::sleep(Duration::from_nanos(
        (start + duration.as_nanos() as u64).saturating_sub(now_ns()),
    ));
    p.end_sampling();
    std::thread::sleep(DRAIN);
    let report = p.report(start, start + duration.as_nanos() as u64);
    p.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}
