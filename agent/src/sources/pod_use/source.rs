//! The pod-use source in the pipeline: a sampler thread (stopped on drop) fills `pod_use`,
//! `pod_use_omitted` and `co_burst`.

use super::{Cost, PodSpecs, PodUseSpec, Sampler};
use crate::report::Report;
use crate::sources::{Source, Window};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

pub struct PodUseSource {
    sampler: Arc<Mutex<Sampler>>,
    specs: PodSpecs,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let (tx, rx) = mpsc::channel::<()>();
        let s = sampler.clone();
        let interval = spec.interval;
        let thread = std::thread::Builder::new()
            .name("headroom-poduse".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    s.lock().unwrap_or_else(|e| e.into_inner()).sample();
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now; // fell behind: skip, never burst
                    }
                    match rx.recv_timeout(next - now) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .expect("spawning a thread");
        PodUseSource {
            sampler,
            specs,
            stop: Some(tx),
            thread: Some(thread),
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
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PodUseSource {
    fn drop(&mut self) {
        self.stop();
    }
}
