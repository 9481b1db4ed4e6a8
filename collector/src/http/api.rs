//! The collector's own HTTP endpoints: `GET /api/v1/fleet` (JSON, a page of at most 1000
//! nodes: `?limit=N&after=CLUSTER/NODE` for the next, `?node=NAME` for one, `?history=false`
//! leaves out each interface's list of windows), `GET /api/v1/findings` (JSON), `/metrics`, `/`
//! (status page), `/healthz`, `/readyz`. Every snapshot is built from a [`crate::fleet::View`]
//! after the fleet's lock is let go; `/metrics` and the page read the kept lean snapshot
//! ([`LeanCache`]), the page adding the windows of the interfaces it shows.

use super::{metrics, page};
use crate::findings::Findings;
use crate::fleet::{LeanCache, PageQuery};
use headroom_service::http::{reply, Reply, JSON, TEXT};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nodes in a page of `/api/v1/fleet` unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_PAGE: usize = 1000;
pub const MAX_PAGE: usize = 5000;

/// `%XX` and `+` decoded; None for a bad escape or bytes that are not UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `?node=&cluster=&after=CLUSTER/NODE&limit=N&history=false`; the error names the parameter.
fn page_query(query: &str) -> Result<PageQuery, String> {
    let mut q = PageQuery {
        node: None,
        cluster: None,
        after: None,
        limit: DEFAULT_PAGE,
        history: true,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = unescape(v).ok_or_else(|| format!("invalid escape in {k}"))?;
        match k {
            "node" => q.node = Some(v),
            "cluster" => q.cluster = Some(v),
            "after" => {
                let (c, n) = v
                    .split_once('/')
                    .ok_or("after takes CLUSTER/NODE, the next cursor of the previous page")?;
                q.after = Some((c.to_string(), n.to_string()));
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or(format!("limit takes 1 to {MAX_PAGE} nodes"))?;
            }
            "history" => q.history = v != "false",
            _ => {}
        }
    }
    Ok(q)
}

/// Handles one request on the API listener.
pub fn handle(lean: &LeanCache, findings: &Findings, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    let now = SystemTime::now();
    let view = || lean.view();
    match req.uri().path() {
        "/api/v1/fleet" => match page_query(req.uri().query().unwrap_or("")) {
            Ok(q) => reply(
                StatusCode::OK,
                JSON,
                serde_json::to_string(&view().page(now, &q))
                    .expect("the snapshot always serializes"),
            ),
            Err(why) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{why}\n")),
        },
        "/api/v1/findings" => reply(StatusCode::OK, JSON, findings.json(now)),
        "/metrics" => reply(
            StatusCode::OK,
            headroom_signals::TEXT_CONTENT_TYPE,
            lean.text(now, metrics::encode_fleet).to_string()
                + &metrics::encode_ingest(&lean.stats())
                + &metrics::encode_findings(findings),
        ),
        "/" => {
            let now_ns = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            let lean = lean.get(now);
            let view = view();
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&lean.snapshot, now_ns, findings, &|c, n, i| {
                    view.interface_windows(&c.name, &n.name, &i.interface, i.eni_id.as_deref())
                }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_parse_and_bad_ones_name_the_parameter() {
        let q = page_query("node=ip-10-0-0-1.ec2.internal&history=false").unwrap();
        assert_eq!(q.node.as_deref(), Some("ip-10-0-0-1.ec2.internal"));
        assert!(!q.history);
        let q = page_query("after=prod%2Fx/n%201&limit=10").unwrap();
        assert_eq!(q.after, Some(("prod".into(), "x/n 1".into())));
        assert_eq!(q.limit, 10);
        assert_eq!(page_query("").unwrap().limit, DEFAULT_PAGE);
        assert!(page_query("limit=0").unwrap_err().contains("limit"));
        assert!(page_query("limit=99999").unwrap_err().contains("limit"));
        assert!(page_query("after=nocluster").unwrap_err().contains("after"));
        assert!(page_query("node=%zz").unwrap_err().contains("node"));
    }
}
