//! The probes' report section (`probes[]`).

use super::kubelet::KubeletCounts;
use super::spec::Kind;
use super::stats::{self, LatencyMs, Outcome};
use crate::pod::PodRef;
use serde::Serialize;

/// One probe in the report (`probes[]`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeReport {
    pub pod: PodRef,
    pub container: String,
    pub kind: Kind,
    pub target: String,
    pub timeout_seconds: u64,
    pub period_seconds: u64,
    pub failure_threshold: u32,
    /// Attempts finished in the window.
    pub attempts: u64,
    /// Of the attempts: fast successes, slow successes, timeouts and other failures.
    pub ok: u64,
    pub slow: u64,
    pub timeouts: u64,
    pub errors: u64,
    /// Null without attempts. Timeouts count as their full timeout.
    pub latency_ms: Option<LatencyMs>,
    /// Times in the window the kubelet would have taken the pod out: failureThreshold
    /// consecutive failures (readiness: out of its Services; liveness/startup: restart).
    pub predicted_removals: u32,
    /// timeout / p99; null without attempts.
    pub headroom: Option<f64>,
    /// Why this probe is not shadowed; null when it is.
    pub reason: Option<String>,
    /// The last failure's cause in the window (connection refused, HTTP status 503, …).
    pub last_error: Option<String>,
    /// The kubelet's own results for this probe in (about) the window, from its
    /// `prober_probe_total`; null when the kubelet's metrics cannot be read.
    pub kubelet: Option<KubeletCounts>,
    /// The workload that owns the pod (from its ownerReferences); null when the pod is not
    /// in the pod list.
    pub workload: Option<crate::pod::Workload>,
    /// Each attempt (seconds, outcome), for histograms; not serialized.
    #[serde(skip)]
    pub samples: Vec<(f64, Outcome)>,
    /// The window's slow, timed-out and failed attempts (at most [`KEEP_NOT_OK`]), each a
    /// `probe` span; not serialized.
    #[serde(skip)]
    pub not_ok: Vec<NotOk>,
    /// Not-ok attempts beyond [`KEEP_NOT_OK`] in the window (no span).
    #[serde(skip)]
    pub not_ok_dropped: u64,
    /// Counts since the probe was first seen, for cumulative metrics; not serialized.
    #[serde(skip)]
    pub totals: ProbeTotals,
}

/// Worker saturation of the probed pod's listener at an attempt: the worker sampler's latest
/// sample (busy of workers, accept queue depth) before the attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturation {
    pub busy: u32,
    pub workers: u32,
    pub queue: u32,
}

/// One slow, timed-out or failed attempt, for its `probe` span.
#[derive(Debug, Clone, PartialEq)]
pub struct NotOk {
    /// When the attempt began, ns since the Unix epoch.
    pub start_ns: u64,
    /// How long it took (a timeout: its full timeout).
    pub elapsed: std::time::Duration,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// None when no listener of the pod on the probe's port is known.
    pub saturation: Option<Saturation>,
}

/// Running counts of one probe since it was first seen (cumulative OTLP metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTotals {
    /// When counting began, ns since the Unix epoch.
    pub since_ns: u64,
    /// Attempts by outcome, in [`Outcome::ALL`] order.
    pub by_outcome: [u64; 4],
    /// Attempts per bucket of [`stats::BUCKETS`] (non-cumulative; the last is +Inf).
    pub buckets: [u64; stats::BUCKETS.len() + 1],
    /// Seconds of all attempts (timeouts at their timeout).
    pub sum: f64,
    pub removals: u64,
}

impl ProbeTotals {
    pub(crate) fn add(&mut self, seconds: f64, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(3);
        self.by_outcome[i] += 1;
        let b = stats::BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(stats::BUCKETS.len());
        self.buckets[b] += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.by_outcome.iter().sum()
    }
}
