//! The collector's own HTTP endpoints: `GET /api/v1/fleet` (JSON; `?history=false` leaves out
//! each interface's list of windows), `GET /api/v1/findings` (JSON), `/metrics`, `/` (status
//! page), `/healthz`, `/readyz`.

use super::{metrics, page};
use crate::findings::Findings;
use crate::fleet::Fleet;
use headroom_service::http::{reply, Reply, JSON, TEXT};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Handles one request on the API listener.
pub fn handle(fleet: &Arc<Mutex<Fleet>>, findings: &Findings, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    let now = SystemTime::now();
    let snapshot_with = |history: bool| {
        fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot_with(now, history)
    };
    let snapshot = || snapshot_with(true);
    let history = !req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "history=false"));
    match req.uri().path() {
        "/api/v1/fleet" => reply(
            StatusCode::OK,
            JSON,
            serde_json::to_string(&snapshot_with(history)).expect("the snapshot always serializes"),
        ),
        "/api/v1/findings" => reply(StatusCode::OK, JSON, findings.json(now)),
        "/metrics" => reply(
            StatusCode::OK,
            headroom_signals::TEXT_CONTENT_TYPE,
            metrics::encode(
                &fleet
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .snapshot_lean(now),
            ) + &metrics::encode_findings(findings),
        ),
        "/" => {
            let now_ns = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&snapshot(), now_ns, findings),
            )
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        // Every listener is bound before this one serves, so serving means ready.
        "/readyz" => reply(StatusCode::OK, TEXT, "ready\n"),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /, /api/v1/fleet, /api/v1/findings, /metrics, /healthz or /readyz\n",
        ),
    }
}
