//! Every other OTLP metric a node sends (other senders' series, the probe duration histogram,
//! the link-local packets counter): the latest value per attribute set, bounded per node and
//! per metric.

use super::limits::Limits;
use super::otlp::{attributes, number, points_in, truncate};
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric, NumberDataPoint};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
struct Point {
    value: f64,
    time_ns: u64,
}

#[derive(Debug, Default)]
struct MetricState {
    kind: &'static str,
    unit: String,
    series: BTreeMap<Vec<(String, String)>, Point>,
}

/// A node's latest-value metrics by name.
#[derive(Debug, Default)]
pub struct Generic {
    metrics: BTreeMap<String, MetricState>,
}

impl Generic {
    /// Takes one metric's points; returns (accepted, rejected).
    pub fn take(&mut self, limits: &Limits, m: &Metric, now_ns: u64) -> (u64, u64) {
        let (mut accepted, mut rejected) = (0, 0);
        let (kind, points) = generic_points(m);
        rejected += (points_in(m) - points.len()) as u64;
        if points.is_empty() {
            return (accepted, rejected);
        }
        let name = truncate(m.name.clone());
        if !self.metrics.contains_key(&name) && self.metrics.len() >= limits.max_metrics_per_node {
            return (accepted, rejected + points.len() as u64);
        }
        let state = self.metrics.entry(name).or_default();
        state.kind = kind;
        state.unit = truncate(m.unit.clone());
        for (a, value, t) in points {
            let time_ns = if t == 0 { now_ns } else { t };
            let fits = state.series.len() < limits.max_series_per_metric;
            match state.series.get_mut(&a) {
                Some(p) if p.time_ns <= time_ns => *p = Point { value, time_ns },
                Some(_) => {}
                None if fits => {
                    state.series.insert(a, Point { value, time_ns });
                }
                None => {
                    rejected += 1;
                    continue;
                }
            }
            accepted += 1;
        }
        (accepted, rejected)
    }

    pub fn snapshot(&self) -> Vec<MetricSnapshot> {
        self.metrics
            .iter()
            .map(|(name, m)| MetricSnapshot {
                name: name.clone(),
                kind: m.kind,
                unit: m.unit.clone(),
                series: m
                    .series
                    .iter()
                    .map(|(a, p)| SeriesSnapshot {
                        attributes: a.iter().cloned().collect(),
                        value: p.value,
                        time: crate::time::rfc3339(p.time_ns),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A data point of any other metric: attributes, value (the count for histograms and
/// summaries), time.
type GenericPoint = (Vec<(String, String)>, f64, u64);

fn generic_points(m: &Metric) -> (&'static str, Vec<GenericPoint>) {
    let numbers = |points: &[NumberDataPoint]| -> Vec<GenericPoint> {
        points
            .iter()
            .filter_map(|p| Some((attributes(&p.attributes), number(p)?, p.time_unix_nano)))
            .collect()
    };
    macro_rules! counts {
        ($points:expr) => {
            $points
                .iter()
                .map(|p| (attributes(&p.attributes), p.count as f64, p.time_unix_nano))
                .collect()
        };
    }
    match &m.data {
        Some(metric::Data::Gauge(g)) => ("gauge", numbers(&g.data_points)),
        Some(metric::Data::Sum(s)) => ("sum", numbers(&s.data_points)),
        Some(metric::Data::Histogram(h)) => ("histogram", counts!(h.data_points)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            ("exponential_histogram", counts!(h.data_points))
        }
        Some(metric::Data::Summary(s)) => ("summary", counts!(s.data_points)),
        None => ("none", Vec::new()),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSnapshot {
    pub name: String,
    pub kind: &'static str,
    pub unit: String,
    pub series: Vec<SeriesSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesSnapshot {
    pub attributes: BTreeMap<String, String>,
    pub value: f64,
    pub time: String,
}
