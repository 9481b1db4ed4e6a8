//! The listener source in the pipeline: the sampler thread (stopped on drop) fills `listeners`.

use super::{Cost, LatestSamples, ListenerReport, Omitted, Sampler, WorkersSpec};
use crate::health::Beat;
use crate::report::Report;
use crate::sources::ticker::Ticker;
use crate::sources::{Source, Window};
use std::sync::{Arc, Mutex};
use std::time::Instant;

impl Source for Workers {
    fn name(&self) -> &'static str {
        "listeners"
    }

    fn fill(&mut self, _window: Window, report: &mut Report) {
        (report.listeners, report.listeners_omitted) = self.cut_counted(report.window.seconds);
    }
}

/// The worker source running on its own thread; cut windows from any thread.
pub struct Workers {
    sampler: Arc<Mutex<Sampler>>,
    ticker: Ticker,
}

impl Workers {
    /// Starts sampling at `spec.interval`, the first sample at once; `beat`, when given, beats
    /// after every sample (the daemon's readiness watches it).
    pub fn start(spec: &WorkersSpec, beat: Option<Beat>) -> Workers {
        let sampler = Arc::new(Mutex::new(Sampler::new(spec)));
        let s = sampler.clone();
        // Test hook (`HEADROOM_TEST_STALL_LISTENERS_AFTER`): stop sampling and beating.
        let stall_at = crate::health::test_stall_at("listeners");
        let ticker = Ticker::spawn("headroom-workers", spec.interval, move || {
            if stall_at.is_some_and(|t| Instant::now() >= t) {
                return false;
            }
            s.lock().unwrap_or_else(|e| e.into_inner()).sample();
            if let Some(b) = &beat {
                b.beat();
            }
            true
        });
        Workers { sampler, ticker }
    }

    /// Ends the report window of `seconds`: the listeners within the caps, and how many the
    /// caps left out.
    pub fn cut(&self, seconds: f64) -> Vec<ListenerReport> {
        self.cut_counted(seconds).0
    }

    pub fn cut_counted(&self, seconds: f64) -> (Vec<ListenerReport>, Omitted) {
        let mut s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        let l = s.cut(seconds);
        (l, s.omitted())
    }

    /// The latest sample of every listener, kept current while this runs.
    pub fn latest(&self) -> LatestSamples {
        self.sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latest()
    }

    /// The pod-annotated threads per worker the sampler reads; the pod watcher fills it.
    pub fn pod_threads(&self) -> super::model::PodThreads {
        self.sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pod_threads()
    }

    /// Sidecar mode: the pod every listener belongs to (its uid from the downward API).
    pub fn set_own_pod(&self, uid: Option<String>) {
        self.sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_own_pod(uid);
    }

    /// Work done so far.
    pub fn cost(&self) -> Cost {
        self.sampler.lock().unwrap_or_else(|e| e.into_inner()).cost
    }
}

impl Workers {
    /// Stops sampling (also on drop); what was sampled can still be cut.
    pub fn stop(&mut self) {
        self.ticker.stop();
    }
}
