//! TLS for every listener of both binaries, from PEM files that are watched: a certificate
//! renewed on disk (cert-manager, a rotated Kubernetes Secret) is used for new handshakes
//! without a restart; a bad new pair (unreadable, not PEM, key not matching the certificate) is
//! logged once and the pair in use is kept. Optional `client_ca_file`: clients must present a
//! certificate that CA signed (mutual TLS). rustls with ring; TLS 1.2 and 1.3.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the files are looked at for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Largest PEM file read (a certificate chain is a few KiB).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// `[tls]`: the PEM files a listener serves TLS with. Unset (the default): plain TCP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM; leaf first, then intermediates).
    pub cert_file: Option<String>,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<String>,
    /// Optional: CA certificates (PEM) that client certificates must chain to; when set, a
    /// client without such a certificate fails the handshake (mutual TLS).
    pub client_ca_file: Option<String>,
}

/// The files of a [`TlsConfig`] that turns TLS on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// `None` when TLS is off; an error when only one of `cert_file` and `key_file` is set.
    pub fn files(&self, section: &str) -> Result<Option<TlsFiles>, String> {
        match (&self.cert_file, &self.key_file) {
            (None, None) if self.client_ca_file.is_none() => Ok(None),
            (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Ok(Some(TlsFiles {
                cert_file: c.into(),
                key_file: k.into(),
                client_ca_file: self.client_ca_file.as_ref().map(PathBuf::from),
            })),
            _ => Err(format!(
                "[{section}] needs both cert_file and key_file (PEM files), or neither for plain TCP"
            )),
        }
    }
}

/// Why a certificate pair cannot be used; the one line names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {} ({source}); mount the TLS Secret there or fix the [tls] path", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM {what}; give a PEM file with a `-----BEGIN {what}-----` block", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("{} is not valid PEM ({why})", path.display())]
    Pem { path: PathBuf, why: String },
    #[error("the key in {} does not fit the certificate in {} ({why}); give the key the certificate was issued for", key.display(), cert.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("client_ca_file {} cannot be used ({why}); give the PEM certificate(s) of the CA that signs client certificates", path.display())]
    ClientCa { path: PathBuf, why: String },
}

/// Which application protocol a listener speaks (its ALPN offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 (the API, `/metrics`, OTLP/HTTP).
    Http1,
    /// HTTP/2 (gRPC).
    H2,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let err = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let mut out = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_PEM_BYTES)
        .read_to_end(&mut out)
        .map_err(err)?;
    Ok(out)
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Every CA certificate of the PEM file `path` (a client's trust: an OTLP receiver's or
/// an Alertmanager's CA); an error when it cannot be read, holds none, or one cannot be parsed.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let cas = certs(path, &pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(cas.iter().cloned());
    if unparsable > 0 {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            why: format!("{unparsable} certificate(s) in it cannot be parsed"),
        });
    }
    Ok(cas)
}

/// The files' contents, as last read.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read(&files.cert_file)?,
            key: read(&files.key_file)?,
            client_ca: files.client_ca_file.as_deref().map(read).transpose()?,
        })
    }

    /// One server configuration per ALPN offer, from these contents.
    fn configs(&self, files: &TlsFiles) -> Result<[Arc<ServerConfig>; 2], TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs(&files.cert_file, &self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
                path: files.key_file.clone(),
                what: "PRIVATE KEY",
            },
            e => TlsError::Pem {
                path: files.key_file.clone(),
                why: e.to_string(),
            },
        })?;
        let pair = |e: rustls::Error| TlsError::Pair {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
            why: e.to_string(),
        };
        let verifier = match (&files.client_ca_file, &self.client_ca) {
            (Some(path), Some(pem)) => {
                let bad = |why: String| TlsError::ClientCa {
                    path: path.clone(),
                    why,
                };
                let mut roots = rustls::RootCertStore::empty();
                let cas = certs(path, pem).map_err(|e| bad(e.to_string()))?;
                let (_, unparsable) = roots.add_parsable_certificates(cas);
                if unparsable > 0 || roots.is_empty() {
                    return Err(bad(format!("{unparsable} certificate(s) cannot be parsed")));
                }
                Some(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
                )
            }
            _ => None,
        };
        let make = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports TLS 1.2 and 1.3");
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(v.clone()),
                None => builder.with_no_client_auth(),
            };
            let mut c = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(pair)?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        Ok([make(&[b"http/1.1"])?, make(&[b"h2"])?])
    }
}

struct Current {
    contents: Contents,
    configs: [Arc<ServerConfig>; 2],
}

/// A listener's TLS: the configuration in use, swapped when the files change.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Current>,
    /// The contents of the last pair that failed, so it is logged once, not every poll.
    failed: std::sync::Mutex<Option<Contents>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

impl ServerTls {
    /// Reads and checks the pair (and client CA) now: at start, a bad file is a usage error.
    pub fn load(files: TlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        let contents = Contents::read(&files)?;
        let configs = contents.configs(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(Current { contents, configs }),
            failed: std::sync::Mutex::new(None),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration new handshakes use.
    pub fn config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        c.configs[match alpn {
            Alpn::Http1 => 0,
            Alpn::H2 => 1,
        }]
        .clone()
    }

    /// Reads the files again: `Ok(true)` when a new pair is now in use, `Ok(false)` when
    /// nothing changed; an error (the old pair kept) when the new contents cannot be used.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = Contents::read(&self.files)?;
        if self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contents
            == contents
        {
            return Ok(false);
        }
        let configs = contents.configs(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Current { contents, configs };
        Ok(true)
    }

    /// Looks at the files every `every` until `stop`; logs a new pair taken, and a bad one
    /// once (until its contents change again).
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || {
                let r = this.reload();
                (r, Contents::read(&this.files).ok())
            })
            .await;
            let Ok((result, seen)) = result else { continue };
            match result {
                Ok(true) => {
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    tracing::info!(
                        message = "TLS certificate reloaded; new handshakes use it.",
                        cert_file = %self.files.cert_file.display()
                    );
                }
                Ok(false) => {}
                Err(error) => {
                    let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                    if seen.is_none() || *failed != seen {
                        tracing::error!(
                            message = "New TLS certificate files cannot be used; keeping the certificate in use.",
                            %error
                        );
                        *failed = seen;
                    }
                }
            }
        }
    }
}

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of a TLS handshake, bounded by [`HANDSHAKE_TIMEOUT`]; a failed one is
/// logged at debug (any peer can fail one on purpose).
pub async fn handshake<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: IO,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(error)) => {
            tracing::debug!(message = "TLS handshake failed.", %error);
            None
        }
        Err(_) => {
            tracing::debug!(message = "TLS handshake timed out.");
            None
        }
    }
}

/// Accepts on `tcp` and hands on each connection once its TLS handshake (offering `alpn`)
/// is done: handshakes run side by side, so a slow client holds up nobody. Stops when the
/// receiver is dropped.
pub fn incoming(
    tcp: tokio::net::TcpListener,
    tls: Arc<ServerTls>,
    alpn: Alpn,
) -> tokio::sync::mpsc::Receiver<
    std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                c = tcp.accept() => match c {
                    Ok((s, _)) => s,
                    Err(error) => {
                        tracing::warn!(message = "Accept failed.", %error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let (tx, acceptor) = (
                tx.clone(),
                tokio_rustls::TlsAcceptor::from(tls.config(alpn)),
            );
            tokio::spawn(async move {
                if let Some(s) = handshake(&acceptor, stream).await {
                    let _ = tx.send(Ok(s)).await;
                }
            });
        }
    });
    rx
}

/// Starts [`ServerTls::watch`] for each TLS in use, on the current runtime.
pub fn watch_all<'a>(tls: impl IntoIterator<Item = &'a Arc<ServerTls>>, stop: &CancellationToken) {
    for t in tls {
        tokio::spawn(t.clone().watch(RELOAD_INTERVAL, stop.clone()));
    }
}

/// The TCP connector and the https-or-http connector builder both binaries' clients use: no
/// Nagle delay, plain `http://` allowed, `tls` for `https://`, and the certificate checked for
/// `server_name` instead of the URL's host when given. The caller enables its HTTP versions
/// and wraps the TCP connector.
pub fn client_connector(
    tls: rustls::ClientConfig,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
) -> (
    hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsProtocols1>,
    hyper_util::client::legacy::connect::HttpConnector,
) {
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match server_name {
        Some(name) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    (builder, tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, k1) = pair("one.test");
        std::fs::write(&c, &c1).unwrap();
        std::fs::write(&k, &k1).unwrap();
        let files = TlsFiles {
            cert_file: c.clone(),
            key_file: k.clone(),
            client_ca_file: None,
        };
        let tls = ServerTls::load(files.clone()).unwrap();
        let first = tls.config(Alpn::H2);
        assert_eq!(first.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!tls.reload().unwrap());
        // A new certificate with the old key: refused, the old pair stays.
        let (c2, k2) = pair("two.test");
        std::fs::write(&c, &c2).unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(e.contains("does not fit the certificate"), "{e}");
        assert!(Arc::ptr_eq(&first, &tls.config(Alpn::H2)));
        std::fs::write(&k, &k2).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&first, &tls.config(Alpn::H2)));
        // Garbage and a missing file at start are one-line errors naming the file.
        std::fs::write(&k, "not a key").unwrap();
        let e = ServerTls::load(files.clone()).unwrap_err().to_string();
        assert!(e.contains("tls.key holds no PEM PRIVATE KEY"), "{e}");
        std::fs::remove_file(&c).unwrap();
        let e = ServerTls::load(files).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("tls.crt"),
            "{e}"
        );
    }

    /// With `client_ca_file`, a client without a certificate that CA signed gets no answer;
    /// one with such a certificate is served.
    #[tokio::test]
    async fn client_ca_file_requires_a_client_certificate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["agent".to_string()]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client = p.signed_by(&client_key, &ca, &ca_key).unwrap();
        let (server_cert, server_key) = pair("server.test");
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("s.crt"), &server_cert).unwrap();
        std::fs::write(path("s.key"), &server_key).unwrap();
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        let tls = ServerTls::load(TlsFiles {
            cert_file: path("s.crt"),
            key_file: path("s.key"),
            client_ca_file: Some(path("ca.pem")),
        })
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(crate::http::serve(
            crate::http::Listener::new(l, Some(tls)),
            |_req| async { crate::http::reply(hyper::StatusCode::OK, crate::http::TEXT, "ok\n") },
            std::future::pending(),
        ));
        let get = |with_cert: bool| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(
                CertificateDer::pem_slice_iter(server_cert.as_bytes()).map(Result::unwrap),
            );
            let b = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
            let cfg = if with_cert {
                b.with_client_auth_cert(
                    vec![client.der().clone()],
                    PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes()).unwrap(),
                )
                .unwrap()
            } else {
                b.with_no_client_auth()
            };
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("server.test").unwrap();
                let Ok(mut s) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                    .connect(name, tcp)
                    .await
                else {
                    return String::new();
                };
                let _ = s
                    .write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
                    .await;
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                String::from_utf8_lossy(&got).to_string()
            }
        };
        assert!(get(true).await.starts_with("HTTP/1.1 200 OK"));
        assert!(!get(false).await.contains("200 OK"));
    }

    #[test]
    fn config_needs_both_files() {
        assert_eq!(TlsConfig::default().files("tls"), Ok(None));
        let half = TlsConfig {
            cert_file: Some("/c".into()),
            ..TlsConfig::default()
        };
        assert!(half.files("tls").unwrap_err().contains("both cert_file"));
    }
}
