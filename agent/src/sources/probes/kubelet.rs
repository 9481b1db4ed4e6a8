//! The kubelet's own view of its probes: `prober_probe_total` from `/metrics/probes`, scraped
//! with the service account's token, so the report can set the kubelet's counts beside the
//! shadow results (the kubelet counts results, not latencies, and never a timeout's duration).

use super::spec::Kind;
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

/// Why a scrape of the kubelet failed; the `Display` text is the one line logged.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("invalid URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("no host in {0}")]
    NoHost(String),
    #[error("connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    Request(String),
    #[error("invalid host {host}: {reason}")]
    Host { host: String, reason: String },
    #[error("no cluster CA to verify the kubelet's serving certificate against (neither {ca_file} nor a kubeconfig CA); the token is not sent to an unverified peer")]
    NoClusterCa { ca_file: String },
    #[error("TLS handshake with {host}:{port}: {source}")]
    Tls {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
    #[error("HTTP request: {0}")]
    Send(hyper::Error),
    #[error("reading the body: {0}")]
    Body(hyper::Error),
    #[error("HTTP status {0} (the service account needs get on nodes/metrics)")]
    Status(hyper::StatusCode),
    #[error("timed out after 5s")]
    Timeout,
}

/// How an `https://` kubelet is verified: its serving certificate must chain to the cluster CA
/// and name this node (a loopback URL reaches this node's own kubelet, whose certificate names
/// the node, not 127.0.0.1). The service-account token is only ever sent after that check.
/// The probes' accept-any-certificate verifier is not used here.
#[derive(Clone)]
pub struct KubeletTls {
    config: Arc<rustls::ClientConfig>,
    node: String,
}

impl KubeletTls {
    /// Trusts the PEM certificates `ca_pem` (the cluster CA) and DER certificates `ca_der`.
    pub fn new(
        ca_pem: &[u8],
        ca_der: &[Vec<u8>],
        node: &str,
    ) -> Result<Option<KubeletTls>, rustls::Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(
            CertificateDer::pem_slice_iter(ca_pem).filter_map(|c| c.ok()),
        );
        roots.add_parsable_certificates(ca_der.iter().map(|d| CertificateDer::from(d.clone())));
        if roots.is_empty() {
            return Ok(None);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Some(KubeletTls {
            config: Arc::new(config),
            node: node.to_string(),
        }))
    }

    /// The cluster CA as a pod sees it: `ca.crt` beside the service-account token file, else
    /// the CA of the Kubernetes configuration kube-rs infers (KUBECONFIG).
    pub async fn cluster(token_file: &str, node: &str) -> Result<KubeletTls, KubeletError> {
        let ca_file = std::path::Path::new(token_file).with_file_name("ca.crt");
        let pem = std::fs::read(&ca_file).unwrap_or_default();
        let der = match pem.is_empty() {
            true => ::kube::Config::infer()
                .await
                .ok()
                .and_then(|c| c.root_cert)
                .unwrap_or_default(),
            false => Vec::new(),
        };
        let no_ca = || KubeletError::NoClusterCa {
            ca_file: ca_file.display().to_string(),
        };
        KubeletTls::new(&pem, &der, node)
            .map_err(|_| no_ca())?
            .ok_or_else(no_ca)
    }

    /// The name the kubelet's certificate must carry for `host`.
    fn server_name(
        &self,
        host: &str,
    ) -> Result<rustls::pki_types::ServerName<'static>, KubeletError> {
        let bad = |reason: String| KubeletError::Host {
            host: host.to_string(),
            reason,
        };
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() && !self.node.is_empty() => {
                rustls::pki_types::ServerName::try_from(self.node.clone())
                    .map_err(|e| bad(e.to_string()))
            }
            Ok(ip) => Ok(rustls::pki_types::ServerName::IpAddress(ip.into())),
            Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| bad(e.to_string())),
        }
    }
}

/// GET `url` with a bearer token; the body on 200. `https://` only with `tls` (the serving
/// certificate verified against the cluster CA before the token is sent); `http://` in the
/// clear (test beds).
pub async fn get(
    url: &str,
    token: Option<&str>,
    tls: Option<&KubeletTls>,
) -> Result<String, KubeletError> {
    let uri: hyper::Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| KubeletError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| KubeletError::NoHost(url.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // Refuse before connecting: without a CA nothing can be verified.
    let tls = match (https, tls) {
        (true, None) => {
            return Err(KubeletError::NoClusterCa {
                ca_file: "ca.crt".into(),
            })
        }
        (true, Some(t)) => Some((t.server_name(&host)?, t)),
        (false, _) => None,
    };
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| KubeletError::Connect {
            host: host.clone(),
            port,
            source,
        })?;
    let mut req = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::USER_AGENT, super::spec::USER_AGENT)
        .header(hyper::header::CONNECTION, "close");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| KubeletError::Request(e.to_string()))?;
    match tls {
        Some((name, t)) => {
            let s = tokio_rustls::TlsConnector::from(t.config.clone())
                .connect(name, stream)
                .await
                .map_err(|source| KubeletError::Tls {
                    host: host.clone(),
                    port,
                    source,
                })?;
            send(TokioIo::new(s), req).await
        }
        None => send(TokioIo::new(stream), req).await,
    }
}

async fn send<I>(io: I, req: Request<Empty<Bytes>>) -> Result<String, KubeletError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(KubeletError::Handshake)?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(KubeletError::Send)?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(KubeletError::Body)?
        .to_bytes();
    conn.abort();
    if !status.is_success() {
        return Err(KubeletError::Status(status));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Scrapes `url` every `interval` until cancelled. A failure is logged once until it recovers.
/// An `https://` URL is verified against the cluster CA (see [`KubeletTls`]) for node `node`.
pub async fn run(
    url: String,
    token_file: String,
    node: String,
    interval: Duration,
    view: KubeletView,
    stop: CancellationToken,
) {
    let mut tls: Option<KubeletTls> = None;
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
        let r = async {
            if url.starts_with("https://") && tls.is_none() {
                tls = Some(KubeletTls::cluster(&token_file, &node).await?);
            }
            get(&url, token.as_deref(), tls.as_ref()).await
        };
        let r = tokio::time::timeout(Duration::from_secs(5), r).await;
        match r.unwrap_or(Err(KubeletError::Timeout)) {
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

    /// `NAME-ca.pem` and `NAME.crt`/`NAME.key`, a serving certificate for DNS `san` it signs.
    fn make_pki(dir: &std::path::Path, name: &str, san: &str) -> headroom_testbed::tls::Issued {
        let ca = headroom_testbed::tls::TestCa::new(name);
        ca.write(&dir.join(format!("{name}-ca.pem")));
        ca.issue(dir, name, &[san], false)
    }

    /// A TLS server on 127.0.0.1 with `name`'s certificate; it records the requests it reads.
    async fn kubelet_server(
        issued: &headroom_testbed::tls::Issued,
    ) -> (u16, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acceptor = tokio_rustls::TlsAcceptor::from(issued.server_config(&[]));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = vec![0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let body = "prober_probe_total{container=\"c\",namespace=\"n\",pod=\"p\",probe_type=\"Readiness\",result=\"successful\"} 7\n";
                let _ = tls
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (port, seen)
    }

    /// The token goes only to a kubelet whose serving certificate the cluster CA signed for
    /// this node's name; a certificate from another CA fails the handshake before any request.
    #[tokio::test]
    async fn kubelet_tls_is_verified_against_the_cluster_ca() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = make_pki(dir.path(), "cluster", "node-a.internal");
        let rogue = make_pki(dir.path(), "rogue", "node-a.internal");
        let ca = std::fs::read(dir.path().join("cluster-ca.pem")).unwrap();
        let tls = KubeletTls::new(&ca, &[], "node-a.internal")
            .unwrap()
            .unwrap();

        let (port, seen) = kubelet_server(&cluster).await;
        let url = format!("https://127.0.0.1:{port}/metrics/probes");
        let text = get(&url, Some("sa-token"), Some(&tls)).await.unwrap();
        assert_eq!(parse(&text).len(), 1);
        assert!(seen.lock().unwrap()[0].contains("authorization: Bearer sa-token"));

        // Signed by the cluster CA, but for another node's name.
        let other = KubeletTls::new(&ca, &[], "node-b.internal")
            .unwrap()
            .unwrap();
        let e = get(&url, Some("sa-token"), Some(&other)).await.unwrap_err();
        assert!(matches!(e, KubeletError::Tls { .. }), "{e}");

        let (port, seen) = kubelet_server(&rogue).await;
        let url = format!("https://127.0.0.1:{port}/metrics/probes");
        let e = get(&url, Some("sa-token"), Some(&tls)).await.unwrap_err();
        assert!(matches!(e, KubeletError::Tls { .. }), "{e}");
        assert!(
            e.to_string().starts_with("TLS handshake with 127.0.0.1:"),
            "{e}"
        );
        // Without a CA nothing is sent at all.
        let e = get(&url, Some("sa-token"), None).await.unwrap_err();
        assert!(matches!(e, KubeletError::NoClusterCa { .. }), "{e}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "the token reached an unverified peer"
        );
        assert!(KubeletTls::new(b"not a certificate", &[], "n")
            .unwrap()
            .is_none());
    }

    /// In a pod the cluster CA is `ca.crt` beside the token file.
    #[tokio::test]
    async fn the_cluster_ca_is_found_beside_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = make_pki(dir.path(), "cluster", "node-a.internal");
        std::fs::copy(dir.path().join("cluster-ca.pem"), dir.path().join("ca.crt")).unwrap();
        let token = dir.path().join("token");
        let tls = KubeletTls::cluster(token.to_str().unwrap(), "node-a.internal")
            .await
            .unwrap();
        let (port, _) = kubelet_server(&cluster).await;
        let url = format!("https://127.0.0.1:{port}/metrics/probes");
        assert!(get(&url, None, Some(&tls)).await.is_ok());
    }
}
