//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use crate::export::prometheus::{Metrics, CONTENT_TYPE};
use crate::sources::linklocal::meter::Meter;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct State {
    pub metrics: Metrics,
    pub meter: Meter,
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, state.metrics.encode()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if state.meter.capturing() => reply(StatusCode::OK, TEXT, "capturing\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not capturing on any interface\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Serves until `shutdown` completes, then lets open requests finish (at most 5 s).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = match conn {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::warn!(message = "Accept failed.", %error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let svc = service_fn(move |req| {
                    let resp = route(&state, &req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
