//! The pod-use source in the pipeline: a sampler thread (stopped on drop) fills `pod_use`,
//! `pod_use_omitted` and `co_burst`.

use super::{Cost, PodSpecs, PodUseSpec, Sampler};
use crate::report::Report;
use crate::sources::ticker::Ticker;
use crate::sources::{Source, Window};
use std::sync::{Arc, Mutex};

pub struct PodUseSource {
    sampler: Arc<Mutex<Sampler>>,
    specs: PodSpecs,
    ticker: Ticker,
}

impl Source for PodUseSource {
    fn name(&self) -> &'static str {
        "pod_use"
    }

    fn fill(&mut self, _window: Window, report: &mut Report) {
        let mut s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        (report.pod_use, report.pod_use_omitted, report.co_burst) = s.cut();
    }
}

impl PodUseSource {
    /// Starts sampling at `spec.interval`, the first sample at once.
    pub fn start(spec: &PodUseSpec) -> PodUseSource {
        let specs = PodSpecs::default();
        let sampler = Arc::new(Mutex::new(Sampler::new(spec, specs.clone())));
        let s = sampler.clone();
        let ticker = Ticker::spawn("headroom-poduse", spec.interval, move || {
            s.lock().unwrap_or_else(|e| e.into_inner()).sample();
            true
        });
        PodUseSource {
            sampler,
            specs,
            ticker,
        }
    }

    /// The pods' requests, limits and names; the pod watcher fills it.
    pub fn specs(&self) -> PodSpecs {
        self.specs.clone()
    }

    pub fn cost(&self) -> Cost {
        self.sampler.lock().unwrap_or_else(|e| e.into_inner()).cost
    }

    /// Stops sampling (also on drop); what was sampled can still be cut.
    pub fn stop(&mut self) {
        self.ticker.stop();
    }
}
