//! Retry delays that double up to a cap, with jitter so a fleet of agents that lost the same
//! collector does not retry in lockstep.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff: the n-th delay is drawn uniformly from [base·2ⁿ / 2, base·2ⁿ] (or, with
/// [`Backoff::next_full_jitter`], from [0, base·2ⁿ]), capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    seed: std::collections::hash_map::RandomState,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
            seed: Default::default(),
        }
    }

    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        // Uniform in [ceiling/2, ceiling]: never a hot loop, never more than the cap.
        let (ceiling, u) = self.draw();
        let half = ceiling / 2;
        half + half.mul_f64(u)
    }

    /// As [`Backoff::next_delay`], uniform in [0, ceiling] ("full jitter"): spreads a fleet's
    /// retries widest, for callers that also honour a server's own delay (Retry-After).
    pub fn next_full_jitter(&mut self) -> Duration {
        let (ceiling, u) = self.draw();
        ceiling.mul_f64(u)
    }

    /// The ceiling of this retry and a uniform draw in [0, 1); counts one more failure.
    fn draw(&mut self) -> (Duration, f64) {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let mut h = self.seed.build_hasher();
        h.write_u32(self.failures);
        h.write_u128(
            std::time::UNIX_EPOCH
                .elapsed()
                .unwrap_or_default()
                .as_nanos(),
        );
        (ceiling, (h.finish() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The upper bound of the next delay, without jitter.
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap)
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: start again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000];
        for c in ceilings {
            let c = Duration::from_millis(c);
            assert_eq!(b.ceiling(), c);
            let d = b.next_delay();
            assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
        assert_eq!(b.failures(), 7);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_and_still_doubles() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for c in [100, 200, 400] {
            let c = Duration::from_millis(c);
            assert_eq!(b.ceiling(), c);
            assert!(b.next_full_jitter() <= c);
        }
        assert_eq!(b.failures(), 3);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let low = (0..200)
            .filter(|_| b.next_full_jitter() < Duration::from_millis(250))
            .count();
        assert!(
            low > 10,
            "only {low} of 200 draws below a quarter of the ceiling"
        );
    }

    #[test]
    fn delays_spread_out() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            b.next_delay();
            seen.insert(b.next_delay().as_micros());
        }
        assert!(seen.len() > 40, "only {} distinct delays of 50", seen.len());
    }
}
