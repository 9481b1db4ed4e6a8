//! The agent's sources, one folder (or file) per signal. A source owns its configuration
//! section, its report section, how it starts and stops, and how it fills a report.

pub mod dns;
pub mod ena;
pub mod eni;
pub mod linklocal;
pub mod listeners;
pub mod pod_use;
pub mod probes;
pub mod resolver_checks;
pub mod storage;
pub mod ticker;

use crate::report::Report;
use tokio_util::sync::CancellationToken;

/// What a source is started with: the runtime its tasks run on and the token that stops them.
#[derive(Clone)]
pub struct Context {
    pub runtime: tokio::runtime::Handle,
    pub shutdown: CancellationToken,
}

/// The window a report covers, in ns since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The one contract every source keeps: started from its own configuration section with a
/// [`Context`] (a constructor of its own), it measures until the context's shutdown is
/// cancelled or it is dropped, and fills its section of each report.
pub trait Source: Send {
    fn name(&self) -> &'static str;
    /// Fills this source's section of `report`, which covers `window`.
    fn fill(&mut self, window: Window, report: &mut Report);
}
