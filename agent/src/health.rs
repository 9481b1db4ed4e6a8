//! Liveness of the agent's own loops (the listener sampler, the OTLP exporter, the report tick)
//! for `/readyz` and `/healthz`. Each loop beats when it comes round; one that stops beating
//! is stuck or dead, and the daemon must not look healthy while nothing is measured or sent.
//! Capture threads beat per interface in the meter (they come and go with interfaces).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The registered loops and their last beats. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Loops(Arc<Mutex<BTreeMap<&'static str, Entry>>>);

#[derive(Debug)]
struct Entry {
    beat: Instant,
    ready_within: Duration,
    live_within: Duration,
}

/// One loop's handle: `beat()` each time round.
#[derive(Debug, Clone)]
pub struct Beat {
    loops: Loops,
    name: &'static str,
}

/// A loop that has not beaten within its limit, and for how long it has been silent.
#[derive(Debug, Clone, PartialEq)]
pub struct Silent {
    pub name: &'static str,
    pub for_: Duration,
}

impl Loops {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name` as beating now: not ready once silent for longer than `ready_within`,
    /// not live after `live_within` (raised to `ready_within` if lower).
    pub fn register(
        &self,
        name: &'static str,
        ready_within: Duration,
        live_within: Duration,
    ) -> Beat {
        self.lock().insert(
            name,
            Entry {
                beat: Instant::now(),
                ready_within,
                live_within: live_within.max(ready_within),
            },
        );
        Beat {
            loops: self.clone(),
            name,
        }
    }

    /// A loop that ended on purpose (shutdown) is no longer watched.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Loops silent for longer than their readiness limit.
    pub fn not_ready(&self) -> Vec<Silent> {
        self.silent(|e| e.ready_within)
    }

    /// Loops silent for longer than their liveness limit.
    pub fn not_live(&self) -> Vec<Silent> {
        self.silent(|e| e.live_within)
    }

    fn silent(&self, limit: impl Fn(&Entry) -> Duration) -> Vec<Silent> {
        self.lock()
            .iter()
            .map(|(name, e)| (name, e.beat.elapsed(), limit(e)))
            .filter(|(_, age, limit)| age > limit)
            .map(|(name, age, _)| Silent { name, for_: age })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        // Beats are plain stores: a panic elsewhere cannot leave an entry half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Beat {
    pub fn beat(&self) {
        if let Some(e) = self.loops.lock().get_mut(self.name) {
            e.beat = Instant::now();
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Test hook (`HEADROOM_TEST_STALL_<LOOP>_AFTER=3s`, loop `CAPTURE`, `LISTENERS`, `EXPORTER`):
/// when that loop should stop working and beating, as a stuck one would, so a test can watch
/// readiness and liveness fail. Unset in production.
pub fn test_stall_at(name: &str) -> Option<Instant> {
    let var = format!("HEADROOM_TEST_STALL_{}_AFTER", name.to_ascii_uppercase());
    let after = humantime::parse_duration(&std::env::var(var).ok()?).ok()?;
    Some(Instant::now() + after)
}

/// One line for `/readyz` and `/healthz`: `exporter stuck for 12.3 s, listeners …`.
pub fn describe(silent: &[Silent]) -> String {
    silent
        .iter()
        .map(|s| format!("{} stuck for {:.1} s", s.name, s.for_.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_loop_is_not_ready_then_not_live_and_a_beat_brings_it_back() {
        let loops = Loops::new();
        let quick = loops.register(
            "quick",
            Duration::from_millis(30),
            Duration::from_millis(80),
        );
        let _slow = loops.register("slow", Duration::from_secs(60), Duration::from_secs(60));
        assert!(loops.not_ready().is_empty());
        std::thread::sleep(Duration::from_millis(50));
        let nr = loops.not_ready();
        assert_eq!(nr.iter().map(|s| s.name).collect::<Vec<_>>(), ["quick"]);
        assert!(nr[0].for_ >= Duration::from_millis(50));
        assert!(loops.not_live().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(loops.not_live().len(), 1);
        assert!(describe(&loops.not_live()).starts_with("quick stuck for 0."));
        quick.beat();
        assert!(loops.not_ready().is_empty() && loops.not_live().is_empty());
        loops.forget("quick");
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            loops.not_ready().is_empty(),
            "a forgotten loop is not watched"
        );
    }

    #[test]
    fn liveness_is_never_stricter_than_readiness() {
        let loops = Loops::new();
        let _b = loops.register("x", Duration::from_millis(60), Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(loops.not_live().is_empty());
    }
}
