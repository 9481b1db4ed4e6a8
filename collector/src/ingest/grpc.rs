//! OTLP/gRPC: the `opentelemetry.proto.collector.{metrics,trace}.v1` Export calls, served by
//! hand over tonic's unary machinery so every request is bounded before it costs memory:
//!
//! - before the body is read, the request needs a slot (`max_concurrent_requests`) and memory
//!   below the high-water mark, else RESOURCE_EXHAUSTED;
//! - tonic reads the 5-byte length prefix and refuses a frame over `max_request_bytes` before
//!   it reserves a buffer for it (OUT_OF_RANGE, which a layer here rewrites to
//!   RESOURCE_EXHAUSTED as OTLP asks), and caps gzip by its output at the same size;
//! - the codec then works out the decoded size from the wire bytes ([`super::wire`]) and
//!   reserves it in the memory budget before prost decodes anything: RESOURCE_EXHAUSTED
//!   when it does not fit.
//!
//! Before any of that reads the message, the `authorization` metadata must hold a valid bearer
//! token (UNAUTHENTICATED, or UNAVAILABLE when it cannot be verified now: [`crate::auth`]).
//!
//! Malformed protobuf is INVALID_ARGUMENT; tonic's own INTERNAL (a bad frame) becomes
//! INVALID_ARGUMENT too (the handlers never answer INTERNAL themselves).

use super::budget::Admission;
use super::wire::{self, Schema};
use super::{Ingest, IngestError};
use crate::auth::Principal;
use headroom_service::http::Listener;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::bytes::Buf;
use prost::Message;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::{Request, Response, Status};

/// A decoded request with the slot and memory reserved for it, given back when it is dropped.
pub struct Admitted<T> {
    msg: T,
    _admission: Admission,
}

fn status(e: &IngestError) -> Status {
    match e {
        IngestError::Malformed(m) => Status::invalid_argument(m.clone()),
        IngestError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
        IngestError::AuthUnavailable(m, _) => Status::unavailable(m.clone()),
        _ => Status::resource_exhausted(e.to_string()),
    }
}

struct BoundedCodec<Req, Resp> {
    ingest: Arc<Ingest>,
    schema: &'static Schema,
    admission: Option<Admission>,
    _types: PhantomData<fn(Req) -> Resp>,
}

struct BoundedDecoder<Req> {
    ingest: Arc<Ingest>,
    schema: &'static Schema,
    admission: Option<Admission>,
    _types: PhantomData<fn() -> Req>,
}

struct ProstEncoder<Resp>(PhantomData<fn(Resp)>);

impl<Resp: Message> Encoder for ProstEncoder<Resp> {
    type Item = Resp;
    type Error = Status;
    fn encode(&mut self, item: Resp, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

impl<Req: Message + Default> Decoder for BoundedDecoder<Req> {
    type Item = Admitted<Req>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Admitted<Req>>, Status> {
        let Some(mut admission) = self.admission.take() else {
            // Unary: one message per call; a second one is a protocol error.
            return Err(Status::invalid_argument("one message per Export call"));
        };
        // DecodeBuf is one contiguous buffer of exactly this message's bytes.
        let bytes = buf.chunk();
        let refuse = |e: IngestError| {
            self.ingest.reject(&e);
            status(&e)
        };
        let decoded = wire::decoded_size(self.schema, bytes)
            .map_err(|e| IngestError::Malformed(format!("invalid protobuf: {e}")))
            .map_err(refuse)?;
        // The message's bytes stay in tonic's buffer while it is decoded: reserved with it.
        self.ingest
            .reserve(&mut admission, decoded.saturating_add(bytes.len()))
            .map_err(refuse)?;
        let msg = Req::decode(buf)
            .map_err(|e| IngestError::Malformed(format!("invalid protobuf: {e}")))
            .map_err(refuse)?;
        Ok(Some(Admitted {
            msg,
            _admission: admission,
        }))
    }
}

impl<Req, Resp> Codec for BoundedCodec<Req, Resp>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Encode = Resp;
    type Decode = Admitted<Req>;
    type Encoder = ProstEncoder<Resp>;
    type Decoder = BoundedDecoder<Req>;
    fn encoder(&mut self) -> ProstEncoder<Resp> {
        ProstEncoder(PhantomData)
    }
    fn decoder(&mut self) -> BoundedDecoder<Req> {
        BoundedDecoder {
            ingest: self.ingest.clone(),
            schema: self.schema,
            admission: self.admission.take(),
            _types: PhantomData,
        }
    }
}

/// The Export call's handler, for one authenticated sender.
struct Unary<Req, Resp> {
    ingest: Arc<Ingest>,
    who: Principal,
    take: Take<Req, Resp>,
}

type Take<Req, Resp> = fn(&Ingest, &Principal, &Req) -> Resp;

impl<Req: Send + 'static, Resp: Send + 'static> tonic::server::UnaryService<Admitted<Req>>
    for Unary<Req, Resp>
{
    type Response = Resp;
    type Future = std::future::Ready<Result<Response<Resp>, Status>>;
    fn call(&mut self, request: Request<Admitted<Req>>) -> Self::Future {
        let admitted = request.into_inner();
        let resp = (self.take)(&self.ingest, &self.who, &admitted.msg);
        drop(admitted);
        std::future::ready(Ok(Response::new(resp)))
    }
}

/// One OTLP service (one Export method at `path`).
pub struct Otlp<Req, Resp> {
    ingest: Arc<Ingest>,
    schema: &'static Schema,
    path: &'static str,
    take: Take<Req, Resp>,
}

impl<Req, Resp> Clone for Otlp<Req, Resp> {
    fn clone(&self) -> Self {
        Otlp {
            ingest: self.ingest.clone(),
            schema: self.schema,
            path: self.path,
            take: self.take,
        }
    }
}

fn gzip() -> EnabledCompressionEncodings {
    let mut e = EnabledCompressionEncodings::default();
    e.enable(CompressionEncoding::Gzip);
    e
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<Req, Resp, B> tower::Service<hyper::Request<B>> for Otlp<Req, Resp>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = hyper::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        if req.uri().path() != self.path {
            let s = Status::unimplemented(format!("no method {}", req.uri().path()));
            return Box::pin(std::future::ready(Ok(s.into_http())));
        }
        let admission = match self.ingest.admit() {
            Ok(a) => a,
            Err(e) => return Box::pin(std::future::ready(Ok(status(&e).into_http()))),
        };
        let (ingest, schema, take) = (self.ingest.clone(), self.schema, self.take);
        Box::pin(async move {
            // Before the message is read: an unauthenticated sender costs no decoding.
            let authorization = req.headers().get("authorization").map(|v| v.as_bytes());
            let who = match ingest.authenticate(authorization).await {
                Ok(w) => w,
                Err(e) => return Ok(status(&e).into_http()),
            };
            let codec = BoundedCodec::<Req, Resp> {
                ingest: ingest.clone(),
                schema,
                admission: Some(admission),
                _types: PhantomData,
            };
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_compression_config(gzip(), gzip())
                .apply_max_message_size_config(Some(ingest.max_bytes), None);
            let method = Unary { ingest, who, take };
            Ok(grpc.unary(method, req).await)
        })
    }
}

impl tonic::server::NamedService
    for Otlp<ExportMetricsServiceRequest, ExportMetricsServiceResponse>
{
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl tonic::server::NamedService for Otlp<ExportTraceServiceRequest, ExportTraceServiceResponse> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
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

/// A TLS connection as tonic's server takes it (tonic's own impl would pull in its TLS
/// features, and aws-lc-rs with them).
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Serves OTLP/gRPC on `listener` (TLS when it has one) until `shutdown` completes.
pub async fn serve(
    listener: Listener,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let metrics = Otlp {
        ingest: ingest.clone(),
        schema: &wire::METRICS_REQUEST,
        path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        take: Ingest::metrics,
    };
    let traces = Otlp {
        ingest,
        schema: &wire::TRACES_REQUEST,
        path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        take: Ingest::traces,
    };
    let router = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(metrics)
        .add_service(traces);
    match listener.tls {
        None => {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener.tcp),
                    shutdown,
                )
                .await
        }
        Some(tls) => {
            use tokio_stream::StreamExt;
            let rx =
                headroom_service::tls::incoming(listener.tcp, tls, headroom_service::tls::Alpn::H2);
            let conns = tokio_stream::wrappers::ReceiverStream::new(rx).map(|c| c.map(TlsConn));
            router.serve_with_incoming_shutdown(conns, shutdown).await
        }
    }
}
