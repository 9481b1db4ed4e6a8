//! Rules: pure functions from the fleet (and the Kubernetes objects the collector watches) to
//! findings. No I/O and no clock reads here; the engine ([`crate::engine`]) owns pending,
//! firing and resolved, and each rule's `for` duration.

pub mod dns;
pub mod hpa;
pub mod hpa_terms;
pub mod kubeyaml;
pub mod packing;
pub mod probe;
pub mod rightsizing;
pub mod scale_down;
pub mod storage;

pub use crate::catalog::Cost;

use crate::check::{duration, Check, Invalid};
use crate::fleet::FleetSnapshot;
use crate::kube::KubeView;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How bad a finding is; also the Alertmanager `severity` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Money, not an outage (ScaleDownBlocked).
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding is about. The finding's id is a hash of the rule and this, so it must hold
/// only what names the thing (never a figure).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    pub cluster: String,
    pub node: Option<String>,
    pub interface: Option<String>,
    pub eni: Option<String>,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub pod: Option<String>,
    /// `container/kind` of a probe, e.g. `app/readiness`.
    pub probe: Option<String>,
    /// A node group of DNSConsolidationRisk (`instance_type/zone` or `label=value`).
    pub node_group: Option<String>,
    /// A pod's mount point (StorageLatencyRisk).
    #[serde(default)]
    pub mount: Option<String>,
}

impl Subject {
    /// Every set field as (label, value), in a fixed order; what Alertmanager gets as labels.
    pub fn labels(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![("cluster", self.cluster.as_str())];
        for (k, f) in [
            ("node", &self.node),
            ("interface", &self.interface),
            ("eni", &self.eni),
            ("namespace", &self.namespace),
            ("workload", &self.workload),
            ("pod", &self.pod),
            ("probe", &self.probe),
            ("node_group", &self.node_group),
            ("mount", &self.mount),
        ] {
            if let Some(x) = f.as_deref().filter(|x| !x.is_empty()) {
                v.push((k, x));
            }
        }
        v
    }
}

/// One rule's verdict on one subject at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub subject: Subject,
    /// One line: what is wrong, with the figure that says so.
    pub summary: String,
    /// The figures behind it, by name.
    pub evidence: BTreeMap<String, serde_json::Value>,
    /// What to change, concretely (may be several lines, e.g. a YAML snippet).
    pub fix: String,
    /// What the subject costs while the finding holds (ScaleDownBlocked), when it has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// What rules read: the fleet and the Kubernetes objects.
pub struct Input<'a> {
    pub fleet: &'a FleetSnapshot,
    pub kube: &'a KubeView,
}

/// Pure: no I/O, no clock reads.
pub trait Rule: Send + Sync {
    /// The rule's name (`DNSThrottleRisk`): the finding's `rule` and the `alertname`.
    fn id(&self) -> &'static str;
    /// How long a finding must hold before it fires.
    fn for_duration(&self) -> Duration;
    fn evaluate(&self, input: &Input, now: SystemTime) -> Vec<Finding>;
}

/// The `[rules]` table: thresholds and durations of every rule, and the engine's timing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// How often the rules run over the fleet.
    pub evaluation_interval: String,
    /// How long a resolved finding stays listed.
    pub keep_resolved: String,
    /// After a start, findings loaded from `state_file` are not resolved for this long (the
    /// fleet is still filling up).
    pub startup_grace: String,
    /// DNSThrottleRisk: warning at this share of the link-local limit (1 s peak / limit).
    pub dns_warning: f64,
    /// DNSThrottleRisk: critical at this share.
    pub dns_critical: f64,
    /// DNSThrottleRisk: critical ("dropping now") when unanswered queries rose by at least this
    /// many from the window before to the latest.
    pub dns_unanswered_jump: u64,
    pub dns_for: String,
    /// DNSConsolidationRisk: flag a node group when losing its least loaded node would put a
    /// remaining primary ENI at or over this share of the limit.
    pub consolidation_threshold: f64,
    /// DNSConsolidationRisk: node label that forms node groups (e.g. `karpenter.sh/nodepool`);
    /// empty: instance type + availability zone.
    pub consolidation_group_label: String,
    pub consolidation_for: String,
    /// ProbeTimeoutRisk: flag when a probe's p99 exceeds this share of its timeout.
    pub probe_p99_share: f64,
    pub probe_for: String,
    /// HPAOverScaling: busy workers per pod the HPA should aim at, as a share of its workers.
    pub hpa_target_utilization: f64,
    /// HPAOverScaling: over-scaled when replicas > needed × (1 + margin).
    pub hpa_margin: f64,
    /// HPAOverScaling: busy figures must cover at least this much history.
    pub hpa_min_history: String,
    /// HPAOverScaling: how long over-scaling must last (the "sustained window").
    pub hpa_for: String,
    /// The Prometheus metric an HPA would scale on (through prometheus-adapter) in the fix.
    pub hpa_metric: String,
    /// HPAOverScaling: the Prometheus the KEDA form of the fix queries (its Prometheus
    /// scaler's `serverAddress`), for clusters with KEDA instead of prometheus-adapter.
    pub keda_prometheus_server: String,
    /// ScaleDownBlocked: a node whose requested share (the larger of CPU and memory requests
    /// over allocatable) is under this is one the autoscaler would remove (its
    /// --scale-down-utilization-threshold).
    pub scale_down_utilization_threshold: f64,
    /// ScaleDownBlocked: how long a node must be under the threshold and pinned (the
    /// autoscaler's --scale-down-unneeded-time).
    pub scale_down_for: String,
    /// ScaleDownBlocked: nodes younger than this are not judged.
    pub scale_down_min_node_age: String,
    /// HPAOverScaling: a Pods, Object or External metric whose name matches this regular
    /// expression (case-insensitive) is a request rate, and the fix gives its new target.
    pub hpa_request_rate_pattern: String,
    /// NodeGroupPacking: the requested share (CPU and memory requests over allocatable) each
    /// node of a packed group is planned at; the rest is headroom for bursts and rollouts.
    pub target_node_utilization: f64,
    /// RequestsRightSizing: added on top of measured use (0.15 = 15 %).
    pub rightsizing_margin: f64,
    /// RequestsRightSizing: pod-use history a workload needs before it is sized (whole hours).
    pub rightsizing_min_history: String,
    /// RequestsRightSizing: a change smaller than this share of the current request (or than
    /// 50m CPU / 64 MiB) is not worth a finding.
    pub rightsizing_min_change: f64,
    /// StorageLatencyRisk: metadata calls per second (OPEN, CLOSE, GETATTR, LOOKUP, ACCESS…) on
    /// an NFS/EFS mount below which a pod is not judged.
    pub storage_min_metadata_ops: f64,
    /// StorageLatencyRisk: metadata calls per MB of data moved (READ and WRITE bytes) from
    /// which the op mix counts as metadata-heavy (small files).
    pub storage_metadata_ops_per_mb: f64,
    /// StorageLatencyRisk: mean execute time of the metadata calls, ms, from which they are slow.
    pub storage_execute_ms: f64,
    pub storage_for: String,
}

/// What `[rules] hpa_request_rate_pattern` matches unless set.
pub const DEFAULT_RATE_PATTERN: &str = "requests|rq_total|rps|http_server_requests";

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            evaluation_interval: "10s".into(),
            keep_resolved: "1h".into(),
            startup_grace: "1m".into(),
            dns_warning: 0.8,
            dns_critical: 0.95,
            dns_unanswered_jump: 10,
            dns_for: "30s".into(),
            consolidation_threshold: 0.8,
            consolidation_group_label: String::new(),
            consolidation_for: "10m".into(),
            probe_p99_share: 0.5,
            probe_for: "1m".into(),
            hpa_target_utilization: 0.7,
            hpa_margin: 0.5,
            hpa_min_history: "5m".into(),
            hpa_for: "30m".into(),
            hpa_metric: "headroom_workers_busy".into(),
            keda_prometheus_server: "http://prometheus-operated.monitoring.svc:9090".into(),
            scale_down_utilization_threshold: 0.5,
            scale_down_for: "10m".into(),
            scale_down_min_node_age: "10m".into(),
            hpa_request_rate_pattern: DEFAULT_RATE_PATTERN.into(),
            target_node_utilization: 0.65,
            rightsizing_margin: 0.15,
            rightsizing_min_history: "6h".into(),
            rightsizing_min_change: 0.2,
            storage_min_metadata_ops: 5.0,
            storage_metadata_ops_per_mb: 100.0,
            storage_execute_ms: 2.0,
            storage_for: "10m".into(),
        }
    }
}

/// The `[rules]` table checked: durations parsed, shares in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub evaluation_interval: Duration,
    pub keep_resolved: Duration,
    pub startup_grace: Duration,
    pub dns_warning: f64,
    pub dns_critical: f64,
    pub dns_unanswered_jump: u64,
    pub dns_for: Duration,
    pub consolidation_threshold: f64,
    pub consolidation_group_label: String,
    pub consolidation_for: Duration,
    pub probe_p99_share: f64,
    pub probe_for: Duration,
    pub hpa_target_utilization: f64,
    pub hpa_margin: f64,
    pub hpa_min_history: Duration,
    pub hpa_for: Duration,
    pub hpa_metric: String,
    pub keda_prometheus_server: String,
    pub scale_down_utilization_threshold: f64,
    pub scale_down_for: Duration,
    pub scale_down_min_node_age: Duration,
    pub hpa_request_rate_pattern: hpa_terms::RatePattern,
    pub target_node_utilization: f64,
    pub sizing: rightsizing::Sizing,
    pub storage_min_metadata_ops: f64,
    pub storage_metadata_ops_per_mb: f64,
    pub storage_execute_ms: f64,
    pub storage_for: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        RulesConfig::default()
            .validate()
            .expect("default rules are valid")
    }
}

impl RulesConfig {
    /// Checks every field; all problems at once.
    pub fn validate(&self) -> Result<Thresholds, Vec<Invalid>> {
        let mut check = Check::default();
        let mut dur = |name: &str, text: &str, min: Duration| {
            let field = format!("rules.{name}");
            let short = format!("must be at least {}", humantime::format_duration(min));
            check
                .take(duration(
                    &field,
                    text,
                    min,
                    &short,
                    "expected a duration such as 30s or 5m",
                ))
                .unwrap_or(min)
        };
        let zero = Duration::ZERO;
        let pattern = hpa_terms::RatePattern::new(&self.hpa_request_rate_pattern);
        let t = Thresholds {
            evaluation_interval: dur(
                "evaluation_interval",
                &self.evaluation_interval,
                Duration::from_millis(100),
            ),
            keep_resolved: dur("keep_resolved", &self.keep_resolved, zero),
            startup_grace: dur("startup_grace", &self.startup_grace, zero),
            dns_warning: self.dns_warning,
            dns_critical: self.dns_critical,
            dns_unanswered_jump: self.dns_unanswered_jump,
            dns_for: dur("dns_for", &self.dns_for, zero),
            consolidation_threshold: self.consolidation_threshold,
            consolidation_group_label: self.consolidation_group_label.clone(),
            consolidation_for: dur("consolidation_for", &self.consolidation_for, zero),
            probe_p99_share: self.probe_p99_share,
            probe_for: dur("probe_for", &self.probe_for, zero),
            hpa_target_utilization: self.hpa_target_utilization,
            hpa_margin: self.hpa_margin,
            hpa_min_history: dur("hpa_min_history", &self.hpa_min_history, zero),
            hpa_for: dur("hpa_for", &self.hpa_for, zero),
            hpa_metric: self.hpa_metric.clone(),
            keda_prometheus_server: self.keda_prometheus_server.clone(),
            scale_down_utilization_threshold: self.scale_down_utilization_threshold,
            scale_down_for: dur("scale_down_for", &self.scale_down_for, zero),
            scale_down_min_node_age: dur(
                "scale_down_min_node_age",
                &self.scale_down_min_node_age,
                zero,
            ),
            storage_min_metadata_ops: self.storage_min_metadata_ops,
            storage_metadata_ops_per_mb: self.storage_metadata_ops_per_mb,
            storage_execute_ms: self.storage_execute_ms,
            storage_for: dur("storage_for", &self.storage_for, zero),
            hpa_request_rate_pattern: pattern.clone().unwrap_or_else(|_| {
                hpa_terms::RatePattern::new(DEFAULT_RATE_PATTERN).expect("the default compiles")
            }),
            target_node_utilization: self.target_node_utilization,
            sizing: rightsizing::Sizing {
                margin: self.rightsizing_margin,
                min_hours: (dur(
                    "rightsizing_min_history",
                    &self.rightsizing_min_history,
                    Duration::from_secs(3600),
                )
                .as_secs()
                .div_ceil(3600))
                .min(24 * 366) as usize,
                min_change: self.rightsizing_min_change,
            },
        };
        if let Err(e) = &pattern {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or_default().trim().to_string();
            check.push(Invalid::text(
                "rules.hpa_request_rate_pattern",
                &self.hpa_request_rate_pattern,
                format!("a regular expression such as requests|rq_total ({first})"),
            ));
        }
        for (name, v, lo, hi) in [
            ("dns_warning", self.dns_warning, 0.0, 10.0),
            ("dns_critical", self.dns_critical, 0.0, 10.0),
            (
                "consolidation_threshold",
                self.consolidation_threshold,
                0.0,
                10.0,
            ),
            ("probe_p99_share", self.probe_p99_share, 0.0, 1.0),
            (
                "hpa_target_utilization",
                self.hpa_target_utilization,
                0.0,
                1.0,
            ),
            ("hpa_margin", self.hpa_margin, 0.0, 100.0),
            (
                "scale_down_utilization_threshold",
                self.scale_down_utilization_threshold,
                0.0,
                1.0,
            ),
            (
                "target_node_utilization",
                self.target_node_utilization,
                0.0,
                1.0,
            ),
            (
                "storage_min_metadata_ops",
                self.storage_min_metadata_ops,
                0.0,
                1e6,
            ),
            (
                "storage_metadata_ops_per_mb",
                self.storage_metadata_ops_per_mb,
                0.0,
                1e9,
            ),
            ("storage_execute_ms", self.storage_execute_ms, 0.0, 60_000.0),
            ("rightsizing_margin", self.rightsizing_margin, 0.0, 10.0),
            (
                "rightsizing_min_change",
                self.rightsizing_min_change,
                0.0,
                10.0,
            ),
        ] {
            // A margin or a minimum change of 0 is a choice, not a mistake.
            let zero_ok = matches!(
                name,
                "hpa_margin" | "rightsizing_margin" | "rightsizing_min_change"
            );
            let ok = v.is_finite() && v > lo && v <= hi || zero_ok && v == 0.0;
            if !ok {
                check.push(Invalid::number(
                    format!("rules.{name}"),
                    v,
                    format!("must be above {lo} and at most {hi}"),
                ));
            }
        }
        if self.dns_critical < self.dns_warning {
            check.push(Invalid::number(
                "rules.dns_critical",
                self.dns_critical,
                format!("must not be below rules.dns_warning {}", self.dns_warning),
            ));
        }
        if self.hpa_metric.trim().is_empty() {
            check.push(Invalid::text(
                "rules.hpa_metric",
                "",
                "name the busy-workers metric, e.g. headroom_workers_busy",
            ));
        }
        if !(self.keda_prometheus_server.starts_with("http://")
            || self.keda_prometheus_server.starts_with("https://"))
        {
            check.push(Invalid::text(
                "rules.keda_prometheus_server",
                &self.keda_prometheus_server,
                "give the Prometheus URL KEDA queries, e.g. http://prometheus-operated.monitoring.svc:9090",
            ));
        }
        check.finish(Some(t))
    }
}

/// Every rule with its thresholds (nodes priced by the shipped instance catalog).
pub fn all(t: &Thresholds) -> Vec<Box<dyn Rule>> {
    all_with(t, crate::catalog::Catalog::builtin())
}

/// Every rule, nodes priced by `catalog`.
pub fn all_with(
    t: &Thresholds,
    catalog: std::sync::Arc<crate::catalog::Catalog>,
) -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(scale_down::Blocked {
            t: t.clone(),
            catalog: catalog.clone(),
        }),
        Box::new(packing::Packing {
            t: t.clone(),
            catalog: catalog.clone(),
        }),
        Box::new(rightsizing::RequestsRightSizing {
            s: t.sizing,
            catalog,
        }),
        Box::new(dns::ThrottleRisk(t.clone())),
        Box::new(dns::ConsolidationRisk(t.clone())),
        Box::new(probe::TimeoutRisk(t.clone())),
        Box::new(hpa::OverScaling(t.clone())),
        Box::new(storage::LatencyRisk(t.clone())),
    ]
}

/// Rounds to three decimals (figures in evidence and summaries).
pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Evidence map from (name, value) pairs.
pub(crate) fn evidence<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> BTreeMap<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_come_together() {
        let t = Thresholds::default();
        assert_eq!(t.dns_warning, 0.8);
        assert_eq!(t.evaluation_interval, Duration::from_secs(10));
        let bad = RulesConfig {
            dns_warning: 0.9,
            dns_critical: 0.5,
            probe_p99_share: 1.5,
            hpa_for: "soon".into(),
            evaluation_interval: "1ms".into(),
            hpa_request_rate_pattern: "rq_(total".into(),
            ..RulesConfig::default()
        };
        let errs = bad.validate().unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e
            .to_string()
            .contains("rules.hpa_request_rate_pattern 'rq_(total'")));
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("rules.hpa_for 'soon'")));
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("rules.dns_critical 0.5")));
    }

    /// The right-sizing settings reach the rule; 0 is a valid margin and minimum change; a
    /// history under an hour or a margin out of range is refused with its name.
    #[test]
    fn rightsizing_settings_are_checked_and_carried() {
        assert_eq!(Thresholds::default().sizing, rightsizing::Sizing::default());
        let t = RulesConfig {
            rightsizing_margin: 0.0,
            rightsizing_min_history: "90m".into(),
            rightsizing_min_change: 0.0,
            ..RulesConfig::default()
        }
        .validate()
        .unwrap();
        let want = rightsizing::Sizing {
            margin: 0.0,
            min_hours: 2,
            min_change: 0.0,
        };
        assert_eq!(t.sizing, want, "90m is two whole hours of history");
        let errs = RulesConfig {
            rightsizing_margin: -0.1,
            rightsizing_min_history: "30m".into(),
            rightsizing_min_change: 11.0,
            ..RulesConfig::default()
        }
        .validate()
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        for name in [
            "rules.rightsizing_margin -0.1",
            "rules.rightsizing_min_history '30m'",
            "rules.rightsizing_min_change 11",
        ] {
            assert!(text.iter().any(|e| e.contains(name)), "{name} in {text:?}");
        }
    }

    #[test]
    fn labels_skip_unset_fields() {
        let s = Subject {
            cluster: "c".into(),
            node: Some("n".into()),
            eni: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(s.labels(), vec![("cluster", "c"), ("node", "n")]);
    }
}
