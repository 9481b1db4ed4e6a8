//! The OTLP building blocks every per-signal encoder uses: attributes, data points, and a
//! metric named, described and typed by its `headroom-signals` descriptor.

pub(crate) use crate::export::identity;
pub use crate::report::Report;
pub use headroom_signals::{attr, metric};
use headroom_signals::{Kind, Metric as Descriptor};
pub use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric as data, number_data_point, AggregationTemporality, Gauge, Histogram, NumberDataPoint,
    Sum,
};
pub use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, Metric};

pub use number_data_point::Value::{AsDouble, AsInt};

/// The times of one report window's points: gauges span `start`..`end`; cumulative counters
/// run from `process_start` (when the agent began counting) to `end`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub process_start: u64,
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    kv_value(key, any_value::Value::StringValue(value.into()))
}

fn kv_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv_value(key, any_value::Value::IntValue(value))
}

pub fn kv_double(key: &str, value: f64) -> KeyValue {
    kv_value(key, any_value::Value::DoubleValue(value))
}

/// `attrs` plus one more attribute.
pub fn with(attrs: &[KeyValue], key: &str, value: &str) -> Vec<KeyValue> {
    let mut a = attrs.to_vec();
    a.push(kv(key, value));
    a
}

pub fn point(
    attrs: &[KeyValue],
    start: u64,
    end: u64,
    v: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(v),
        ..Default::default()
    }
}

/// A gauge or a cumulative monotonic sum, as the descriptor says.
pub fn number(d: &Descriptor, points: Vec<NumberDataPoint>) -> Metric {
    let data = match d.kind {
        Kind::Gauge => data::Data::Gauge(Gauge {
            data_points: points,
        }),
        Kind::Counter | Kind::Histogram => data::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
    };
    described(d, data)
}

/// A cumulative histogram.
pub fn histogram(d: &Descriptor, points: Vec<HistogramDataPoint>) -> Metric {
    described(
        d,
        data::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    )
}

fn described(d: &Descriptor, data: data::Data) -> Metric {
    Metric {
        name: d.otlp.into(),
        description: d.help.into(),
        unit: d.unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

pub fn data_points(m: &Metric) -> usize {
    match &m.data {
        Some(data::Data::Gauge(g)) => g.data_points.len(),
        Some(data::Data::Sum(s)) => s.data_points.len(),
        Some(data::Data::Histogram(h)) => h.data_points.len(),
        _ => 0,
    }
}
