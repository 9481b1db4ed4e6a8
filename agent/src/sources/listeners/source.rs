//! The listener source in the pipeline: the sampler thread (stopped on drop) fills `listeners`.

use super::Workers;
use crate::report::Report;
use crate::sources::{Source, Window};

impl Source for Workers {
    fn name(&self) -> &'static str {
        "listeners"
    }

    fn fill(&mut self, _window: Window, report: &mut Report) {
        (report.listeners, report.listeners_omitted) = self.cut_counted(report.window.seconds);
    }
}
