//! The entry point of the cargo-fuzz targets (`collector/fuzz`): an OTLP/HTTP body as a hostile
//! sender can make it, through what the collector does with it before and after decoding
//! (gzip capped by its output, the decoded-size estimate and its refusal, the decoder, the
//! fleet model and a snapshot of it). Not part of the collector's interface.

use crate::fleet::{Fleet, Limits};
use crate::ingest::{http, wire};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::time::{Duration, UNIX_EPOCH};

/// The largest body after decompression the fuzzer feeds on (the collector's default is 8 MiB).
const MAX_BODY: usize = 1 << 20;
/// The decoded size over which the collector refuses a request (a quarter of a 512 MiB limit).
const MAX_DECODED: usize = 128 << 20;

/// `flags` bit 0: JSON (else protobuf); bit 1: gzip; bit 2: traces (else metrics).
#[doc(hidden)]
pub fn otlp_http_body(flags: u8, body: &[u8]) {
    let enc = if flags & 1 == 0 {
        http::Encoding::Protobuf
    } else {
        http::Encoding::Json
    };
    let raw = if flags & 2 != 0 {
        match http::gunzip(body, MAX_BODY) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        body.to_vec()
    };
    let traces = flags & 4 != 0;
    let schema = if traces {
        &wire::TRACES_REQUEST
    } else {
        &wire::METRICS_REQUEST
    };
    match http::decoded_size(schema, enc, &raw) {
        Ok(n) if n <= MAX_DECODED => {}
        _ => return,
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut fleet = Fleet::new(Limits::default());
    if traces {
        if let Ok(req) = http::decode::<ExportTraceServiceRequest>(enc, &raw) {
            fleet.apply_traces(&req, now);
        }
    } else if let Ok(req) = http::decode::<ExportMetricsServiceRequest>(enc, &raw) {
        fleet.apply_metrics(&req, now);
    }
    fleet.expire(now + Duration::from_secs(30));
    let _ = serde_json::to_vec(&fleet.snapshot(now));
}

#[cfg(test)]
mod tests {
    /// The entry point takes any flags and bytes, and a real agent-shaped request.
    #[test]
    fn takes_anything() {
        for flags in 0..8u8 {
            super::otlp_http_body(flags, b"");
            super::otlp_http_body(flags, &[0xff; 64]);
            super::otlp_http_body(flags, br#"{"resourceMetrics":[{"scopeMetrics":[{}]}]}"#);
        }
    }
}
