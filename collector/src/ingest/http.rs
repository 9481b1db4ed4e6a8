//! OTLP/HTTP: `POST /v1/metrics` and `POST /v1/traces`, binary protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed.
//!
//! Status codes as the OTLP/HTTP specification gives them: 200 with an Export*ServiceResponse
//! (with `partial_success` when data points were refused), 400 malformed, 413 larger than
//! `max_request_bytes` after decompression, 415 other content types or encodings, 404 and 405
//! for other paths and methods. Error bodies are a `google.rpc.Status` in the request's encoding.

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
enum Encoding {
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
    // gRPC codes: INVALID_ARGUMENT 3, RESOURCE_EXHAUSTED 8, UNIMPLEMENTED 12.
    let code = match e {
        IngestError::Malformed(_) => 3,
        IngestError::TooLarge(_) => 8,
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
    reply(status, enc.content_type(), body)
}

fn status_of(e: &IngestError) -> StatusCode {
    match e {
        IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
        IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
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

/// Reads, decompresses and size-checks the body.
async fn body(req: Request<Incoming>, max: usize) -> Result<Vec<u8>, IngestError> {
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
    let raw = Limited::new(req.into_body(), max)
        .collect()
        .await
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
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err(IngestError::TooLarge(max));
    }
    Ok(out)
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
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
    let result = match body(req, ingest.max_bytes).await {
        Ok(bytes) if path == "/v1/metrics" => decode::<ExportMetricsServiceRequest>(enc, &bytes)
            .map(|r| encode(enc, &ingest.metrics(&r))),
        Ok(bytes) => decode::<ExportTraceServiceRequest>(enc, &bytes)
            .map(|r| encode(enc, &ingest.traces(&r))),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        ingest.reject(&e);
        error(enc, status_of(&e), &e)
    })
}

/// Serves `POST /v1/metrics` and `/v1/traces` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: std::sync::Arc<Ingest>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req| {
        let ingest = ingest.clone();
        async move { handle(&ingest, req).await }
    };
    headroom_service::http::serve(listener, handler, shutdown).await
}
