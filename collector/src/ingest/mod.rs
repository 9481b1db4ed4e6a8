//! OTLP receivers (gRPC and HTTP) and what they share: decoding limits and the hand-off into
//! the fleet model. Any OTLP sender is accepted, not only headroom agents.

pub mod budget;
pub mod grpc;
pub mod http;
pub mod wire;

use crate::fleet::{Applied, Fleet};
use budget::{Admission, Budget, Shed, RETRY_AFTER_SECONDS};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Why a request was refused (also the `reason` label of the rejection counter).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IngestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request body larger than {0} bytes (after decompression)")]
    TooLarge(usize),
    #[error("unsupported content type '{0}': use application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding '{0}': use gzip or none")]
    UnsupportedEncoding(String),
    #[error("request would take more than {0} bytes decoded (a quarter of memory_limit); send smaller batches")]
    DecodedTooLarge(usize),
    #[error("collector busy ({}); retry after {RETRY_AFTER_SECONDS}s", match .0 { Shed::Concurrency => "max_concurrent_requests in progress", Shed::Memory => "over memory_limit" })]
    Shed(Shed),
}

impl IngestError {
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::TooLarge(_) => "too_large",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::DecodedTooLarge(_) => "decoded_too_large",
            IngestError::Shed(Shed::Concurrency) => "shed_concurrency",
            IngestError::Shed(Shed::Memory) => "shed_memory",
        }
    }
}

/// The shared ingest state: the fleet, the body size cap and the budget.
pub struct Ingest {
    pub fleet: Arc<Mutex<Fleet>>,
    /// Largest body after decompression.
    pub max_bytes: usize,
    /// Where received spans go on to, if anywhere.
    pub forward: Option<crate::forward::Forwarder>,
    pub budget: Budget,
}

impl Ingest {
    pub fn new(
        fleet: Arc<Mutex<Fleet>>,
        max_bytes: usize,
        forward: Option<crate::forward::Forwarder>,
        budget: Budget,
    ) -> Self {
        Ingest {
            fleet,
            max_bytes,
            forward,
            budget,
        }
    }

    /// A slot for one request before its body is read; shed (and counted) when none is free
    /// or memory is near the limit.
    pub fn admit(&self) -> Result<Admission, IngestError> {
        self.budget.admit().map_err(|s| {
            let e = IngestError::Shed(s);
            self.reject(&e);
            e
        })
    }

    /// Before decoding: the request's estimated decoded size fits one request's share and the
    /// memory left, else refused (not counted here: the caller rejects).
    pub fn reserve(&self, admission: &mut Admission, decoded: usize) -> Result<(), IngestError> {
        if decoded > self.budget.max_decoded() {
            return Err(IngestError::DecodedTooLarge(self.budget.max_decoded()));
        }
        self.budget
            .reserve(admission, decoded)
            .map_err(IngestError::Shed)
    }

    fn fleet(&self) -> std::sync::MutexGuard<'_, Fleet> {
        // A panic while holding the lock cannot leave the model half-updated in a way that
        // matters more than losing the collector, so keep serving.
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reject(&self, e: &IngestError) {
        tracing::debug!(message = "Request refused.", error = %e);
        self.fleet().reject_request(e.reason());
    }

    pub fn metrics(&self, req: &ExportMetricsServiceRequest) -> ExportMetricsServiceResponse {
        let Applied { rejected, .. } = self.fleet().apply_metrics(req, SystemTime::now());
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: "data points over a cardinality limit (series per metric; metrics, interfaces, listeners or probes per node; nodes; top names), without a value or a needed attribute, or older than the history kept".into(),
            }),
        }
    }

    pub fn traces(&self, req: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        let Applied { rejected, .. } = self.fleet().apply_traces(req, SystemTime::now());
        if let Some(f) = &self.forward {
            f.send(req);
        }
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: "spans from nodes over the max_nodes limit".into(),
            }),
        }
    }
}
