//! The resolver-check source in the pipeline: one task on the pipeline's runtime.

use super::{run, CheckLog, CheckSpec};
use crate::report::Report;
use crate::sources::{Context, Source, Window};

pub struct ResolverChecks {
    log: CheckLog,
}

impl ResolverChecks {
    /// Checks every interval on `ctx`'s runtime until its shutdown is cancelled.
    pub fn start(spec: CheckSpec, ctx: &Context) -> ResolverChecks {
        let log = CheckLog::default();
        ctx.runtime
            .spawn(run(spec, log.clone(), ctx.shutdown.clone()));
        ResolverChecks { log }
    }
}

impl Source for ResolverChecks {
    fn name(&self) -> &'static str {
        "resolver_checks"
    }

    fn fill(&mut self, _window: Window, report: &mut Report) {
        report.resolver_checks = self.log.take();
    }
}
