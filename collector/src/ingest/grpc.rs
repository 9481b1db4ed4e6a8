//! OTLP/gRPC: opentelemetry-proto's tonic services for metrics and traces.
//!
//! Oversized payloads get RESOURCE_EXHAUSTED, as the OTLP specification asks: up to twice
//! `max_request_bytes` the handler measures the decoded message; beyond that tonic's decoder
//! refuses the frame before decoding it with OUT_OF_RANGE, which a layer here rewrites to
//! RESOURCE_EXHAUSTED (the services never answer OUT_OF_RANGE otherwise). Malformed protobuf
//! makes tonic answer INTERNAL; the same layer turns that into INVALID_ARGUMENT, the OTLP code
//! for a malformed request (the handlers never answer INTERNAL themselves).

use super::Ingest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

struct Metrics(Arc<Ingest>);
struct Traces(Arc<Ingest>);

fn too_large(ingest: &Ingest, len: usize) -> Option<Status> {
    (len > ingest.max_bytes).then(|| {
        let e = super::IngestError::TooLarge(ingest.max_bytes);
        ingest.reject(&e);
        Status::resource_exhausted(e.to_string())
    })
}

/// One export: refused when larger than the limit, else taken.
fn export<T: Message, R>(
    ingest: &Ingest,
    request: Request<T>,
    take: fn(&Ingest, &T) -> R,
) -> Result<Response<R>, Status> {
    let req = request.into_inner();
    if let Some(s) = too_large(ingest, req.encoded_len()) {
        return Err(s);
    }
    Ok(Response::new(take(ingest, &req)))
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        export(&self.0, request, Ingest::metrics)
    }
}

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        export(&self.0, request, Ingest::traces)
    }
}

/// tonic's decoder answers an over-long frame with OUT_OF_RANGE and undecodable bytes with
/// INTERNAL, in a trailers-only response; OTLP asks for RESOURCE_EXHAUSTED and
/// INVALID_ARGUMENT.
fn otlp_status_codes<B>(mut resp: hyper::Response<B>) -> hyper::Response<B> {
    let h = resp.headers_mut();
    let code = match h.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("11") => "8",
        Some("13") => "3",
        _ => return resp,
    };
    h.insert("grpc-status", hyper::header::HeaderValue::from_static(code));
    resp
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let hard_cap = ingest.max_bytes.saturating_mul(2);
    let metrics = MetricsServiceServer::new(Metrics(ingest.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(hard_cap);
    let traces = TraceServiceServer::new(Traces(ingest))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(hard_cap);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(metrics)
        .add_service(traces)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
