//! The lean snapshot (no history, no latest-value metrics) that the rules, `/metrics` and the
//! status page read, kept between uses. Each report makes its node's part of it (see
//! `Node::settle`), so building one only gathers them; its `/metrics` text is the dear part
//! at fleet size (tens of milliseconds at 5 000 nodes). The evaluation loop builds one per
//! evaluation and encodes its text after the rules, so a scrape or a page view that comes
//! between two evaluations reads that one (and its text) instead of making its own. A scrape
//! that comes after the evaluation replaced the snapshot but before its text is made reads the
//! text made last, when that was slow to make ([`LeanCache::text`]).
//!
//! When a cached snapshot is used: while it is younger than `max_age` (two evaluation
//! intervals) and either the fleet has not changed since (same generation) or building it and
//! its text took at least [`SLOW`]. A small fleet (every test's) therefore always reads a
//! current snapshot, and a large one reads a snapshot at most two evaluation intervals old
//! (one normally: each evaluation replaces it), as a Prometheus scrape of any exporter with a
//! collection interval would.
//!
//! The workloads (each Deployment's busy workers summed over its pods' windows of
//! `workload_history`) are most of a snapshot's cost at fleet size: 0.6 s at 5 000 nodes. Once
//! making them took [`SLOW`], they are made every [`WORKLOADS_EVERY`] on a thread of their
//! own and snapshots take the latest (figures over 15 minutes that HPAOverScaling holds for
//! 30 moved little in a minute), so an evaluation is not held up by them.

use super::view::Workloads;
use super::{Fleet, FleetSnapshot, View};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A snapshot whose building and text took this long is reused until `max_age` even if the
/// fleet moved.
pub const SLOW: Duration = Duration::from_millis(20);

/// How often slow workloads are made again.
pub const WORKLOADS_EVERY: Duration = Duration::from_secs(60);

/// The nice value of the thread that makes workloads.
pub const WORKLOADS_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`WORKLOADS_NICE`]: making workloads is 0.6 s of a
/// core once a minute at 5 000 nodes, and the ingest requests that arrive meanwhile should
/// not queue for a core behind it (a figure a minute old is as good a few hundred ms later).
/// Raising a nice value needs no privilege; on failure the thread runs as it is.
/// A thread already nicer (the whole collector started under `nice`) is left as it is.
fn yield_to_ingest() {
    let me = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(me)).unwrap_or(0);
    if now >= WORKLOADS_NICE {
        return;
    }
    if let Err(error) = rustix::process::setpriority_process(Some(me), WORKLOADS_NICE) {
        tracing::debug!(message = "Could not lower the workloads thread's priority.", %error);
    }
}

/// The workloads made last, and whether a thread is making new ones.
#[derive(Default)]
struct Made {
    workloads: Option<(Arc<Workloads>, Instant, Duration)>,
    making: bool,
}

/// Clears [`Made::making`] when dropped.
struct Making(Arc<Mutex<Made>>);

impl Drop for Making {
    fn drop(&mut self) {
        lock(&self.0).making = false;
    }
}

/// One lean snapshot and what was derived from it.
pub struct Lean {
    pub snapshot: FleetSnapshot,
    generation: u64,
    built: Instant,
    took: Duration,
    /// The `/metrics` text and how long making it took.
    text: OnceLock<(Arc<str>, Duration)>,
}

/// The latest `/metrics` text made, kept past its snapshot: a scrape that comes while the
/// evaluation has replaced the snapshot but not yet made the new one's text reads this
/// instead of encoding the fleet beside it (60-80 ms of a core at 5 000 nodes).
#[derive(Clone)]
struct Said {
    text: Arc<str>,
    built: Instant,
    took: Duration,
}

impl Lean {
    /// The text `encode` makes of the snapshot, made once per snapshot.
    pub fn text(&self, encode: impl FnOnce(&FleetSnapshot) -> String) -> &str {
        &self.made_text(encode).0
    }

    fn made_text(&self, encode: impl FnOnce(&FleetSnapshot) -> String) -> &(Arc<str>, Duration) {
        self.text.get_or_init(|| {
            let started = Instant::now();
            (encode(&self.snapshot).into(), started.elapsed())
        })
    }

    /// What answering afresh would cost: building the snapshot and, once made, its text.
    /// Since each report makes its node's snapshot, building one is quick at any fleet size;
    /// its text is not (tens of milliseconds at 5 000 nodes).
    fn cost(&self) -> Duration {
        self.took + self.text.get().map_or(Duration::ZERO, |t| t.1)
    }

    /// How long building the snapshot took.
    pub fn took(&self) -> Duration {
        self.took
    }
}

/// The fleet's snapshots as its readers take them: the latest lean snapshot, shared by the
/// evaluation loop and the HTTP handlers, and views for the rest.
pub struct LeanCache {
    fleet: Arc<Mutex<Fleet>>,
    slot: Mutex<Option<Arc<Lean>>>,
    max_age: Duration,
    /// Encodes a new snapshot's text ahead of the scrape ([`LeanCache::encode_kept`]), once
    /// anyone has asked for the text ([`LeanCache::text`]): a scrape then only copies it.
    encoder: Option<fn(&FleetSnapshot) -> String>,
    text_wanted: AtomicBool,
    said: Mutex<Option<Said>>,
    made: Arc<Mutex<Made>>,
    /// [`SLOW`] and [`WORKLOADS_EVERY`] (tests shorten them).
    workloads_slow: Duration,
    workloads_every: Duration,
}

impl LeanCache {
    pub fn new(fleet: Arc<Mutex<Fleet>>, max_age: Duration) -> Self {
        LeanCache {
            fleet,
            slot: Mutex::new(None),
            max_age,
            encoder: None,
            text_wanted: AtomicBool::new(false),
            said: Mutex::new(None),
            made: Arc::default(),
            workloads_slow: SLOW,
            workloads_every: WORKLOADS_EVERY,
        }
    }

    /// Shorter [`SLOW`] and [`WORKLOADS_EVERY`], for tests.
    #[cfg(test)]
    pub(super) fn workloads_timing(mut self, slow: Duration, every: Duration) -> Self {
        (self.workloads_slow, self.workloads_every) = (slow, every);
        self
    }

    /// Encodes each new snapshot with `encode` once its text has been asked for.
    pub fn encoding(mut self, encode: fn(&FleetSnapshot) -> String) -> Self {
        self.encoder = Some(encode);
        self
    }

    /// Encodes the kept snapshot's text now if anyone reads it (the evaluation loop calls this
    /// after the rules, so a scrape only copies the text).
    pub fn encode_kept(&self) {
        let kept = self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(l), Some(encode), true) =
            (kept, self.encoder, self.text_wanted.load(Ordering::Relaxed))
        {
            self.say(&l, encode);
        }
    }

    /// The fleet's `/metrics` text for a scrape: the kept snapshot's (see [`LeanCache::get`]),
    /// made by `encode` if nobody has yet, except while the evaluation has replaced the kept
    /// snapshot and not yet made its text: then the text made last, if making it was slow and
    /// its snapshot is younger than `max_age`. From now on new snapshots are encoded as they
    /// are built.
    pub fn text(&self, now: SystemTime, encode: fn(&FleetSnapshot) -> String) -> Arc<str> {
        self.text_wanted.store(true, Ordering::Relaxed);
        let kept = lock(&self.slot).clone();
        if kept.is_some_and(|l| l.text.get().is_none()) {
            let said = lock(&self.said).clone();
            if let Some(s) = said.filter(|s| s.took >= SLOW && s.built.elapsed() < self.max_age) {
                return s.text;
            }
        }
        self.say(&self.get(now), encode)
    }

    /// The snapshot's text, made now if it was not, and kept as the text made last.
    fn say(&self, l: &Lean, encode: fn(&FleetSnapshot) -> String) -> Arc<str> {
        let (text, took) = l.made_text(encode).clone();
        let mut said = lock(&self.said);
        // A slower thread saying an older snapshot's text does not replace a newer one's.
        if !said.as_ref().is_some_and(|s| s.built > l.built) {
            *said = Some(Said {
                text: text.clone(),
                built: l.built,
                took,
            });
        }
        text
    }

    /// What ingest counted so far (fresh, not from the kept snapshot).
    pub fn stats(&self) -> super::IngestStats {
        lock(&self.fleet).stats.clone()
    }

    /// A view of the fleet now (the lock is held only to take it), with the workloads made
    /// last when they are slow to make.
    pub fn view(&self) -> View {
        let mut view = lock(&self.fleet).view();
        let made = lock(&self.made);
        if let Some((w, _, took)) = &made.workloads {
            if *took >= self.workloads_slow {
                view.workloads = Some(w.clone());
            }
        }
        view
    }

    /// A view with workloads: made now when they are quick to make (or never were), else the
    /// last ones made, and a thread started to make new ones once those are
    /// `workloads_every` old.
    fn view_with_workloads(&self, now: SystemTime) -> View {
        let mut view = self.view();
        if view.workloads.is_some() {
            let mut made = lock(&self.made);
            let stale = made
                .workloads
                .as_ref()
                .is_some_and(|(_, at, _)| at.elapsed() >= self.workloads_every);
            if stale && !made.making {
                made.making = true;
                let (fleet, slot) = (self.fleet.clone(), self.made.clone());
                let spawned = std::thread::Builder::new()
                    .name("headroom-workloads".into())
                    .spawn(move || {
                        // Cleared however the thread ends, so a next one can start.
                        let _making = Making(slot.clone());
                        yield_to_ingest();
                        let view = lock(&fleet).view();
                        let started = Instant::now();
                        let w = Arc::new(view.make_workloads(SystemTime::now()));
                        lock(&slot).workloads = Some((w, started, started.elapsed()));
                    });
                if let Err(error) = spawned {
                    // Out of threads: keep the last workloads and try again next time.
                    tracing::warn!(message = "Could not start the thread that makes workloads.", %error);
                    made.making = false;
                }
            }
            return view;
        }
        let started = Instant::now();
        let w = Arc::new(view.make_workloads(now));
        lock(&self.made).workloads = Some((w.clone(), started, started.elapsed()));
        view.workloads = Some(w);
        view
    }

    /// Builds a new snapshot (outside the fleet's lock) and keeps it; the one it replaced is
    /// dropped once the slot's lock is released (readers do not wait for it).
    pub fn refresh(&self, now: SystemTime) -> Arc<Lean> {
        self.replace(now).0
    }

    /// As [`LeanCache::refresh`], handing back the snapshot it replaced for the caller to drop
    /// when nothing waits on it: freeing a snapshot of thousands of nodes is a sixth of the
    /// cost of building one, and the evaluation loop frees the old one after the findings.
    pub fn replace(&self, now: SystemTime) -> (Arc<Lean>, Option<Arc<Lean>>) {
        let view = self.view_with_workloads(now);
        let started = Instant::now();
        let snapshot = view.snapshot_lean(now);
        let lean = Arc::new(Lean {
            snapshot,
            generation: view.generation(),
            built: started,
            took: started.elapsed(),
            text: OnceLock::new(),
        });
        drop(view);
        let old = lock(&self.slot).replace(lean.clone());
        (lean, old)
    }

    /// The kept snapshot when it may still be used (see the module's rule), else a new one.
    pub fn get(&self, now: SystemTime) -> Arc<Lean> {
        let kept = self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(l) = kept {
            let young = l.built.elapsed() < self.max_age;
            if young && (l.cost() >= SLOW || lock(&self.fleet).generation() == l.generation) {
                return l;
            }
        }
        self.refresh(now)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value is the thread's own: the workloads thread yields, the runtime's threads
    /// (here the test's) keep theirs.
    #[test]
    fn only_the_workloads_thread_yields_to_ingest() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let theirs = std::thread::spawn(move || {
            yield_to_ingest();
            own()
        })
        .join()
        .unwrap();
        assert_eq!(theirs, WORKLOADS_NICE.max(before));
        assert_eq!(own(), before);
    }

    #[test]
    fn a_fast_snapshot_is_reused_only_while_the_fleet_is_unchanged() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet.clone(), Duration::from_secs(60));
        let now = SystemTime::now();
        let a = cache.get(now);
        assert!(
            a.took() < SLOW,
            "an empty fleet builds in well under {SLOW:?}"
        );
        let b = cache.get(now);
        assert!(Arc::ptr_eq(&a, &b), "same generation: the same snapshot");
        assert_eq!(b.text(|_| "once".into()), "once");
        assert_eq!(b.text(|_| "twice".into()), "once", "encoded once");
        fleet.lock().unwrap().expire(now);
        let c = cache.get(now);
        assert!(!Arc::ptr_eq(&b, &c), "the fleet changed: a new snapshot");
        assert!(
            c.text.get().is_none(),
            "no encoder: encoded only when asked"
        );
    }

    /// The evaluation loop frees the replaced snapshot itself, after the findings: `replace`
    /// hands back exactly the one it took out of the slot, and keeps the new one.
    #[test]
    fn replace_hands_back_the_snapshot_it_replaced() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet, Duration::from_secs(60));
        let now = SystemTime::now();
        let (a, none) = cache.replace(now);
        assert!(none.is_none(), "nothing was kept before");
        let (b, old) = cache.replace(now);
        assert!(old.is_some_and(|old| Arc::ptr_eq(&old, &a)));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&cache.get(now), &b), "the new one is kept");
    }

    fn nodes(s: &FleetSnapshot) -> String {
        format!("nodes {}", s.nodes)
    }

    #[test]
    fn once_the_text_is_asked_for_new_snapshots_are_encoded_as_they_are_built() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet.clone(), Duration::from_secs(60)).encoding(nodes);
        let now = SystemTime::now();
        cache.refresh(now);
        cache.encode_kept();
        assert!(cache.get(now).text.get().is_none(), "nobody asked yet");
        let kept = cache.get(now);
        assert_eq!(&*cache.text(now, nodes), "nodes 0");
        assert!(
            kept.text.get().is_some(),
            "the scrape encoded the kept snapshot"
        );
        let fresh = cache.refresh(now);
        assert!(
            fresh.text.get().is_none(),
            "encoded after the rules, not in the refresh"
        );
        cache.encode_kept();
        assert_eq!(fresh.text.get().map(|t| &*t.0), Some("nodes 0"));
    }

    /// How often [`slow`] ran; only the test below encodes with it.
    static SLOW_ENCODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// An encoder as slow as [`SLOW`], numbering its texts.
    fn slow(_: &FleetSnapshot) -> String {
        std::thread::sleep(SLOW);
        format!("text {}", SLOW_ENCODED.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// A snapshot quick to build but slow to encode is reused as one slow to build: a scrape
    /// between two evaluations copies the text the evaluation made. One that comes after the
    /// evaluation replaced the snapshot but before it made the new text reads the text made
    /// last and encodes nothing; once that text is older than `max_age` it is not read.
    #[test]
    fn a_scrape_reads_the_text_made_last_while_the_evaluation_makes_the_next() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet.clone(), Duration::from_millis(500)).encoding(slow);
        let now = SystemTime::now();
        let first = cache.text(now, slow);
        assert_eq!(&*first, "text 1");
        let quick = cache.get(now);
        assert!(quick.took() < SLOW);
        fleet.lock().unwrap().expire(now);
        assert_eq!(&*cache.text(now, slow), "text 1", "slow text: reused");
        assert!(Arc::ptr_eq(&cache.get(now), &quick));

        // The evaluation replaced it; its text is not made yet.
        let next = cache.refresh(now);
        fleet.lock().unwrap().expire(now);
        assert_eq!(&*cache.text(now, slow), "text 1", "the text made last");
        assert_eq!(SLOW_ENCODED.load(Ordering::SeqCst), 1, "nothing encoded");
        let kept = cache.slot.lock().unwrap().clone().unwrap();
        assert!(
            Arc::ptr_eq(&kept, &next),
            "the scrape left the evaluation's snapshot in place"
        );
        cache.encode_kept();
        assert_eq!(&*cache.text(now, slow), "text 2", "the evaluation's text");

        // Replaced again and the text made last past max_age: the scrape makes its own.
        cache.refresh(now);
        std::thread::sleep(Duration::from_millis(550));
        assert_eq!(&*cache.text(now, slow), "text 3");
    }

    /// Text quick to make is never read past its snapshot: a small fleet's scrape is current.
    #[test]
    fn a_quick_text_is_made_for_the_kept_snapshot() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet.clone(), Duration::from_secs(60)).encoding(nodes);
        let now = SystemTime::now();
        cache.text(now, nodes);
        let fresh = cache.refresh(now);
        cache.text(now, nodes);
        assert!(fresh.text.get().is_some(), "the kept snapshot's own text");
        fleet.lock().unwrap().expire(now);
        let moved = cache.get(now);
        assert!(!Arc::ptr_eq(&moved, &fresh), "the fleet moved, a new one");
    }

    #[test]
    fn a_slow_snapshot_is_reused_until_max_age_even_if_the_fleet_moved() {
        let fleet = Arc::new(Mutex::new(Fleet::new(Default::default())));
        let cache = LeanCache::new(fleet.clone(), Duration::from_millis(300));
        let now = SystemTime::now();
        // As if it had taken SLOW to build.
        let slow = Arc::new(Lean {
            snapshot: fleet.lock().unwrap().snapshot_lean(now),
            generation: 0,
            built: Instant::now(),
            took: SLOW,
            text: OnceLock::new(),
        });
        *cache.slot.lock().unwrap() = Some(slow.clone());
        fleet.lock().unwrap().expire(now);
        assert!(Arc::ptr_eq(&cache.get(now), &slow));
        std::thread::sleep(Duration::from_millis(350));
        assert!(
            !Arc::ptr_eq(&cache.get(now), &slow),
            "older than max_age: rebuilt"
        );
    }
}
