//! Packet counts in 10 ms buckets, and the busiest one-second window among them.
//!
//! The allowance is enforced per second, and drops happen inside one busy second, so the figure
//! that matters is the highest count in any one-second window, sliding in 10 ms steps, not a mean
//! over the report interval.

use super::Service;
use std::collections::VecDeque;

/// Bucket width: the step the one-second window slides by.
pub const STEP_NS: u64 = 10_000_000;
/// Buckets in one second.
pub const STEPS_PER_SECOND: u64 = 1_000_000_000 / STEP_NS;

/// Figures for one report window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Packets in the window, per service (index: [`Service::index`]).
    pub packets: [u64; 3],
    /// Highest count, all services together, in any one-second window ending inside the window.
    pub peak: u64,
    /// The same per service.
    pub peak_by_service: [u64; 3],
}

impl Figures {
    pub fn total(&self) -> u64 {
        self.packets.iter().sum()
    }
}

/// Per-service packet counts in consecutive buckets.
#[derive(Debug, Clone)]
pub struct Series {
    /// Bucket number (timestamp / STEP_NS) of `counts[0]`.
    base: u64,
    counts: VecDeque<[u32; 3]>,
    /// Most buckets kept; older ones fall off if nobody trims (bounded memory).
    max_buckets: usize,
}

impl Series {
    /// A series that keeps at most `max_seconds` of buckets.
    pub fn new(max_seconds: u64) -> Self {
        Series {
            base: 0,
            counts: VecDeque::new(),
            max_buckets: (max_seconds.max(2) * STEPS_PER_SECOND) as usize,
        }
    }

    /// Counts one packet sent at `ts_ns` (nanoseconds since the Unix epoch).
    pub fn add(&mut self, ts_ns: u64, service: Service) {
        self.add_n(ts_ns, service, 1);
    }

    /// Counts `n` packets sent at `ts_ns` (the eBPF tap hands over counts per 10 ms step).
    pub fn add_n(&mut self, ts_ns: u64, service: Service, n: u32) {
        let b = ts_ns / STEP_NS;
        if self.counts.is_empty() {
            self.base = b;
        }
        if b < self.base {
            // Older than anything kept (already reported): count it where it is least wrong.
            self.counts[0][service.index()] += n;
            return;
        }
        let mut idx = (b - self.base) as usize;
        if idx >= self.max_buckets {
            // A jump forward (idle interface, clock step): drop what can no longer be reported.
            let drop = idx + 1 - self.max_buckets;
            if drop >= self.counts.len() {
                self.counts.clear();
                self.base = b;
                idx = 0;
            } else {
                self.counts.drain(..drop);
                self.base += drop as u64;
                idx -= drop;
            }
        }
        while self.counts.len() <= idx {
            self.counts.push_back([0; 3]);
        }
        self.counts[idx][service.index()] += n;
    }

    fn bucket(&self, b: u64) -> [u32; 3] {
        if b < self.base {
            return [0; 3];
        }
        self.counts
            .get((b - self.base) as usize)
            .copied()
            .unwrap_or([0; 3])
    }

    /// Figures for `[start_ns, end_ns)`, with boundaries rounded down to a bucket.
    ///
    /// One-second windows ending in any bucket of the range count, including windows that
    /// reach back before `start_ns`, so a burst that straddles two report windows is not split.
    pub fn figures(&self, start_ns: u64, end_ns: u64) -> Figures {
        let (s, e) = (start_ns / STEP_NS, end_ns / STEP_NS);
        let mut f = Figures::default();
        if e <= s {
            return f;
        }
        // Rolling one-second sums (total and per service) over the window ending at bucket b.
        let mut roll = [0u64; 3];
        let first = s.saturating_sub(STEPS_PER_SECOND - 1);
        for b in first..s {
            add(&mut roll, self.bucket(b));
        }
        for b in s..e {
            let c = self.bucket(b);
            add(&mut roll, c);
            for (i, n) in c.iter().enumerate() {
                f.packets[i] += *n as u64;
            }
            if b >= first + STEPS_PER_SECOND {
                sub(&mut roll, self.bucket(b - STEPS_PER_SECOND));
            }
            f.peak = f.peak.max(roll.iter().sum());
            for (p, r) in f.peak_by_service.iter_mut().zip(roll) {
                *p = (*p).max(r);
            }
        }
        f
    }

    /// Forgets buckets before `ts_ns`.
    pub fn trim_before(&mut self, ts_ns: u64) {
        let b = ts_ns / STEP_NS;
        if b <= self.base {
            return;
        }
        let n = ((b - self.base) as usize).min(self.counts.len());
        self.counts.drain(..n);
        self.base = b;
        if self.counts.is_empty() {
            self.base = 0;
        }
    }

    /// Buckets held, for memory accounting in tests.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

fn add(acc: &mut [u64; 3], c: [u32; 3]) {
    for i in 0..3 {
        acc[i] += c[i] as u64;
    }
}

fn sub(acc: &mut [u64; 3], c: [u32; 3]) {
    for i in 0..3 {
        acc[i] -= c[i] as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * S;

    #[test]
    fn even_rate_peaks_at_the_rate() {
        let mut s = Series::new(60);
        // 900 packets/s, evenly spaced, for 5 s.
        for i in 0..4500u64 {
            s.add(T0 + i * S / 900, Service::Dns);
        }
        let f = s.figures(T0, T0 + 5 * S);
        assert_eq!(f.total(), 4500);
        assert_eq!(f.packets[Service::Dns.index()], 4500);
        assert!((899..=901).contains(&f.peak), "peak {}", f.peak);
    }

    #[test]
    fn a_burst_shows_as_the_peak_not_the_mean() {
        let mut s = Series::new(60);
        for i in 0..1000u64 {
            s.add(T0 + i * S / 100, Service::Dns); // 100/s for 10 s
        }
        for i in 0..1400u64 {
            s.add(T0 + 4 * S + 300_000_000 + i * S / 1400, Service::Imds); // 1400 in one second
        }
        let f = s.figures(T0, T0 + 10 * S);
        assert_eq!(f.total(), 2400);
        assert!((1499..=1501).contains(&f.peak), "peak {}", f.peak);
        assert_eq!(f.peak_by_service[Service::Imds.index()], 1400);
        assert!((99..=101).contains(&f.peak_by_service[Service::Dns.index()]));
    }

    #[test]
    fn windows_reach_back_across_the_report_boundary() {
        let mut s = Series::new(60);
        // 600 packets in the half second before the boundary, 600 in the half second after.
        for i in 0..1200u64 {
            s.add(T0 + 9_500_000_000 + i * S / 1200, Service::Dns);
        }
        let first = s.figures(T0, T0 + 10 * S);
        assert_eq!(first.total(), 600);
        assert_eq!(first.peak, 600);
        s.trim_before(T0 + 9 * S);
        let second = s.figures(T0 + 10 * S, T0 + 20 * S);
        assert_eq!(second.total(), 600);
        assert_eq!(
            second.peak, 1200,
            "the burst straddling the boundary is one second"
        );
    }

    #[test]
    fn memory_stays_bounded_without_trimming() {
        let mut s = Series::new(10);
        for i in 0..100_000u64 {
            s.add(T0 + i * 7 * STEP_NS, Service::Ntp);
        }
        assert!(s.len() <= 10 * STEPS_PER_SECOND as usize);
        s.trim_before(T0 + 10_000 * S);
        assert!(s.is_empty());
    }

    /// Brute force: for every bucket b in the range, count packets in [b-99, b].
    fn brute(ts: &[(u64, usize)], start: u64, end: u64) -> (u64, u64) {
        let (s, e) = (start / STEP_NS, end / STEP_NS);
        let total = ts
            .iter()
            .filter(|(t, _)| (s..e).contains(&(t / STEP_NS)))
            .count() as u64;
        let peak = (s..e)
            .map(|b| {
                ts.iter()
                    .filter(|(t, _)| {
                        let tb = t / STEP_NS;
                        tb <= b && tb + STEPS_PER_SECOND > b
                    })
                    .count() as u64
            })
            .max()
            .unwrap_or(0);
        (total, peak)
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            offsets in proptest::collection::vec((0u64..4 * S, 0usize..3), 0..400),
            start_off in 0u64..2 * S,
            len in 1u64..3 * S,
        ) {
            let mut s = Series::new(60);
            let mut ts: Vec<(u64, usize)> = offsets.iter().map(|(o, k)| (T0 + o, *k)).collect();
            ts.sort();
            for (t, k) in &ts {
                s.add(*t, Service::ALL[*k]);
            }
            let (start, end) = (T0 + start_off, T0 + start_off + len);
            let f = s.figures(start, end);
            let (total, peak) = brute(&ts, start, end);
            prop_assert_eq!(f.total(), total);
            prop_assert_eq!(f.peak, peak);
        }
    }
}
