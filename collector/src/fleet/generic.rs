//! Every other OTLP metric a node sends (other senders' series, the probe duration histogram,
//! the link-local packets counter): the latest value per attribute set, bounded per node and
//! per metric.

use super::limits::{Limits, HISTORY, MAX_FUTURE};
use super::otlp::{attributes, number, points_in, truncate};
use super::store::slot;
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric, NumberDataPoint};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
struct Point {
    value: f64,
    time_ns: u64,
}

#[derive(Debug, Clone, Default)]
struct MetricState {
    kind: &'static str,
    unit: String,
    /// Sorted by key, grown by an eighth: most metrics have a few series per node, and a
    /// map's first leaf would hold room for 11.
    series: Vec<(SeriesKey, Point)>,
}

/// A series' attributes in one allocation instead of two strings per attribute (the probe
/// histogram and the worker utilization carry 7–10 attributes; at 5 000 nodes that was
/// ≈ 800 000 small strings). Each key and value is written with NUL escaped as NUL 1 and
/// ended by NUL NUL, so keys order as the `(key, value)` lists they encode and no two lists
/// share one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey(Box<str>);

impl SeriesKey {
    fn new(attrs: &[(String, String)]) -> SeriesKey {
        let mut s = String::with_capacity(attrs.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
        for part in attrs.iter().flat_map(|(k, v)| [k, v]) {
            for c in part.chars() {
                s.push(c);
                if c == '\0' {
                    s.push('\u{1}');
                }
            }
            s.push_str("\0\0");
        }
        SeriesKey(s.into_boxed_str())
    }

    fn pairs(&self) -> BTreeMap<String, String> {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = self.0.chars();
        while let Some(c) = chars.next() {
            if c != '\0' {
                cur.push(c);
            } else if chars.next() == Some('\u{1}') {
                cur.push('\0');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        }
        let mut it = parts.into_iter();
        let mut out = BTreeMap::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.insert(k, v);
        }
        out
    }
}

/// A node's latest-value metrics by name.
#[derive(Debug, Clone, Default)]
pub struct Generic {
    metrics: BTreeMap<String, MetricState>,
    /// Series over all metrics.
    series: usize,
}

/// What one metric's points came to; `rejected` includes the three reasons after it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub accepted: u64,
    pub rejected: u64,
    pub future: u64,
    pub old: u64,
    pub over_series: u64,
}

impl Generic {
    /// Metrics kept on this node.
    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    /// Series kept on this node.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Takes one metric's points; `fleet_series` is the fleet-wide series count, bounded by
    /// `max_series`.
    pub fn take(
        &mut self,
        limits: &Limits,
        m: &Metric,
        now_ns: u64,
        fleet_series: &mut usize,
    ) -> Taken {
        let mut t = Taken::default();
        let (kind, points) = generic_points(m);
        t.rejected += (points_in(m) - points.len()) as u64;
        if points.is_empty() {
            return t;
        }
        let name = truncate(m.name.clone());
        if !self.metrics.contains_key(&name) && self.metrics.len() >= limits.max_metrics_per_node {
            t.rejected += points.len() as u64;
            return t;
        }
        let newest = now_ns.saturating_add(MAX_FUTURE.as_nanos() as u64);
        let oldest = now_ns.saturating_sub(HISTORY.as_nanos() as u64);
        let state = self.metrics.entry(name).or_default();
        state.kind = kind;
        state.unit = truncate(m.unit.clone());
        for (a, value, time) in points {
            let time_ns = if time == 0 { now_ns } else { time };
            if time_ns > newest || time_ns < oldest {
                *(if time_ns > newest {
                    &mut t.future
                } else {
                    &mut t.old
                }) += 1;
                t.rejected += 1;
                continue;
            }
            let fits = state.series.len() < limits.max_series_per_metric;
            let key = SeriesKey::new(&a);
            let room = if *fleet_series < limits.max_series {
                limits.max_series_per_metric
            } else {
                0
            };
            let point = Point { value, time_ns };
            match slot(&mut state.series, &key, room, || {
                (key.clone(), point.clone())
            }) {
                Some((i, inserted)) => {
                    if inserted {
                        self.series += 1;
                        *fleet_series += 1;
                    }
                    let p = &mut state.series[i].1;
                    if p.time_ns <= time_ns {
                        *p = point;
                    }
                }
                None => {
                    t.over_series += u64::from(fits);
                    t.rejected += 1;
                    continue;
                }
            }
            t.accepted += 1;
        }
        t
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
                        attributes: a.pairs(),
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

#[cfg(test)]
mod tests {
    use super::SeriesKey;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('\u{1}'),
                Just('a'),
                Just('b'),
                any::<char>()
            ],
            0..4,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    fn attrs() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((text(), text()), 0..4).prop_map(|mut v| {
            v.sort();
            v.dedup_by(|a, b| a.0 == b.0);
            v
        })
    }

    proptest! {
        /// The key reads back as the attributes, and keys order (and are equal) exactly as
        /// the attribute lists they encode: the series keep the order the map kept.
        #[test]
        fn series_keys_read_back_and_order_as_the_attributes(a in attrs(), b in attrs()) {
            let (ka, kb) = (SeriesKey::new(&a), SeriesKey::new(&b));
            prop_assert_eq!(ka.pairs(), a.iter().cloned().collect());
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }
    }
}
