//! What every sender of the collector shares (traces onward, Alertmanager, the webhook): one
//! HTTP client set-up (http:// and https://, rustls with ring, verified against the system's
//! CAs or a `ca_file`), credentials as Prometheus' `http_config` names them
//! (`authorization.credentials_file`, `basic_auth.username` / `password_file`, files re-read
//! for every POST so a rotated Secret is picked up), and one retry pause (the shared jittered
//! backoff, cut short by shutdown).

use crate::check::Invalid;
use headroom_service::backoff::Backoff;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `tls_config` of an `http_config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM CA certificates the server's certificate must chain to (default: the system's).
    pub ca_file: Option<String>,
    /// The name the server's certificate must carry, when not the URL's host.
    pub server_name: Option<String>,
}

/// `authorization` of an `http_config`: `type` (default `Bearer`) and a credentials file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials_file: Option<String>,
}

/// `basic_auth` of an `http_config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: Option<String>,
}

/// How the collector reaches one kind of sink (`[alertmanager_http]`, `[webhook_http]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpClientConfig {
    pub tls_config: TlsClientConfig,
    pub authorization: Option<Authorization>,
    pub basic_auth: Option<BasicAuth>,
}

/// Credentials sent with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: TYPE <file contents>`.
    Scheme { kind: String, file: PathBuf },
    /// `Authorization: Basic base64(user:password)`.
    Basic { username: String, file: PathBuf },
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut s))
        .map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

impl Credentials {
    /// The `Authorization` header, from the file as it is now.
    pub fn header(&self) -> Result<hyper::header::HeaderValue, String> {
        use base64::Engine;
        let text = match self {
            Credentials::Scheme { kind, file } => format!("{kind} {}", read_secret(file)?),
            Credentials::Basic { username, file } => {
                let pair = format!("{username}:{}", read_secret(file)?);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
        };
        let mut v = hyper::header::HeaderValue::from_str(&text).map_err(|_| {
            "the credentials file holds characters a header cannot carry".to_string()
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// A checked [`HttpClientConfig`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    /// CA certificates from `ca_file`; None: the system's.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub server_name: Option<String>,
    pub credentials: Option<Credentials>,
}

impl HttpClientConfig {
    /// Reads `ca_file` and checks the credential files can be read: all at start, so a bad
    /// path is a usage error, not a sink that fails forever.
    pub fn check(&self, section: &'static str) -> Result<ClientSettings, Invalid> {
        let bad = |why: String| Invalid::Section(section, why);
        let ca = match &self.tls_config.ca_file {
            Some(path) => {
                let trust = headroom_service::tls::read_ca_file(path.as_ref())
                    .map_err(|e| bad(format!("tls_config.ca_file: {e}")))?;
                Some(trust)
            }
            None => None,
        };
        if let Some(name) = &self.tls_config.server_name {
            rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                bad(format!(
                    "tls_config.server_name '{name}' is not a DNS name or IP"
                ))
            })?;
        }
        let credentials = match (&self.authorization, &self.basic_auth) {
            (Some(_), Some(_)) => {
                return Err(bad("set authorization or basic_auth, not both".into()))
            }
            (Some(a), None) => {
                let Some(file) = &a.credentials_file else {
                    return Err(bad(
                        "authorization needs credentials_file (a mounted Secret file)".into(),
                    ));
                };
                Some(Credentials::Scheme {
                    kind: a.kind.clone().unwrap_or_else(|| "Bearer".into()),
                    file: file.into(),
                })
            }
            (None, Some(b)) => {
                let Some(file) = &b.password_file else {
                    return Err(bad(
                        "basic_auth needs password_file (a mounted Secret file)".into(),
                    ));
                };
                if b.username.is_empty() || b.username.contains(':') {
                    return Err(bad("basic_auth.username must be set and hold no ':'".into()));
                }
                Some(Credentials::Basic {
                    username: b.username.clone(),
                    file: file.into(),
                })
            }
            (None, None) => None,
        };
        if let Some(c) = &credentials {
            c.header().map_err(bad)?;
        }
        Ok(ClientSettings {
            ca,
            server_name: self.tls_config.server_name.clone(),
            credentials,
        })
    }
}

/// A sink's client and the credentials it sends.
pub struct Sender {
    pub client: HttpClient,
    pub credentials: Option<Credentials>,
}

impl Sender {
    pub fn new(settings: &ClientSettings) -> Sender {
        Sender {
            client: client_with(settings),
            credentials: settings.credentials.clone(),
        }
    }
}

/// A pooled HTTP/1.1 client for http:// and https:// (system CAs), no Nagle delay, idle
/// connections closed after 30 s.
pub fn client() -> HttpClient {
    client_with(&ClientSettings::default())
}

/// As [`client`], trusting `settings`' CAs and checking its server name.
pub fn client_with(settings: &ClientSettings) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca {
        Some(certs) => {
            roots.add_parsable_certificates(certs.iter().cloned());
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = settings.server_name.as_ref().map(|name| {
        rustls::pki_types::ServerName::try_from(name.clone())
            .expect("checked in HttpClientConfig::check")
    });
    let (builder, tcp) = headroom_service::tls::client_connector(tls, server_name);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(builder.enable_http1().wrap_connector(tcp))
}

/// A sender's backoff: from `first`, doubling up to `cap`, each delay jittered in its upper
/// half.
pub struct Retry {
    backoff: Backoff,
}

impl Retry {
    pub fn new(first: Duration, cap: Duration) -> Retry {
        Retry {
            backoff: Backoff::new(first, cap),
        }
    }

    /// Waits the next delay; false when `stop` came first (the sender should end).
    pub async fn pause(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.backoff.next_delay()) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_waits_at_least_half_its_delay_and_stop_ends_it() {
        let mut r = Retry::new(Duration::from_millis(40), Duration::from_secs(30));
        let stop = CancellationToken::new();
        let t0 = std::time::Instant::now();
        assert!(r.pause(&stop).await);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        stop.cancel();
        assert!(!r.pause(&stop).await);
    }
}
