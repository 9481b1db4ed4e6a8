//! `[probes]`: the probe source's section of the config file.

use serde::{Deserialize, Serialize};

/// `[probes]` in the config file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Shadow the probes of this node's pods (needs Kubernetes access; without it the agent
    /// runs without probes).
    pub enabled: bool,
    /// A successful attempt slower than this share of its probe's timeout counts as slow.
    pub slow_fraction: f64,
    /// Shadow period as a multiple of each probe's periodSeconds: 1 runs as often as the
    /// kubelet, 2 half as often, 0.5 twice as often.
    pub period_fraction: f64,
    /// Most shadow attempts per second on the whole node; attempts beyond it wait their turn.
    pub max_attempts_per_second: f64,
    /// The kubelet's probe metrics, for its own counts beside the shadow results (the agent
    /// runs with hostNetwork, so the node's kubelet is on 127.0.0.1). Empty: not read.
    pub kubelet_url: String,
    /// Bearer token for the kubelet (the service account needs `get` on `nodes/metrics`).
    pub kubelet_token_file: String,
    /// How often to read the kubelet's probe metrics.
    pub kubelet_scrape_interval: String,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            slow_fraction: 0.5,
            period_fraction: 1.0,
            max_attempts_per_second: 50.0,
            kubelet_url: "https://127.0.0.1:10250/metrics/probes".into(),
            kubelet_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            kubelet_scrape_interval: "5s".into(),
        }
    }
}

impl ProbeConfig {
    /// Every problem, one line each, naming the fix.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.slow_fraction > 0.0 && self.slow_fraction <= 1.0) {
            errors.push(format!(
                "invalid probes.slow_fraction {}: must be more than 0 and at most 1 (0.5 = half the timeout)",
                self.slow_fraction
            ));
        }
        if !(0.1..=10.0).contains(&self.period_fraction) {
            errors.push(format!(
                "invalid probes.period_fraction {}: must be between 0.1 and 10 (1 = the probe's own period)",
                self.period_fraction
            ));
        }
        if !(self.max_attempts_per_second >= 0.1 && self.max_attempts_per_second <= 10_000.0) {
            errors.push(format!(
                "invalid probes.max_attempts_per_second {}: must be between 0.1 and 10000",
                self.max_attempts_per_second
            ));
        }
        let u = &self.kubelet_url;
        if !(u.is_empty() || u.starts_with("https://") || u.starts_with("http://")) {
            errors.push(format!(
                "invalid probes.kubelet_url '{}': expected https://HOST:PORT/metrics/probes, or empty to not read the kubelet",
                self.kubelet_url
            ));
        }
        match crate::time::parse_duration(
            "probes.kubelet_scrape_interval",
            &self.kubelet_scrape_interval,
        ) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => {}
            Ok(_) => {
                errors.push("invalid probes.kubelet_scrape_interval: must be at least 1s".into())
            }
            Err(e) => errors.push(e.to_string()),
        }
        errors
    }

    pub(crate) fn kubelet_interval(&self) -> std::time::Duration {
        crate::time::parse_duration("", &self.kubelet_scrape_interval)
            .unwrap_or(std::time::Duration::from_secs(5))
    }
}
