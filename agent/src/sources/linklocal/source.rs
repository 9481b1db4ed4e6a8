//! The link-local source in the pipeline: capture threads feeding the meter, whose windows
//! are each report's `interfaces`.

use super::capture::{Capture, CaptureSpec};
use super::meter::Meter;
use crate::interfaces::{self, Selection};
use crate::report::{InterfaceReport, Report};
use crate::sources::{Context, Source, Window};
use crate::sys::packet::TapError;
use crate::sys::procfs::ProcRoot;
use std::path::PathBuf;
use std::time::Duration;

/// How often the search suffixes are learned again: pods come and go, each with its
/// namespace's search list.
const RELEARN: Duration = Duration::from_secs(60);

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A named interface or nothing to measure: a usage error (exit 64).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Tap(#[from] TapError),
}

pub struct LinkLocal {
    meter: Meter,
    capture: Option<Capture>,
    since_ns: u64,
}

impl LinkLocal {
    /// Learns the node's search suffixes, then captures on the selected interfaces.
    /// `strict`: no interface is an error (for `once`), else a warning while the rescan keeps
    /// looking (for the daemon). Returns the interfaces opened.
    pub fn start(
        spec: CaptureSpec,
        proc_root: PathBuf,
        meter: Meter,
        strict: bool,
        ctx: &Context,
    ) -> Result<(LinkLocal, Vec<String>), StartError> {
        let all = interfaces::list();
        let missing = interfaces::missing(&spec.selection, &all);
        if !missing.is_empty() {
            return Err(StartError::Usage(format!(
                "unknown interface '{}': no such interface here; list them with `ip link` (found: {})",
                missing.join("', '"),
                all.join(", ")
            )));
        }
        learn_search(&proc_root, &meter);
        let selection = spec.selection.clone();
        let (cap, names) = Capture::start(spec, meter.clone())?;
        // Taken before "Capturing." is said: whoever waits for that line and then sends finds
        // its packets inside the first window, not in the second before it.
        let since_ns = crate::time::now_ns();
        if names.is_empty() {
            let msg = match &selection {
                Selection::Physical => "no physical interface found (none has /sys/class/net/X/device); name the interfaces to measure with --interface NAME|GLOB".to_string(),
                Selection::NotLoopback => "no interface but loopback in this pod's network namespace; name the interfaces to measure with --interface NAME|GLOB".to_string(),
                Selection::Patterns(_) => format!(
                    "no interface matches the --interface patterns; list them with `ip link` (found: {})",
                    all.join(", ")
                ),
            };
            if strict {
                return Err(StartError::Usage(msg));
            }
            tracing::warn!(message = "No interface to measure yet; looking again periodically.", reason = %msg);
        } else {
            tracing::info!(message = "Capturing.", interfaces = %names.join(","));
        }
        let (m, stop) = (meter.clone(), ctx.shutdown.clone());
        ctx.runtime.spawn(async move {
            let mut relearn =
                tokio::time::interval_at(tokio::time::Instant::now() + RELEARN, RELEARN);
            loop {
                tokio::select! {
                    _ = relearn.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let (root, m) = (proc_root.clone(), m.clone());
                let _ = tokio::task::spawn_blocking(move || learn_search(&root, &m)).await;
            }
        });
        Ok((
            LinkLocal {
                meter,
                capture: Some(cap),
                since_ns,
            },
            names,
        ))
    }

    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// When the taps were open (the first window's start).
    pub fn since_ns(&self) -> u64 {
        self.since_ns
    }

    /// Stops the capture threads (also on drop).
    pub fn stop(&mut self) {
        if let Some(c) = self.capture.take() {
            c.stop();
        }
    }
}

/// Teaches the meter's DNS trackers the search suffixes the node's processes really use (their
/// resolv.conf files, read through the proc root), before the defaults.
fn learn_search(proc_root: &std::path::Path, meter: &Meter) {
    let learned = crate::sources::dns::search::from_proc(&ProcRoot::new(proc_root));
    tracing::debug!(message = "Search domains learned.", domains = ?learned);
    meter.set_search(crate::sources::dns::search::SearchDomains::learned(
        &learned,
    ));
}

impl Source for LinkLocal {
    fn name(&self) -> &'static str {
        "linklocal"
    }

    fn fill(&mut self, window: Window, report: &mut Report) {
        let seconds = (window.end_ns.saturating_sub(window.start_ns)) as f64 / 1e9;
        report.interfaces = self
            .meter
            .cut(window.start_ns, window.end_ns)
            .iter()
            .map(|w| InterfaceReport::from_window(w, seconds.max(1e-9)))
            .collect();
    }
}
