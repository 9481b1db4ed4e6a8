//! OTLP receivers (gRPC and HTTP) and what they share: decoding limits and the hand-off into
//! the fleet model. Any OTLP sender is accepted, not only headroom agents.

pub mod budget;
pub mod grpc;
pub mod http;
pub mod wire;

use crate::auth::{Auth, AuthError, Principal};
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
    /// No valid bearer token: 401 / UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token could not be verified now: 503 / UNAVAILABLE with Retry-After.
    #[error("{0}")]
    AuthUnavailable(String, std::time::Duration),
}

impl From<AuthError> for IngestError {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Unauthenticated(_) => IngestError::Unauthenticated(e.to_string()),
            AuthError::Unavailable { retry_after, .. } => {
                IngestError::AuthUnavailable(e.to_string(), *retry_after)
            }
        }
    }
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
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::AuthUnavailable(..) => "auth_unavailable",
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
    /// Who may send, and what each sender may write.
    pub auth: Auth,
}

impl Ingest {
    pub fn new(
        fleet: Arc<Mutex<Fleet>>,
        max_bytes: usize,
        forward: Option<crate::forward::Forwarder>,
        budget: Budget,
        auth: Auth,
    ) -> Self {
        Ingest {
            fleet,
            max_bytes,
            forward,
            budget,
            auth,
        }
    }

    /// The sender of a request with this `Authorization` value; refused ones are counted.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, IngestError> {
        self.auth.authenticate(authorization).await.map_err(|e| {
            let e = IngestError::from(e);
            self.reject(&e);
            e
        })
    }

    /// What `who` may write, logging (rate-limited) what it may not.
    fn allow<'a>(
        &'a self,
        who: &'a Principal,
    ) -> impl Fn(&str, &str) -> Result<(), &'static str> + 'a {
        move |cluster, node| {
            self.auth.allows(who, cluster, node).inspect_err(|reason| {
                self.auth.log_refused(who, reason, cluster, node);
            })
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

    pub fn metrics(
        &self,
        who: &Principal,
        req: &ExportMetricsServiceRequest,
    ) -> ExportMetricsServiceResponse {
        let allow = self.allow(who);
        let Applied { rejected, .. } =
            self.fleet()
                .apply_metrics_as(req, SystemTime::now(), &allow);
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: "data points of a node or cluster the sender's token does not allow, over a cardinality limit (series per metric; metrics, interfaces, listeners or probes per node; nodes; top names), without a value or a needed attribute, or older than the history kept".into(),
            }),
        }
    }

    pub fn traces(
        &self,
        who: &Principal,
        req: &ExportTraceServiceRequest,
    ) -> ExportTraceServiceResponse {
        let allow = self.allow(who);
        let Applied { rejected, .. } = self.fleet().apply_traces_as(req, SystemTime::now(), &allow);
        if let Some(f) = &self.forward {
            if rejected == 0 {
                f.send(req);
            } else {
                // Only what the sender may write goes on.
                let mut kept = req.clone();
                kept.resource_spans.retain(|rs| {
                    let res = crate::fleet::otlp::resource_attributes(rs.resource.as_ref());
                    let (cluster, node) = crate::fleet::otlp::identity(&res);
                    self.auth.allows(who, &cluster, &node).is_ok()
                });
                if !kept.resource_spans.is_empty() {
                    f.send(&kept);
                }
            }
        }
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: "spans of a node or cluster the sender's token does not allow, or from nodes over the max_nodes limit".into(),
            }),
        }
    }
}
