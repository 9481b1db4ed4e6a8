//! Probe statistics, pure: classifying attempts, latency percentiles, headroom, and the
//! kubelet's state machine that turns consecutive failures into predicted removals.

use serde::Serialize;
use std::time::Duration;

/// Buckets around typical probe timeouts (1 s default; 2, 3, 5, 10 s common).
pub const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
];

/// How one attempt went. Timeouts and errors are failures, as for the kubelet; slow is a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Slow,
    Timeout,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Slow, Outcome::Timeout, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Slow => "slow",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::Error)
    }
}

/// A success is slow when it took more than `slow_fraction` of the probe's timeout.
pub fn classify_success(elapsed: Duration, timeout: Duration, slow_fraction: f64) -> Outcome {
    if elapsed.as_secs_f64() > timeout.as_secs_f64() * slow_fraction {
        Outcome::Slow
    } else {
        Outcome::Ok
    }
}

/// Latency figures of a window, in milliseconds (timeouts count as their full timeout).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1); None when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// p50, p99 and max of the latencies; None without attempts.
pub fn latency(samples_ms: &[f64]) -> Option<LatencyMs> {
    let mut s: Vec<f64> = samples_ms
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    s.sort_by(f64::total_cmp);
    Some(LatencyMs {
        p50: round2(percentile(&s, 0.5)?),
        p99: round2(percentile(&s, 0.99)?),
        max: round2(*s.last()?),
    })
}

/// timeout / p99: how many times slower the probe may get before it times out (below 1: it
/// already does at the 99th percentile). None without attempts.
pub fn headroom(timeout: Duration, p99_ms: Option<f64>) -> Option<f64> {
    let p99 = p99_ms.filter(|p| *p > 0.0)?;
    Some(round2(timeout.as_secs_f64() * 1000.0 / p99))
}

/// The kubelet's view of one probe: the result changes only after `failure_threshold`
/// consecutive failures (removal from the Service's endpoints for readiness, a restart for
/// liveness and startup) and comes back after `success_threshold` consecutive successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemovalState {
    failures: u32,
    successes: u32,
    /// True while the kubelet would hold the pod failed.
    pub down: bool,
}

impl RemovalState {
    /// Applies one attempt; true when it is the one that would take the pod out.
    pub fn step(
        &mut self,
        outcome: Outcome,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> bool {
        if outcome.is_failure() {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if !self.down && self.failures >= failure_threshold.max(1) {
                self.down = true;
                return true;
            }
        } else {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.down && self.successes >= success_threshold.max(1) {
                self.down = false;
            }
        }
        false
    }
}

/// Predicted removals in a sequence of attempts, starting from a healthy pod.
pub fn predicted_removals(
    outcomes: &[Outcome],
    failure_threshold: u32,
    success_threshold: u32,
) -> u32 {
    let mut s = RemovalState::default();
    outcomes
        .iter()
        .filter(|o| s.step(**o, failure_threshold, success_threshold))
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn removals_table() {
        let table: &[(&[Outcome], u32, u32, u32)] = &[
            (&[], 3, 1, 0),
            (&[Timeout, Timeout], 3, 1, 0),
            (&[Timeout, Timeout, Timeout], 3, 1, 1),
            (&[Timeout, Error, Timeout, Timeout, Timeout], 3, 1, 1),
            (&[Timeout, Timeout, Slow, Timeout, Timeout], 3, 1, 0),
            (&[Error, Error, Error, Ok, Error, Error, Error], 3, 1, 2),
            (&[Error], 1, 1, 1),
            (&[Error, Ok, Error], 1, 1, 2),
            // successThreshold 2: one success does not bring it back, so no second removal.
            (&[Error, Error, Ok, Error, Error], 2, 2, 1),
            (&[Error, Error, Ok, Ok, Error, Error], 2, 2, 2),
            (&[Slow, Slow, Slow, Slow], 1, 1, 0),
        ];
        for (outcomes, ft, st, want) in table {
            assert_eq!(
                predicted_removals(outcomes, *ft, *st),
                *want,
                "{outcomes:?} failureThreshold {ft} successThreshold {st}"
            );
        }
    }

    #[test]
    fn classify_and_percentiles() {
        let t = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(classify_success(ms(100), t, 0.5), Ok);
        assert_eq!(classify_success(ms(500), t, 0.5), Ok);
        assert_eq!(classify_success(ms(501), t, 0.5), Slow);
        assert_eq!(classify_success(ms(900), t, 0.95), Ok);
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 0.5), Some(50.0));
        assert_eq!(percentile(&s, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        let l = latency(&[1000.0, 100.0, 900.0]).unwrap();
        assert_eq!((l.p50, l.p99, l.max), (900.0, 1000.0, 1000.0));
        assert!(latency(&[]).is_none());
        assert_eq!(headroom(t, Some(250.0)), Some(4.0));
        assert_eq!(headroom(t, Some(1000.0)), Some(1.0));
        assert_eq!(headroom(t, None), None);
    }
}
