//! The collector's own HTTP listener (`--http-listen`): the routes ([`api`]), `/metrics`
//! ([`metrics`]) and the status page ([`page`]).

mod api;
mod metrics;
mod page;

use api::handle;
pub use metrics::encode_fleet as metrics_text;

use crate::findings::Findings;
use crate::fleet::LeanCache;
use headroom_service::http::Listener;
use headroom_service::web::WebAuth;
use std::future::Future;
use std::sync::Arc;

/// Most requests building a snapshot at a time (`/healthz` and `/readyz` are not counted):
/// each holds a copy of (part of) the fleet and its encoding, so 64 parallel GETs must not
/// make 64 copies. Further ones get 429 with Retry-After.
pub const MAX_CONCURRENT: usize = 4;

/// Serves the routes on `listener` (TLS when it has one; behind `auth` when there is one, but
/// for `/healthz` and `/readyz`) until `shutdown`. Snapshots and their encodings of a large
/// fleet take a while: they run off the runtime's workers, so OTLP ingest never waits behind a
/// scrape.
pub async fn serve(
    listener: Listener,
    auth: Option<Arc<WebAuth>>,
    lean: Arc<LeanCache>,
    findings: Arc<Findings>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let (lean, findings, slots) = (lean.clone(), findings.clone(), slots.clone());
        async move {
            let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
            let slot = slots.try_acquire_owned();
            if slot.is_err() && !probe {
                let mut r = headroom_service::http::reply(
                    hyper::StatusCode::TOO_MANY_REQUESTS,
                    headroom_service::http::TEXT,
                    format!("busy: {MAX_CONCURRENT} requests in progress; retry after 1s\n"),
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                return r;
            }
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                handle(&lean, &findings, &req)
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(message = "API handler failed.", error = %e);
                headroom_service::http::reply(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    headroom_service::http::TEXT,
                    "internal error\n",
                )
            })
        }
    };
    let handler = headroom_service::web::guard(auth, handler);
    headroom_service::http::serve(listener, handler, shutdown).await
}
