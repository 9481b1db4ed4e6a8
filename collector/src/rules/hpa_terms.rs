//! HPAOverScaling in the HPA's own terms: many users cannot change the metric their HPA scales
//! on, only its target. For the HPA's metric this says which target meets the measured need:
//!
//! - a request-rate metric (type Pods, Object or External with an AverageValue or Value
//!   target, named like `[rules] hpa_request_rate_pattern` or on an HPA annotated
//!   `headroom.io/metric-kind: request-rate`): the HPA wants `ceil(metric / averageValue)`
//!   replicas, so the target that gives the needed replicas at the measured rate is
//!   averageValue = requests/s (the workload's p95, at the load the busy p95 comes from) ÷
//!   needed replicas. A Value target compares the total with the target whatever the
//!   replicas, so it becomes an AverageValue. Not when the workload's connections are not
//!   requests (a keep-alive front): the rate the agents count is then not the metric's;
//! - Resource cpu or memory utilization: the target would come from the CPU one busy worker
//!   uses, which the agents do not measure yet; memory does not follow requests in service;
//! - anything else: the rule's Pods-metric proposal alone.

use super::kubeyaml::{quantity, to_yaml};
use crate::fleet::WorkloadSnapshot;
use crate::kube::{HpaInfo, HpaMetric};
use serde_json::json;

/// The value of [`crate::kube::METRIC_KIND_ANNOTATION`] that marks a request-rate metric.
pub const REQUEST_RATE: &str = "request-rate";

/// `[rules] hpa_request_rate_pattern`, compiled (case-insensitive); equal when the patterns
/// are.
#[derive(Debug, Clone)]
pub struct RatePattern(regex::Regex);

impl RatePattern {
    pub fn new(pattern: &str) -> Result<RatePattern, regex::Error> {
        regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map(RatePattern)
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

impl PartialEq for RatePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// What the HPA's own metric can be told.
#[derive(Debug, Clone, PartialEq)]
pub enum Terms<'a> {
    /// A request-rate metric: its new averageValue, and the HPA patched with it (None when
    /// the HPA's spec is not known).
    Rate {
        metric: &'a HpaMetric,
        rate: f64,
        average: String,
        patch: Option<String>,
    },
    /// A request-rate metric whose target cannot be computed, and why.
    RateNot { metric: &'a HpaMetric, why: String },
    /// A cpu or memory utilization target, and why its value cannot be computed.
    Utilization { metric: &'a HpaMetric, why: String },
    /// Another kind of metric (or none): only the Pods-metric proposal.
    Other,
}

impl Terms<'_> {
    /// `request_rate`, `utilization` or `other`, for the evidence.
    pub fn kind(&self) -> &'static str {
        match self {
            Terms::Rate { .. } | Terms::RateNot { .. } => "request_rate",
            Terms::Utilization { .. } => "utilization",
            Terms::Other => "other",
        }
    }

    pub fn metric(&self) -> Option<&HpaMetric> {
        match self {
            Terms::Rate { metric, .. }
            | Terms::RateNot { metric, .. }
            | Terms::Utilization { metric, .. } => Some(metric),
            Terms::Other => None,
        }
    }
}

/// Whether `m` of HPA `h` is a request rate the measured one can stand for.
pub fn is_request_rate(h: &HpaInfo, m: &HpaMetric, pattern: &RatePattern) -> bool {
    matches!(m.type_.as_str(), "Pods" | "Object" | "External")
        && matches!(m.target_type.as_str(), "AverageValue" | "Value")
        && (pattern.is_match(&m.name) || h.metric_kind.as_deref() == Some(REQUEST_RATE))
}

/// The HPA's own metric and what its target should be for `need` replicas of workload `w`.
pub fn terms<'a>(
    h: &'a HpaInfo,
    w: &WorkloadSnapshot,
    need: u32,
    pattern: &RatePattern,
) -> Terms<'a> {
    let rate_metric = h
        .metric_specs
        .iter()
        .enumerate()
        .find(|(_, m)| is_request_rate(h, m, pattern));
    if let Some((i, metric)) = rate_metric {
        if !w.requests_are_connections {
            return Terms::RateNot {
                metric,
                why: "the request-rate target cannot be trusted: in this workload's pods \
                      connections are not requests (a front keeps connections open between \
                      requests, or proxies to the workers over TCP), so the connections the \
                      agents count are not the requests this metric counts"
                    .into(),
            };
        }
        let rate = match w.requests_per_second_p95 {
            Some(r) if r > 0.0 => r,
            Some(_) => {
                return Terms::RateNot {
                    metric,
                    why: "no requests were measured over the workload's history".into(),
                }
            }
            None => {
                return Terms::RateNot {
                    metric,
                    why: "no request rate is measured for this workload (its agents send \
                          no accepted connections per second)"
                        .into(),
                }
            }
        };
        let average = quantity((rate / f64::from(need.max(1))).max(0.001));
        return Terms::Rate {
            metric,
            rate,
            patch: patch(h, i, metric, &average),
            average,
        };
    }
    let utilization = h.metric_specs.iter().find(|m| {
        matches!(m.type_.as_str(), "Resource" | "ContainerResource")
            && m.target_type == "Utilization"
            && matches!(m.name.as_str(), "cpu" | "memory")
    });
    match utilization {
        Some(metric) if metric.name == "cpu" => Terms::Utilization {
            metric,
            why: format!(
                "the cpu utilization target at which {need} replicas carry the measured busy \
                 p95 cannot be computed: the agents do not measure the CPU one busy worker \
                 uses (no pod CPU figures yet), so averageUtilization {} stays a guess",
                metric.target
            ),
        },
        Some(metric) => Terms::Utilization {
            metric,
            why: "no memory utilization target meets a busy-worker need: memory does not \
                  follow the requests in service"
                .into(),
        },
        None => Terms::Other,
    }
}

/// The HPA with only metric `i`'s target changed to `averageValue: average`, as YAML; None
/// when its spec is not known or does not hold that metric.
fn patch(h: &HpaInfo, i: usize, m: &HpaMetric, average: &str) -> Option<String> {
    let key = match m.type_.as_str() {
        "Pods" => "pods",
        "Object" => "object",
        _ => "external",
    };
    let mut spec = h.spec.clone();
    let target = spec.pointer_mut(&format!("/metrics/{i}/{key}/target"))?;
    *target = json!({"type": "AverageValue", "averageValue": average});
    Some(to_yaml(&json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": h.name, "namespace": h.namespace},
        "spec": spec,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(type_: &str, name: &str, target_type: &str, target: &str) -> HpaMetric {
        HpaMetric {
            type_: type_.into(),
            name: name.into(),
            target_type: target_type.into(),
            target: target.into(),
        }
    }

    fn pattern() -> RatePattern {
        RatePattern::new(super::super::DEFAULT_RATE_PATTERN).unwrap()
    }

    #[test]
    fn request_rate_metrics_by_name_type_target_or_annotation() {
        let mut h = HpaInfo::default();
        let p = pattern();
        let table = [
            (
                metric("External", "envoy.upstream_rq_total", "AverageValue", "1"),
                true,
            ),
            (
                metric(
                    "Pods",
                    "HTTP_Server_Requests_Seconds_Count",
                    "AverageValue",
                    "5",
                ),
                true,
            ),
            (metric("Object", "nginx_rps", "Value", "100"), true),
            (metric("Resource", "cpu", "Utilization", "50"), false),
            (
                metric("External", "queue_depth", "AverageValue", "30"),
                false,
            ),
            (metric("Pods", "requests", "Utilization", "50"), false),
        ];
        for (m, want) in &table {
            assert_eq!(is_request_rate(&h, m, &p), *want, "{m:?}");
        }
        h.metric_kind = Some(REQUEST_RATE.into());
        assert!(is_request_rate(&h, &table[4].0, &p), "annotated");
        assert!(
            !is_request_rate(&h, &table[3].0, &p),
            "never a Resource metric"
        );
        assert!(RatePattern::new("(").is_err());
        assert_eq!(
            RatePattern::new("a|b").unwrap(),
            RatePattern::new("a|b").unwrap()
        );
    }
}
