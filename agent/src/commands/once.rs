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
    let start = now_ns();
    std::thread::sleep(duration + DRAIN);
    let report = p.report(start, start + duration.as_nanos() as u64);
    p.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}
