//! Request rate, as the kernel counts it: accepted TCP connections per second in each network
//! namespace, from the namespace's own `PassiveOpens` counter (`/proc/<pid>/net/snmp`), which
//! the sampler reads once per namespace and sample anyway to gate its connected dumps (see the
//! module's step 2): no second read. Over a report window, the mean (connections counted over
//! the time between the first and the last reading) and the busiest second (the most counted
//! between a reading and the newest one at least a second before it).
//!
//! The counter is the namespace's: a listener's own figure only where the namespace has one TCP
//! listening port (`accepts_scope: listener`); with several (an nginx sidecar in front of the
//! app on another port) every listener carries the namespace's figure (`namespace`).
//!
//! Connections are requests only when each request opens one. A front process that keeps
//! connections open between requests (keep-alive clients, a proxy's upstream keepalive pool,
//! streams) breaks that: an event loop (see [`super::model`]) seen holding one connection for
//! [`KEPT_ALIVE`] or longer makes the namespace's `requests_are_connections` false.

use super::Key;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The span of the busiest-second figure.
pub const SECOND: Duration = Duration::from_secs(1);

/// How long an event loop must hold one connection for it to count as kept open between
/// requests (a request through a front is rarely this slow; a keep-alive connection idles far
/// longer: nginx's default keepalive_timeout is 75 s).
pub const KEPT_ALIVE: Duration = Duration::from_secs(1);

/// Most readings kept for the busiest second (at 5 Hz a second needs 6).
const MAX_RECENT: usize = 64;

/// Most connections of one listener followed for [`KEPT_ALIVE`]; past this, the rest are
/// not (a pod can open connections at will).
pub const MAX_FOLLOWED: usize = 4096;

/// One namespace's accepted-connection counter over the current window.
#[derive(Debug, Default)]
pub struct Rate {
    /// Readings of about the last second, oldest first.
    recent: VecDeque<(Instant, u64)>,
    /// In this window: connections counted, the seconds they were counted over, the busiest
    /// second so far.
    count: u64,
    secs: f64,
    max: Option<f64>,
}

/// A window's accepted connections per second: mean and busiest second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepts {
    pub mean: f64,
    pub max: f64,
}

impl Rate {
    /// Adds a reading of the counter (`PassiveOpens`) taken at `at`.
    pub fn observe(&mut self, at: Instant, opens: u64) {
        match self.recent.back() {
            // The counter never falls: a namespace inode reused by a new namespace.
            Some(&(_, last)) if opens < last => self.recent.clear(),
            Some(&(t, last)) if at > t => {
                self.count += opens - last;
                self.secs += (at - t).as_secs_f64();
            }
            Some(_) => return, // not later than the last reading: nothing to learn
            None => {}
        }
        self.recent.push_back((at, opens));
        // Keep the newest reading at least a second old as the front.
        while self.recent.len() > 2 && at - self.recent[1].0 >= SECOND {
            self.recent.pop_front();
        }
        while self.recent.len() > MAX_RECENT {
            self.recent.pop_front();
        }
        if let Some(&(t, first)) = self.recent.front() {
            let span = (at - t).as_secs_f64();
            if at - t >= SECOND {
                let r = (opens - first) as f64 / span;
                self.max = Some(self.max.map_or(r, |m| m.max(r)));
            }
        }
    }

    /// Ends the window: its figures (None without two readings in it), and starts the next
    /// from the last reading.
    pub fn cut(&mut self) -> Option<Accepts> {
        let (count, secs, max) = (self.count, self.secs, self.max);
        (self.count, self.secs, self.max) = (0, 0.0, None);
        if secs <= 0.0 {
            return None;
        }
        let mean = count as f64 / secs;
        // A window shorter than a second has no busiest second: its mean stands for it.
        Some(Accepts {
            mean,
            max: max.unwrap_or(mean).max(mean),
        })
    }
}

/// The connections event-loop listeners hold, by when each was first seen.
#[derive(Debug, Default)]
pub struct Held(HashMap<Key, HashMap<u64, Instant>>);

impl Held {
    /// Notes the connections (inodes) listener `key` holds at `now`; returns how many of them
    /// it has held for at least [`KEPT_ALIVE`].
    pub fn note(&mut self, key: Key, conns: &[u64], now: Instant) -> u32 {
        let seen = self.0.entry(key).or_default();
        let live: HashSet<u64> = conns.iter().copied().collect();
        seen.retain(|c, _| live.contains(c));
        for &c in conns {
            if seen.len() >= MAX_FOLLOWED {
                break;
            }
            seen.entry(c).or_insert(now);
        }
        seen.values()
            .filter(|&&t| now.duration_since(t) >= KEPT_ALIVE)
            .count() as u32
    }

    /// Stops following a listener (no longer an event loop, or gone).
    pub fn forget(&mut self, key: &Key) {
        self.0.remove(key);
    }

    /// Forgets listeners not in `live`.
    pub fn retain(&mut self, live: &HashSet<Key>) {
        self.0.retain(|k, _| live.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn mean_and_busiest_second_at_five_hertz() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        // 20/s for 4 s, then 60/s for 1 s: readings every 200 ms.
        let mut opens = 1000u64;
        for i in 0..=25u64 {
            if i > 0 {
                opens += if i <= 20 { 4 } else { 12 };
            }
            r.observe(ms(t0, i * 200), opens);
        }
        let a = r.cut().unwrap();
        // 80 + 60 over 5 s.
        assert!((a.mean - 28.0).abs() < 1e-9, "{a:?}");
        assert!((a.max - 60.0).abs() < 1e-9, "{a:?}");
        // The next window starts from the last reading.
        r.observe(ms(t0, 5200), opens + 2);
        let b = r.cut().unwrap();
        assert!((b.mean - 10.0).abs() < 1e-9, "{b:?}");
        // The second ending at 5.2 s reaches back into the window before: 4 × 12 + 2.
        assert!((b.max - 50.0).abs() < 1e-9, "{b:?}");
        assert_eq!(r.cut(), None, "no reading: no figure");
        // Less than a second of readings: the mean stands for the busiest second.
        let mut s = Rate::default();
        s.observe(t0, 0);
        s.observe(ms(t0, 500), 5);
        let c = s.cut().unwrap();
        assert_eq!((c.mean, c.max), (10.0, 10.0));
    }

    #[test]
    fn a_counter_that_falls_starts_over_and_old_readings_are_ignored() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.observe(ms(t0, 0), 500);
        r.observe(ms(t0, 1000), 510);
        r.observe(ms(t0, 1000), 999); // same instant: ignored
        r.observe(ms(t0, 1200), 3); // a new namespace under the inode
        r.observe(ms(t0, 2200), 13);
        let a = r.cut().unwrap();
        assert!((a.mean - 10.0).abs() < 1e-9, "(10 + 10) over 2 s: {a:?}");
        assert!((a.max - 10.0).abs() < 1e-9);
        assert!(r.recent.len() <= MAX_RECENT);
    }

    #[test]
    fn connections_held_a_second_count_as_kept_alive() {
        let t0 = Instant::now();
        let mut h = Held::default();
        let k = (1, 2);
        assert_eq!(h.note(k, &[10, 11], t0), 0);
        assert_eq!(h.note(k, &[10, 12], ms(t0, 600)), 0);
        // 10 held since t0; 11 went and came back as new; 12 since 600 ms.
        assert_eq!(h.note(k, &[10, 11, 12], ms(t0, 1000)), 1);
        assert_eq!(h.note(k, &[10, 11, 12], ms(t0, 1700)), 2);
        h.retain(&HashSet::new());
        assert_eq!(h.note(k, &[10], ms(t0, 1800)), 0, "forgotten");
        let many: Vec<u64> = (0..(MAX_FOLLOWED as u64 + 100)).collect();
        h.note(k, &many, t0);
        assert_eq!(h.0[&k].len(), MAX_FOLLOWED);
    }
}
