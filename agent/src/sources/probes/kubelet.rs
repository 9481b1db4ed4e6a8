//! The kubelet's own view of its probes: `prober_probe_total` from `/metrics/probes`, scraped
//! with the service account's token, so the report can set the kubelet's counts beside the
//! shadow results (the kubelet counts results, not latencies, and never a timeout's duration).

use crate::sources::probes::spec::Kind;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// namespace, pod, container, probe kind.
pub type Key = (String, String, String, Kind);

/// The kubelet's probe results in a window (`prober_probe_total` by result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KubeletCounts {
    pub successful: u64,
    pub failed: u64,
    pub unknown: u64,
}

impl KubeletCounts {
    fn minus(self, base: KubeletCounts) -> KubeletCounts {
        KubeletCounts {
            successful: self.successful.saturating_sub(base.successful),
            failed: self.failed.saturating_sub(base.failed),
            unknown: self.unknown.saturating_sub(base.unknown),
        }
    }
}

fn labels(text: &str) -> HashMap<&str, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(name.trim_start_matches(',').trim(), value);
        rest = &after[end..];
    }
    out
}

/// Pure: `prober_probe_total` samples of a Prometheus text exposition, summed per probe.
/// Lines it does not understand are skipped; it never panics.
pub fn parse(text: &str) -> HashMap<Key, KubeletCounts> {
    let mut out: HashMap<Key, KubeletCounts> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("prober_probe_total{") else {
            continue;
        };
        let Some((ls, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let l = labels(ls);
        let kind = match l
            .get("probe_type")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("readiness") => Kind::Readiness,
            Some("liveness") => Kind::Liveness,
            Some("startup") => Kind::Startup,
            _ => continue,
        };
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        let key = (get("namespace"), get("pod"), get("container"), kind);
        let c = out.entry(key).or_default();
        let n = v.max(0.0) as u64;
        match l.get("result").map(String::as_str) {
            Some("successful") => c.successful += n,
            Some("failed") => c.failed += n,
            Some("unknown") => c.unknown += n,
            _ => {}
        }
    }
    out
}

#[derive(Debug, Default)]
struct State {
    latest: Option<HashMap<Key, KubeletCounts>>,
    base: HashMap<Key, KubeletCounts>,
}

/// Scraped counters, shared with the report builder. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KubeletView(Arc<Mutex<State>>);

impl KubeletView {
    fn store(&self, counts: HashMap<Key, KubeletCounts>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.latest.is_none() {
            // Counts before the first scrape belong to no window of ours.
            s.base = counts.clone();
        }
        s.latest = Some(counts);
    }

    /// The kubelet's counts since the last call, per probe; None until a scrape succeeded.
    pub fn window(&self) -> Option<HashMap<Key, KubeletCounts>> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let latest = s.latest.clone()?;
        let out = latest
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.minus(s.base.get(k).copied().unwrap_or_default()),
                )
            })
            .collect();
        s.base = latest;
        Some(out)
    }
}

/// GET `url` (http or https without certificate checks: the kubelet's serving certificate is
/// usually self-signed) with a bearer token; the body on 200.
pub async fn get(url: &str, token: Option<&str>) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url}"))?
        .to_string();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let mut req = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(
            hyper::header::USER_AGENT,
            crate::sources::probes::shadow::USER_AGENT,
        )
        .header(hyper::header::CONNECTION, "close");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    if tls {
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("invalid host {host}: {e}"))?,
        };
        let s = tokio_rustls::TlsConnector::from(crate::sources::probes::shadow::tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        send(TokioIo::new(s), req).await
    } else {
        send(TokioIo::new(stream), req).await
    }
}

async fn send<I>(io: I, req: Request<Empty<Bytes>>) -> Result<String, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    conn.abort();
    if !status.is_success() {
        return Err(format!(
            "HTTP status {status} (the service account needs get on nodes/metrics)"
        ));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Scrapes `url` every `interval` until cancelled. A failure is logged once until it recovers.
pub async fn run(
    url: String,
    token_file: String,
    interval: Duration,
    view: KubeletView,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let token = std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_string());
        let r = tokio::time::timeout(Duration::from_secs(5), get(&url, token.as_deref())).await;
        match r.unwrap_or_else(|_| Err("timed out after 5s".into())) {
            Ok(text) => {
                if failing {
                    tracing::info!(message = "Kubelet probe metrics readable again.", %url);
                }
                failing = false;
                view.store(parse(&text));
            }
            Err(error) => {
                if !failing {
                    tracing::info!(message = "Cannot read the kubelet's probe metrics; the report shows no kubelet counts.", %url, %error);
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prober_probe_total() {
        let text = r#"# HELP prober_probe_total [ALPHA] Cumulative number of a liveness, readiness or startup probe for a container by result.
# TYPE prober_probe_total counter
prober_probe_total{container="app",namespace="shop",pod="web",pod_uid="u1",probe_type="Readiness",result="successful"} 120
prober_probe_total{container="app",namespace="shop",pod="web",pod_uid="u1",probe_type="Readiness",result="failed"} 3
prober_probe_total{container="app",namespace="shop",pod="web",pod_uid="u1",probe_type="Liveness",result="unknown"} 1
prober_probe_total{container="a\"b",namespace="x",pod="p",pod_uid="u",probe_type="Startup",result="successful"} 1e+00
prober_probe_total{broken
prober_probe_total{probe_type="Other",result="failed"} 9
prober_probe_duration_seconds_bucket{le="0.1"} 5
"#;
        let m = parse(text);
        assert_eq!(m.len(), 3);
        let key = |c: &str, ns: &str, p: &str, k| (ns.to_string(), p.to_string(), c.to_string(), k);
        assert_eq!(
            m[&key("app", "shop", "web", Kind::Readiness)],
            KubeletCounts {
                successful: 120,
                failed: 3,
                unknown: 0
            }
        );
        assert_eq!(m[&key("app", "shop", "web", Kind::Liveness)].unknown, 1);
        assert_eq!(m[&key("a\"b", "x", "p", Kind::Startup)].successful, 1);
        assert!(parse("").is_empty());
        assert!(parse("prober_probe_total{container=\"unterminated").is_empty());
    }

    #[test]
    fn windows_are_deltas_from_the_first_scrape() {
        let v = KubeletView::default();
        assert!(v.window().is_none());
        let k = (
            "a".to_string(),
            "p".to_string(),
            "c".to_string(),
            Kind::Readiness,
        );
        let at = |s, f| {
            HashMap::from([(
                k.clone(),
                KubeletCounts {
                    successful: s,
                    failed: f,
                    unknown: 0,
                },
            )])
        };
        v.store(at(100, 2));
        v.store(at(105, 4));
        assert_eq!(
            v.window().unwrap()[&k],
            KubeletCounts {
                successful: 5,
                failed: 2,
                unknown: 0
            }
        );
        v.store(at(106, 4));
        assert_eq!(v.window().unwrap()[&k].successful, 1);
        // A kubelet restart resets its counters: no negative counts.
        v.store(at(1, 0));
        assert_eq!(v.window().unwrap()[&k], KubeletCounts::default());
    }
}
