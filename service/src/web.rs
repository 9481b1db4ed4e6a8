//! Who may read an HTTP listener (the collector's API, page and `/metrics`; the agent's
//! `/metrics`), in the manner of Prometheus exporter-toolkit's web configuration:
//! `basic_auth_users` maps user names to bcrypt hashes (`htpasswd -nBC 10 USER`, or
//! `python3 -c 'import bcrypt; …'`), and, beyond exporter-toolkit, a bearer token read from
//! a file (a mounted Secret; re-read when it changes). Either credential lets a request in.
//! `/healthz` and `/readyz` stay open for the kubelet's probes.
//!
//! bcrypt is slow on purpose (cost 10 ≈ 50 ms): a successful check is remembered (by a SHA-256
//! of the user and password, at most [`CACHE`] of them), checks run off the runtime's workers
//! and at most [`MAX_VERIFYING`] at a time; further unremembered ones get 429.

use crate::http::{reply, Reply, TEXT};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Successful basic-auth checks remembered.
pub const CACHE: usize = 256;
/// bcrypt checks running at once.
pub const MAX_VERIFYING: usize = 2;
/// How often the bearer token file is read again.
const TOKEN_REFRESH: Duration = Duration::from_secs(5);
/// Paths served without credentials (the kubelet's probes).
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// `[web]`: who may read the HTTP listener. Empty (the default): anyone who can reach it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// User name → bcrypt hash of the password (`$2y$10$…`), as exporter-toolkit's
    /// `basic_auth_users`.
    pub basic_auth_users: BTreeMap<String, String>,
    /// A file holding the bearer token a request may send (`Authorization: Bearer TOKEN`);
    /// read again when it changes.
    pub bearer_token_file: Option<String>,
}

/// A web config that cannot be used; the line names the field and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebError {
    #[error("[web] basic_auth_users.{0}: not a bcrypt hash; make one with `htpasswd -nBC 10 {0}` and give the part after the colon")]
    Hash(String),
    #[error("[web] bearer_token_file {0}: {1}; give a readable file with one token in it")]
    Token(String, String),
}

struct Token {
    path: PathBuf,
    /// SHA-256 of the token (compared instead of the token, so the time taken says nothing).
    digest: Option<[u8; 32]>,
    read_at: Instant,
}

/// A checked [`WebConfig`] that asks for credentials.
pub struct WebAuth {
    users: BTreeMap<String, String>,
    token: Option<Mutex<Token>>,
    remembered: Mutex<HashSet<[u8; 32]>>,
    verifying: Arc<tokio::sync::Semaphore>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        c.update(&(p.len() as u64).to_be_bytes());
        c.update(p);
    }
    c.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn read_token(path: &std::path::Path) -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .map_err(|e| format!("cannot read it ({e})"))?;
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    Ok(sha256(&[t.as_bytes()]))
}

/// What a request's `Authorization` header offers.
enum Offered {
    Basic(String, String),
    Bearer(String),
}

fn offered(req: &Request<Incoming>) -> Option<Offered> {
    use base64::Engine;
    let v = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Offered::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Offered::Basic(u.to_string(), p.to_string()));
    }
    None
}

impl WebAuth {
    /// `None` when the config asks for no credentials.
    pub fn new(config: &WebConfig) -> Result<Option<Arc<WebAuth>>, WebError> {
        if config.basic_auth_users.is_empty() && config.bearer_token_file.is_none() {
            return Ok(None);
        }
        for (user, hash) in &config.basic_auth_users {
            // A hash that does not parse would refuse every password: say so at start.
            if bcrypt::verify("", hash).is_err() {
                return Err(WebError::Hash(user.clone()));
            }
        }
        let token = match &config.bearer_token_file {
            Some(p) => {
                let digest = read_token(p.as_ref()).map_err(|e| WebError::Token(p.clone(), e))?;
                Some(Mutex::new(Token {
                    path: p.into(),
                    digest: Some(digest),
                    read_at: Instant::now(),
                }))
            }
            None => None,
        };
        Ok(Some(Arc::new(WebAuth {
            users: config.basic_auth_users.clone(),
            token,
            remembered: Mutex::new(HashSet::new()),
            verifying: Arc::new(tokio::sync::Semaphore::new(MAX_VERIFYING)),
        })))
    }

    fn bearer_ok(&self, offered: &str) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        let mut t = token.lock().unwrap_or_else(|e| e.into_inner());
        if t.read_at.elapsed() >= TOKEN_REFRESH {
            t.read_at = Instant::now();
            match read_token(&t.path) {
                Ok(d) => t.digest = Some(d),
                Err(error) => {
                    // Keep the token in use: a Secret being swapped is briefly unreadable.
                    tracing::warn!(message = "Cannot read the bearer token file; keeping the token in use.", path = %t.path.display(), %error);
                }
            }
        }
        t.digest == Some(sha256(&[offered.as_bytes()]))
    }

    /// Whether `req` may pass: `Ok(())`, or the reply to send instead (401, or 429 when
    /// too many bcrypt checks are running).
    pub async fn check(self: &Arc<Self>, req: &Request<Incoming>) -> Result<(), Reply> {
        match offered(req) {
            Some(Offered::Bearer(t)) if self.bearer_ok(&t) => Ok(()),
            Some(Offered::Basic(user, password)) => {
                // An unknown user costs the same bcrypt check as a known one (as exporter-toolkit
                // does), so the time taken does not tell which names exist.
                let (hash, known) = match self.users.get(&user) {
                    Some(h) => (h.clone(), true),
                    None => match self.users.values().next() {
                        Some(h) => (h.clone(), false),
                        None => return Err(unauthorized()),
                    },
                };
                let key = sha256(&[user.as_bytes(), password.as_bytes(), hash.as_bytes()]);
                if self
                    .remembered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&key)
                {
                    return Ok(());
                }
                let Ok(slot) = self.verifying.clone().try_acquire_owned() else {
                    let mut r = reply(
                        StatusCode::TOO_MANY_REQUESTS,
                        TEXT,
                        "busy checking passwords; retry after 1s\n",
                    );
                    r.headers_mut().insert(
                        hyper::header::RETRY_AFTER,
                        hyper::header::HeaderValue::from_static("1"),
                    );
                    return Err(r);
                };
                let ok = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    bcrypt::verify(password, &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false)
                    && known;
                if !ok {
                    return Err(unauthorized());
                }
                let mut m = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
                if m.len() >= CACHE {
                    m.clear();
                }
                m.insert(key);
                Ok(())
            }
            _ => Err(unauthorized()),
        }
    }
}

fn unauthorized() -> Reply {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        TEXT,
        "credentials required: HTTP basic auth or a bearer token (see [web])\n",
    );
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"headroom\""),
    );
    r
}

type BoxReply = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// `handler` behind `auth` (when there is one); [`OPEN_PATHS`] always pass.
pub fn guard<H, F>(
    auth: Option<Arc<WebAuth>>,
    handler: H,
) -> impl Fn(Request<Incoming>) -> BoxReply + Clone + Send + Sync + 'static
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    move |req: Request<Incoming>| {
        let (auth, handler) = (auth.clone(), handler.clone());
        Box::pin(async move {
            if let Some(auth) = auth {
                if !OPEN_PATHS.contains(&req.uri().path()) {
                    if let Err(r) = auth.check(&req).await {
                        return r;
                    }
                }
            }
            handler(req).await
        }) as BoxReply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_token_files_are_checked_at_start() {
        assert!(WebAuth::new(&WebConfig::default()).unwrap().is_none());
        let bad = WebConfig {
            basic_auth_users: [("alice".to_string(), "plain".to_string())].into(),
            ..WebConfig::default()
        };
        assert_eq!(
            WebAuth::new(&bad).err(),
            Some(WebError::Hash("alice".into()))
        );
        let missing = WebConfig {
            bearer_token_file: Some("/nonexistent/token".into()),
            ..WebConfig::default()
        };
        assert!(WebAuth::new(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("cannot read it"));
        // exporter-toolkit's example hash for alice.
        let ok = WebConfig {
            basic_auth_users: [(
                "alice".to_string(),
                "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze".to_string(),
            )]
            .into(),
            ..WebConfig::default()
        };
        assert!(WebAuth::new(&ok).unwrap().is_some());
    }
}
