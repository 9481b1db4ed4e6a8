//! OTLP/HTTP: `POST /v1/metrics` and `POST /v1/traces`, binary protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed.
//!
//! Status codes as the OTLP/HTTP specification gives them: 200 with an Export*ServiceResponse
//! (with `partial_success` when data points were refused), 400 malformed, 413 larger than
//! `max_request_bytes` after decompression, 415 other content types or encodings, 404 and 405
//! for other paths and methods; 429 with `Retry-After` when shed (`max_concurrent_requests` in
//! progress, or memory near `memory_limit`: checked before the body is read, and again with
//! the request's estimated decoded size before it is decoded), 413 when that estimate alone
//! is over a quarter of `memory_limit`; 401 with `WWW-Authenticate: Bearer` without a valid
//! bearer token, 503 with `Retry-After` when the token cannot be verified now (checked after
//! admission, before the body is read; see [`crate::auth`]). Error bodies are a `google.rpc.Status` in the
//! request's encoding.

use super::{Ingest, IngestError};
use headroom_service::http::{reply, Reply};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error(enc: Encoding, status: StatusCode, e: &IngestError) -> Reply {
    // gRPC codes: INVALID_ARGUMENT 3, RESOURCE_EXHAUSTED 8, UNIMPLEMENTED 12, UNAVAILABLE 14,
    // UNAUTHENTICATED 16.
    let code = match e {
        IngestError::Malformed(_) => 3,
        IngestError::TooLarge(_) | IngestError::DecodedTooLarge(_) | IngestError::Shed(_) => 8,
        IngestError::AuthUnavailable(..) => 14,
        IngestError::Unauthenticated(_) => 16,
        _ => 12,
    };
    let s = RpcStatus {
        code,
        message: e.to_string(),
    };
    let body = match enc {
        Encoding::Protobuf => s.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&s).unwrap_or_default(),
    };
    let mut r = reply(status, enc.content_type(), body);
    let h = r.headers_mut();
    match e {
        IngestError::Shed(_) => {
            h.insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(super::RETRY_AFTER_SECONDS),
            );
        }
        IngestError::AuthUnavailable(_, after) => {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            h.insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(secs.max(1)),
            );
        }
        IngestError::Unauthenticated(_) => {
            h.insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"headroom-collector\""),
            );
        }
        _ => {}
    }
    r
}

fn status_of(e: &IngestError) -> StatusCode {
    match e {
        IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
        IngestError::TooLarge(_) | IngestError::DecodedTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        IngestError::Shed(_) => StatusCode::TOO_MANY_REQUESTS,
        IngestError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        IngestError::AuthUnavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
        IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Longest a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads, decompresses and size-checks the body.
pub async fn body(req: Request<Incoming>, max: usize) -> Result<Vec<u8>, IngestError> {
    let encoding = header(&req, "content-encoding").trim().to_ascii_lowercase();
    let gzip = match encoding.as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => return Err(IngestError::UnsupportedEncoding(other.to_string())),
    };
    let declared: Option<usize> = header(&req, "content-length").parse().ok();
    if declared.is_some_and(|n| n > max) {
        return Err(IngestError::TooLarge(max));
    }
    // A slot is held while the body arrives: a sender that trickles it must not keep one.
    let collect = Limited::new(req.into_body(), max).collect();
    let raw = tokio::time::timeout(BODY_TIMEOUT, collect)
        .await
        .map_err(|_| {
            IngestError::Malformed(format!(
                "the body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                IngestError::TooLarge(max)
            } else {
                IngestError::Malformed(format!("cannot read the body: {e}"))
            }
        })?
        .to_bytes();
    if !gzip {
        return Ok(raw.to_vec());
    }
    gunzip(&raw, max)
}

/// Decompresses gzip, stopping as soon as the output passes `max` bytes.
pub fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err(IngestError::TooLarge(max));
    }
    Ok(out)
}

/// An upper bound of the bytes `bytes` take decoded (see [`super::wire`]).
pub fn decoded_size(
    schema: &super::wire::Schema,
    enc: Encoding,
    bytes: &[u8],
) -> Result<usize, IngestError> {
    match enc {
        Encoding::Protobuf => super::wire::decoded_size(schema, bytes)
            .map_err(|e| IngestError::Malformed(format!("invalid protobuf: {e}"))),
        Encoding::Json => Ok(super::wire::json_decoded_size(bytes)),
    }
}

pub fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    enc: Encoding,
    bytes: &[u8],
) -> Result<T, IngestError> {
    match enc {
        Encoding::Protobuf => {
            T::decode(bytes).map_err(|e| IngestError::Malformed(format!("invalid protobuf: {e}")))
        }
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|e| IngestError::Malformed(format!("invalid OTLP JSON: {e}"))),
    }
}

fn encode<T: Message + serde::Serialize>(enc: Encoding, msg: &T) -> Reply {
    let body = match enc {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => {
            // `{}` rather than `{"partialSuccess":null}` when everything was accepted.
            let mut v = serde_json::to_value(msg).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.retain(|_, f| !f.is_null());
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec())
        }
    };
    reply(StatusCode::OK, enc.content_type(), body)
}

/// Handles one request on the OTLP/HTTP listener.
pub async fn handle(ingest: &Ingest, req: Request<Incoming>) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = req.uri().path().to_string();
    if path != "/v1/metrics" && path != "/v1/traces" {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            b"not found; OTLP/HTTP takes POST /v1/metrics and /v1/traces\n".to_vec(),
        );
    }
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, b"use POST\n".to_vec());
    }
    let ct = header(&req, "content-type").to_string();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let enc = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            let e = IngestError::UnsupportedMediaType(ct);
            ingest.reject(&e);
            return error(Encoding::Json, status_of(&e), &e);
        }
    };
    let mut admission = match ingest.admit() {
        Ok(a) => a,
        Err(e) => return error(enc, status_of(&e), &e),
    };
    // Before the body is read: an unauthenticated sender costs no decoding.
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let who = match ingest.authenticate(authorization.as_deref()).await {
        Ok(w) => w,
        Err(e) => return error(enc, status_of(&e), &e),
    };
    let result = async {
        let bytes = body(req, ingest.max_bytes).await?;
        let metrics = path == "/v1/metrics";
        let schema = if metrics {
            &super::wire::METRICS_REQUEST
        } else {
            &super::wire::TRACES_REQUEST
        };
        // The body itself stays in memory while it is decoded: reserved with it.
        let decoded = decoded_size(schema, enc, &bytes)?;
        ingest.reserve(&mut admission, decoded.saturating_add(bytes.len()))?;
        if metrics {
            decode::<ExportMetricsServiceRequest>(enc, &bytes)
                .map(|r| encode(enc, &ingest.metrics(&who, &r)))
        } else {
            decode::<ExportTraceServiceRequest>(enc, &bytes)
                .map(|r| encode(enc, &ingest.traces(&who, &r)))
        }
    }
    .await;
    drop(admission);
    result.unwrap_or_else(|e| {
        ingest.reject(&e);
        error(enc, status_of(&e), &e)
    })
}

/// Serves `POST /v1/metrics` and `/v1/traces` on `listener` until `shutdown`.
pub async fn serve(
    listener: headroom_service::http::Listener,
    ingest: std::sync::Arc<Ingest>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req| {
        let ingest = ingest.clone();
        async move { handle(&ingest, req).await }
    };
    headroom_service::http::serve(listener, handler, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::wire::{self, METRICS_REQUEST, TRACES_REQUEST};
    use proptest::prelude::*;

    fn points(r: &ExportMetricsServiceRequest) -> usize {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        r.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            })
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes as OTLP protobuf: no panic; what decodes was estimated at no less
        /// than its data points' structs.
        #[test]
        fn protobuf_decoders_never_panic_and_bound_what_decodes(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let est = wire::decoded_size(&METRICS_REQUEST, &b);
            if let Ok(r) = decode::<ExportMetricsServiceRequest>(Encoding::Protobuf, &b) {
                let est = est.expect("what prost decodes, the walk reads");
                prop_assert!(est >= points(&r) * std::mem::size_of::<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint>());
            }
            let est = wire::decoded_size(&TRACES_REQUEST, &b);
            if decode::<ExportTraceServiceRequest>(Encoding::Protobuf, &b).is_ok() {
                prop_assert!(est.is_ok());
            }
        }

        /// Arbitrary bytes (and arbitrary JSON-ish text) as OTLP JSON: no panic.
        #[test]
        fn json_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..2048), s in "[{}\\[\\],:\"a-zA-Z0-9 ]{0,512}") {
            for bytes in [&b[..], s.as_bytes()] {
                let _ = decode::<ExportMetricsServiceRequest>(Encoding::Json, bytes);
                let _ = decode::<ExportTraceServiceRequest>(Encoding::Json, bytes);
                prop_assert!(wire::json_decoded_size(bytes) >= bytes.len());
            }
        }

        /// Arbitrary bytes as gzip, and gzip of arbitrary bytes: no panic, never more than the
        /// cap out.
        #[test]
        fn gzip_never_panics_and_is_capped_by_output(b in proptest::collection::vec(any::<u8>(), 0..4096), max in 1usize..8192) {
            if let Ok(out) = gunzip(&b, max) {
                prop_assert!(out.len() <= max);
            }
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &b).unwrap();
            let z = e.finish().unwrap();
            match gunzip(&z, max) {
                Ok(out) => prop_assert_eq!(out, b),
                Err(e) => prop_assert!(b.len() > max && e == IngestError::TooLarge(max)),
            }
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_cap() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &vec![0u8; 64 << 20]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(gunzip(&z, 1 << 20), Err(IngestError::TooLarge(1 << 20)));
    }
}
