//! The agent's commands: `once`, `watch`, `run`.

pub mod once;
pub mod run;
pub mod watch;

use crate::capture::{afpacket::RingConfig, Capture, CaptureSpec};
use crate::config::Settings;
use crate::interfaces::{self, Selection};
use crate::linklocal::Targets;
use crate::meter::Meter;
use crate::report::Node;
use crate::AgentError;
use std::time::Duration;

/// How long after a window's end its packets are surely in user space: the ring hands over a
/// partly filled block after 100 ms; the rest is margin for a busy machine.
pub const DRAIN: Duration = Duration::from_millis(300);

/// Starts capture on the selected interfaces. `strict`: no interface is an error (for `once`),
/// else a warning while the rescan keeps looking (for the daemon).
pub fn start_capture(
    settings: &Settings,
    meter: Meter,
    strict: bool,
) -> Result<(Capture, Vec<String>), AgentError> {
    let all = interfaces::list();
    let missing = interfaces::missing(&settings.selection, &all);
    if !missing.is_empty() {
        return Err(AgentError::Usage(format!(
            "unknown interface '{}': no such interface here; list them with `ip link` (found: {})",
            missing.join("', '"),
            all.join(", ")
        )));
    }
    let spec = CaptureSpec {
        selection: settings.selection.clone(),
        targets: Targets::new(&settings.resolvers),
        ring: RingConfig::default(),
        rescan: settings.rescan_interval,
    };
    let (cap, names) = Capture::start(spec, meter)?;
    if names.is_empty() {
        let msg = match &settings.selection {
            Selection::Physical => "no physical interface found (none has /sys/class/net/X/device); name the interfaces to measure with --interface NAME|GLOB".to_string(),
            Selection::Patterns(_) => format!(
                "no interface matches the --interface patterns; list them with `ip link` (found: {})",
                all.join(", ")
            ),
        };
        if strict {
            return Err(AgentError::Usage(msg));
        }
        tracing::warn!(message = "No interface to measure yet; looking again periodically.", reason = %msg);
    } else {
        tracing::info!(message = "Capturing.", interfaces = %names.join(","));
    }
    Ok((cap, names))
}

pub fn node(settings: &Settings) -> Node {
    Node {
        name: settings.node_name.clone(),
        ..Node::default()
    }
}

/// Teaches the meter's DNS trackers the search suffixes the node's processes really use (their
/// resolv.conf files, read through the proc root), before the defaults.
pub fn learn_search(settings: &Settings, meter: &Meter) {
    let proc = crate::workers::procfs::ProcRoot::new(&settings.workers.proc_root);
    let learned = crate::dns::search::from_proc(&proc);
    tracing::debug!(message = "Search domains learned.", domains = ?learned);
    meter.set_search(crate::dns::search::SearchDomains::learned(&learned));
}
