//! OTLP decoding for the fleet: attribute values as bounded strings, numbers, and the
//! (cluster, node) a resource belongs to.

use headroom_signals::resource;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Most attributes kept per data point or resource.
const MAX_ATTRS: usize = 32;
/// Longest attribute key or value kept (longer ones are cut at a character boundary).
const MAX_VALUE_CHARS: usize = 256;
/// Cluster name for senders that do not set `k8s.cluster.name`.
pub const DEFAULT_CLUSTER: &str = "default";

/// Decoded attributes: sorted by key, one value per key.
pub type Attrs = [(String, String)];

pub fn any_to_string(v: &AnyValue) -> String {
    let s = match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .iter()
                .map(any_to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(any_value::Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|k| format!(
                    "{}={}",
                    k.key,
                    k.value.as_ref().map(any_to_string).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(any_value::Value::StringValueStrindex(i)) => format!("#{i}"),
        None => String::new(),
    };
    truncate(s)
}

pub fn truncate(mut s: String) -> String {
    if s.len() > MAX_VALUE_CHARS {
        let mut end = MAX_VALUE_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kvs
        .iter()
        .take(MAX_ATTRS)
        .map(|kv| {
            (
                truncate(kv.key.clone()),
                kv.value.as_ref().map(any_to_string).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

pub fn get<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

pub fn number(p: &NumberDataPoint) -> Option<f64> {
    match p.value? {
        number_data_point::Value::AsDouble(d) if d.is_finite() => Some(d),
        number_data_point::Value::AsDouble(_) => None,
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}

/// A resource's attributes (none without a resource).
pub fn resource_attributes(r: Option<&Resource>) -> Vec<(String, String)> {
    r.map(|r| attributes(&r.attributes)).unwrap_or_default()
}

/// The attribute's value, or "" when missing (a `String`, or an `Arc<str>` a snapshot shares).
pub fn attr_or_empty<T: for<'v> From<&'v str>>(a: &Attrs, key: &str) -> T {
    get(a, key).unwrap_or("").into()
}

/// Each field from its attribute when the point has it (written only on a change).
pub fn set_from<T, const N: usize>(a: &Attrs, fields: [(&mut T, &str); N])
where
    T: AsRef<str> + for<'v> From<&'v str>,
{
    for (field, key) in fields {
        if let Some(v) = get(a, key) {
            if field.as_ref() != v {
                *field = v.into();
            }
        }
    }
}

/// Data points of any kind in a metric.
pub fn points_in(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// The (cluster, node) a resource belongs to: `k8s.cluster.name` (else "default") and the
/// first of `k8s.node.name`, `host.name`, `service.instance.id`, `service.name`.
pub fn identity(res: &Attrs) -> (String, String) {
    let cluster = get(res, resource::K8S_CLUSTER_NAME).unwrap_or(DEFAULT_CLUSTER);
    let node = [
        resource::K8S_NODE_NAME,
        resource::HOST_NAME,
        resource::SERVICE_INSTANCE_ID,
        resource::SERVICE_NAME,
    ]
    .iter()
    .find_map(|k| get(res, k))
    .unwrap_or("unknown");
    (cluster.to_string(), node.to_string())
}
