//! How much memory an OTLP request takes once decoded, worked out from its encoded bytes
//! before anything is decoded. Protobuf is compact: an empty data point is 2 bytes on the
//! wire but a ~100-byte struct in memory, so an 8 MiB body (≈8 KiB gzipped) of empty points
//! decodes to hundreds of MiB. The walk reads each field's tag and length, recursing into the
//! fields that are messages (the OTLP schema below), and adds up an upper bound: every
//! message's struct size twice (a `Vec` grows to at most double), string and bytes fields
//! their length, every scalar (maybe one element of a repeated field) and every byte of a
//! packed field 16 bytes. It allocates nothing and visits each byte at most once per level.

use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use std::mem::size_of;

/// One message type: its size in memory, the tags of its fields that are messages, and the
/// tags of its packed scalar fields.
pub struct Schema {
    size: usize,
    messages: &'static [(u32, &'static Schema)],
    packed: &'static [u32],
}

const fn msg<T>(messages: &'static [(u32, &'static Schema)]) -> Schema {
    Schema {
        size: size_of::<T>(),
        messages,
        packed: &[],
    }
}

static ANY_VALUE: Schema = msg::<common::AnyValue>(&[(5, &ARRAY_VALUE), (6, &KEY_VALUE_LIST)]);
static ARRAY_VALUE: Schema = msg::<common::ArrayValue>(&[(1, &ANY_VALUE)]);
static KEY_VALUE_LIST: Schema = msg::<common::KeyValueList>(&[(1, &KEY_VALUE)]);
static KEY_VALUE: Schema = msg::<common::KeyValue>(&[(2, &ANY_VALUE)]);
static SCOPE: Schema = msg::<common::InstrumentationScope>(&[(3, &KEY_VALUE)]);
static ENTITY_REF: Schema = msg::<common::EntityRef>(&[]);
static RESOURCE: Schema = msg::<resource::Resource>(&[(1, &KEY_VALUE), (3, &ENTITY_REF)]);

/// `ExportMetricsServiceRequest`.
pub static METRICS_REQUEST: Schema = msg::<
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
>(&[(1, &RESOURCE_METRICS)]);
static RESOURCE_METRICS: Schema =
    msg::<metrics::ResourceMetrics>(&[(1, &RESOURCE), (2, &SCOPE_METRICS)]);
static SCOPE_METRICS: Schema = msg::<metrics::ScopeMetrics>(&[(1, &SCOPE), (2, &METRIC)]);
static METRIC: Schema = msg::<metrics::Metric>(&[
    (5, &GAUGE),
    (7, &SUM),
    (9, &HISTOGRAM),
    (10, &EXP_HISTOGRAM),
    (11, &SUMMARY),
    (12, &KEY_VALUE),
]);
static GAUGE: Schema = msg::<metrics::Gauge>(&[(1, &NUMBER_POINT)]);
static SUM: Schema = msg::<metrics::Sum>(&[(1, &NUMBER_POINT)]);
static HISTOGRAM: Schema = msg::<metrics::Histogram>(&[(1, &HISTOGRAM_POINT)]);
static EXP_HISTOGRAM: Schema = msg::<metrics::ExponentialHistogram>(&[(1, &EXP_POINT)]);
static SUMMARY: Schema = msg::<metrics::Summary>(&[(1, &SUMMARY_POINT)]);
static EXEMPLAR: Schema = msg::<metrics::Exemplar>(&[(7, &KEY_VALUE)]);
static NUMBER_POINT: Schema = msg::<metrics::NumberDataPoint>(&[(7, &KEY_VALUE), (5, &EXEMPLAR)]);
static HISTOGRAM_POINT: Schema = Schema {
    size: size_of::<metrics::HistogramDataPoint>(),
    messages: &[(9, &KEY_VALUE), (8, &EXEMPLAR)],
    packed: &[6, 7],
};
static BUCKETS: Schema = Schema {
    size: size_of::<metrics::exponential_histogram_data_point::Buckets>(),
    messages: &[],
    packed: &[2],
};
static EXP_POINT: Schema = msg::<metrics::ExponentialHistogramDataPoint>(&[
    (1, &KEY_VALUE),
    (8, &BUCKETS),
    (9, &BUCKETS),
    (11, &EXEMPLAR),
]);
static QUANTILE: Schema = msg::<metrics::summary_data_point::ValueAtQuantile>(&[]);
static SUMMARY_POINT: Schema = msg::<metrics::SummaryDataPoint>(&[(7, &KEY_VALUE), (6, &QUANTILE)]);

/// `ExportTraceServiceRequest`.
pub static TRACES_REQUEST: Schema = msg::<
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
>(&[(1, &RESOURCE_SPANS)]);
static RESOURCE_SPANS: Schema = msg::<trace::ResourceSpans>(&[(1, &RESOURCE), (2, &SCOPE_SPANS)]);
static SCOPE_SPANS: Schema = msg::<trace::ScopeSpans>(&[(1, &SCOPE), (2, &SPAN)]);
static SPAN: Schema =
    msg::<trace::Span>(&[(9, &KEY_VALUE), (11, &EVENT), (13, &LINK), (15, &STATUS)]);
static EVENT: Schema = msg::<trace::span::Event>(&[(3, &KEY_VALUE)]);
static LINK: Schema = msg::<trace::span::Link>(&[(4, &KEY_VALUE)]);
static STATUS: Schema = msg::<trace::Status>(&[]);

/// Bytes a scalar or a packed byte may take once decoded (a `u64` in a doubled `Vec`).
const SCALAR: usize = 16;
/// prost's recursion limit: deeper messages fail to decode anyway.
const MAX_DEPTH: u32 = 100;

/// Why the bytes are not a message of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated or invalid protobuf")]
    Invalid,
    #[error("protobuf nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, WireError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or(WireError::Invalid)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::Invalid)
}

/// An upper bound of the bytes `bytes` take decoded as a message of `schema`.
pub fn decoded_size(schema: &Schema, bytes: &[u8]) -> Result<usize, WireError> {
    walk(schema, bytes, 0)
}

fn walk(schema: &Schema, b: &[u8], depth: u32) -> Result<usize, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    let mut total = schema.size.saturating_mul(2);
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let tag = u32::try_from(key >> 3).map_err(|_| WireError::Invalid)?;
        let cost = match key & 7 {
            0 => {
                varint(b, &mut i)?;
                SCALAR
            }
            1 | 5 => {
                i += if key & 7 == 1 { 8 } else { 4 };
                if i > b.len() {
                    return Err(WireError::Invalid);
                }
                SCALAR
            }
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).map_err(|_| WireError::Invalid)?;
                let end = i.checked_add(len).filter(|&e| e <= b.len());
                let body = &b[i..end.ok_or(WireError::Invalid)?];
                i += len;
                match schema.messages.iter().find(|(t, _)| *t == tag) {
                    Some((_, child)) => walk(child, body, depth + 1)?,
                    None if schema.packed.contains(&tag) => len.saturating_mul(SCALAR),
                    None => len,
                }
            }
            _ => return Err(WireError::Invalid),
        };
        total = total.saturating_add(cost);
    }
    Ok(total)
}

/// An upper bound for OTLP JSON of `bytes`: every `{` may open the largest struct (twice, for
/// `Vec` growth) and every `,` may separate two scalars of an array.
pub fn json_decoded_size(bytes: &[u8]) -> usize {
    let largest = [
        size_of::<metrics::HistogramDataPoint>(),
        size_of::<metrics::ExponentialHistogramDataPoint>(),
        size_of::<trace::Span>(),
        size_of::<metrics::NumberDataPoint>(),
        size_of::<metrics::Metric>(),
    ]
    .into_iter()
    .max()
    .unwrap_or(256);
    let (mut opens, mut commas) = (0usize, 0usize);
    for &c in bytes {
        opens += usize::from(c == b'{');
        commas += usize::from(c == b',');
    }
    bytes
        .len()
        .saturating_add(opens.saturating_mul(largest * 2))
        .saturating_add(commas.saturating_mul(SCALAR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;

    fn empty_points(n: usize) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![metrics::ResourceMetrics {
                scope_metrics: vec![metrics::ScopeMetrics {
                    metrics: vec![metrics::Metric {
                        name: "x".into(),
                        data: Some(metrics::metric::Data::Gauge(metrics::Gauge {
                            data_points: vec![metrics::NumberDataPoint::default(); n],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn empty_points_are_charged_their_struct_not_their_two_bytes() {
        let bytes = empty_points(100_000).encode_to_vec();
        let est = decoded_size(&METRICS_REQUEST, &bytes).unwrap();
        assert!(bytes.len() < 300_000, "{}", bytes.len());
        assert!(
            est >= 100_000 * size_of::<metrics::NumberDataPoint>(),
            "{est}"
        );
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert_eq!(
            decoded_size(&METRICS_REQUEST, &[0x0a, 0x05, 1]),
            Err(WireError::Invalid)
        );
        assert_eq!(
            decoded_size(&METRICS_REQUEST, &[0x0b]),
            Err(WireError::Invalid)
        );
    }
}
