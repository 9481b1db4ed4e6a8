//! The sampler thread the listener and pod-use sources share: one place for the cadence
//! (first tick at once, then every interval; a tick that falls behind is skipped, never made up
//! in a burst) and for stopping (on `stop` or drop, joined).

use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Runs `tick` on a thread named `name` every `interval` until stopped; a `tick` that
    /// returns false parks the thread until it is stopped (the readiness tests' stall hook).
    pub fn spawn(
        name: &str,
        interval: Duration,
        mut tick: impl FnMut() -> bool + Send + 'static,
    ) -> Ticker {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    if !tick() {
                        let _ = rx.recv();
                        return;
                    }
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
        Ticker {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the thread and waits for its tick in progress (also on drop).
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}
