//! The collector's own HTTP listener (`--http-listen`): the routes ([`api`]), `/metrics`
//! ([`metrics`]) and the status page ([`page`]).

mod api;
mod metrics;
mod page;

use api::handle;

use crate::findings::Findings;
use crate::fleet::Fleet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Serves the routes on `listener` until `shutdown`. Snapshots and their encodings of a large
/// fleet take a while: they run off the runtime's workers, so OTLP ingest never waits behind a
/// scrape.
pub async fn serve(
    listener: TcpListener,
    fleet: Arc<Mutex<Fleet>>,
    findings: Arc<Findings>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let (fleet, findings) = (fleet.clone(), findings.clone());
        async move {
            tokio::task::spawn_blocking(move || handle(&fleet, &findings, &req))
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
    headroom_service::http::serve(listener, handler, shutdown).await
}
