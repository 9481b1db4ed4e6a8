//! Who may write to the fleet. Every OTLP request carries a bearer token (`Authorization:
//! Bearer …` on HTTP, `authorization` metadata on gRPC) naming its sender:
//!
//! - a node's agent: a projected ServiceAccount token (audience `headroom-collector`), verified
//!   by a TokenReview ([`review`]); it may write only its own node, the node the API server says
//!   the token's pod runs on;
//! - a foreign sender such as an OpenTelemetry Collector gateway: a static token from a mounted
//!   file ([`statics`]); it may write any node of the one cluster the file names for it.
//!
//! `auth = "none"` turns this off (explicitly; a warning at start). Refusals are logged one
//! line per reason at most every [`LOG_EVERY`], with the count of those not logged.

pub mod review;
pub mod statics;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What was configured: checked by `config`, used by [`Auth::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// False for `auth = "none"`.
    pub required: bool,
    /// Kubernetes access is configured (`kube`): ServiceAccount tokens can be reviewed.
    pub kube: bool,
    /// TokenReview `spec.audiences`; the review's `status.audiences` must hold one of them.
    pub audiences: Vec<String>,
    /// Usernames (`system:serviceaccount:NS:NAME`) whose tokens are accepted.
    pub service_accounts: Vec<String>,
    /// The static tokens file (`token cluster` per line), if any.
    pub static_tokens_file: Option<PathBuf>,
    /// Most reviewed tokens kept (by SHA-256 of the token); the oldest goes first.
    pub cache_entries: usize,
}

/// The sender of a request, and so what it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `auth = "none"`: anything.
    Anyone,
    /// A node's agent: resources of this node only.
    Node(String),
    /// A static token: resources of this cluster only.
    Cluster(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anyone => write!(f, "an unauthenticated sender"),
            Principal::Node(n) => write!(f, "the agent of node '{n}'"),
            Principal::Cluster(c) => write!(f, "the static token of cluster '{c}'"),
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 / UNAUTHENTICATED.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The API server could not review the token: 503 / UNAVAILABLE, retry after the delay.
    #[error("cannot verify the token now ({why}); retry in {}s", retry_after.as_secs().max(1))]
    Unavailable { why: String, retry_after: Duration },
}

/// A resource refused for what it claims: the rejection counter's reason.
pub const NODE_MISMATCH: &str = "node_mismatch";
pub const CLUSTER_MISMATCH: &str = "cluster_mismatch";

/// Shortest time between two log lines of one kind of refusal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// One log line per `LOG_EVERY`, the others counted into the next.
struct Limited {
    last: Option<Instant>,
    suppressed: u64,
}

pub struct Auth {
    required: bool,
    review: review::Reviewer,
    statics: Option<statics::StaticTokens>,
    logs: Mutex<[Limited; 3]>,
}

impl Auth {
    /// `client` is filled in once Kubernetes access is known (it may never be).
    pub fn new(
        settings: &AuthSettings,
        client: std::sync::Arc<std::sync::OnceLock<::kube::Client>>,
    ) -> Auth {
        if !settings.required {
            tracing::warn!(
                message = "auth = \"none\": OTLP ingest accepts anyone's data for any node; set auth = \"required\" (the default) on a shared cluster."
            );
        }
        Auth {
            required: settings.required,
            review: review::Reviewer::new(settings, client),
            statics: settings
                .static_tokens_file
                .clone()
                .map(statics::StaticTokens::new),
            logs: Mutex::new(std::array::from_fn(|_| Limited {
                last: None,
                suppressed: 0,
            })),
        }
    }

    /// The sender of a request with this `Authorization` value (HTTP header or gRPC metadata).
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        if !self.required {
            return Ok(Principal::Anyone);
        }
        let result = self.check(authorization).await;
        if let Err(e) = &result {
            self.log(e);
        }
        result
    }

    async fn check(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let token = bearer(authorization)?;
        if let Some(s) = &self.statics {
            if let Some(cluster) = s.lookup(token) {
                return Ok(Principal::Cluster(cluster));
            }
        }
        self.review.node_of(token).await.map(Principal::Node)
    }

    /// Whether `who` may write the resource of (`cluster`, `node`); the reason when not. A
    /// node's agent may not write a cluster that a static token owns.
    pub fn allows(&self, who: &Principal, cluster: &str, node: &str) -> Result<(), &'static str> {
        match who {
            Principal::Anyone => Ok(()),
            Principal::Node(n) if n != node => Err(NODE_MISMATCH),
            Principal::Node(_) => match &self.statics {
                Some(s) if s.owns(cluster) => Err(CLUSTER_MISMATCH),
                _ => Ok(()),
            },
            Principal::Cluster(c) if c != cluster => Err(CLUSTER_MISMATCH),
            Principal::Cluster(_) => Ok(()),
        }
    }

    /// Logs a refused resource (rate-limited like refused requests).
    pub fn log_refused(&self, who: &Principal, reason: &'static str, cluster: &str, node: &str) {
        let line = format!("{who} may not write node '{node}' of cluster '{cluster}'");
        self.limited(2, |suppressed| {
            tracing::warn!(message = "OTLP resource refused.", reason, detail = %line, suppressed)
        });
    }

    fn log(&self, e: &AuthError) {
        let kind = match e {
            AuthError::Unauthenticated(_) => 0,
            AuthError::Unavailable { .. } => 1,
        };
        self.limited(kind, |suppressed| {
            tracing::warn!(message = "OTLP request not authenticated.", error = %e, suppressed)
        });
    }

    fn limited(&self, kind: usize, log: impl FnOnce(u64)) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let l = &mut logs[kind];
        if l.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            l.suppressed += 1;
            return;
        }
        l.last = Some(Instant::now());
        let suppressed = std::mem::take(&mut l.suppressed);
        drop(logs);
        log(suppressed);
    }
}

/// The token of `Bearer <token>` (the scheme case-insensitive, as RFC 7235 has it).
fn bearer(authorization: Option<&[u8]>) -> Result<&str, AuthError> {
    let missing = || {
        AuthError::Unauthenticated(
            "no bearer token: send Authorization: Bearer <token> (the agent's otlp_token_file)"
                .into(),
        )
    };
    let value = authorization.ok_or_else(missing)?;
    let text = std::str::from_utf8(value)
        .map_err(|_| AuthError::Unauthenticated("Authorization is not text".into()))?;
    let (scheme, token) = text.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Unauthenticated(format!(
            "bearer token longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(token)
}

/// Longest token looked at (a ServiceAccount JWT is about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// SHA-256 of a token: what caches and the static table keep instead of the token.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal in time independent of where they differ.
pub(crate) fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_and_refuses_the_rest() {
        assert_eq!(bearer(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Ok("abc"));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"abc",
            b"\xff\xfe",
        ] {
            assert!(bearer(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(bearer(None).is_err());
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(bearer(Some(long.as_bytes())).is_err());
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_the_rest_counted() {
        let a = auth(None);
        let logged = std::cell::RefCell::new(Vec::new());
        for _ in 0..50 {
            a.limited(0, |suppressed| logged.borrow_mut().push(suppressed));
        }
        assert_eq!(*logged.borrow(), [0]);
        a.logs.lock().unwrap()[0].last = Some(Instant::now() - LOG_EVERY);
        a.limited(0, |suppressed| logged.borrow_mut().push(suppressed));
        assert_eq!(*logged.borrow(), [0, 49]);
        // Another kind has its own interval.
        a.limited(1, |suppressed| logged.borrow_mut().push(suppressed));
        assert_eq!(logged.borrow().len(), 3);
    }

    #[test]
    fn digests_compare_by_content() {
        assert!(same(&digest("a"), &digest("a")));
        assert!(!same(&digest("a"), &digest("b")));
    }

    fn auth(statics: Option<PathBuf>) -> Auth {
        let s = AuthSettings {
            required: true,
            kube: true,
            audiences: vec!["headroom-collector".into()],
            service_accounts: vec!["system:serviceaccount:headroom:headroom-agent".into()],
            static_tokens_file: statics,
            cache_entries: 10,
        };
        Auth::new(&s, Default::default())
    }

    #[test]
    fn a_node_writes_its_node_and_a_gateway_its_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "gw-token-0123456789 prod-b\n").unwrap();
        let a = auth(Some(f));
        let n = Principal::Node("n1".into());
        assert_eq!(a.allows(&n, "default", "n1"), Ok(()));
        assert_eq!(a.allows(&n, "default", "n2"), Err(NODE_MISMATCH));
        assert_eq!(a.allows(&n, "prod-b", "n1"), Err(CLUSTER_MISMATCH));
        let g = Principal::Cluster("prod-b".into());
        assert_eq!(a.allows(&g, "prod-b", "any"), Ok(()));
        assert_eq!(a.allows(&g, "default", "any"), Err(CLUSTER_MISMATCH));
        assert_eq!(a.allows(&Principal::Anyone, "x", "y"), Ok(()));
    }

    #[tokio::test]
    async fn without_kubernetes_only_static_tokens_pass() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "gw-token-0123456789 prod-b\n").unwrap();
        let a = auth(Some(f));
        assert_eq!(
            a.authenticate(Some(b"Bearer gw-token-0123456789")).await,
            Ok(Principal::Cluster("prod-b".into()))
        );
        assert!(matches!(
            a.authenticate(Some(b"Bearer other")).await,
            Err(AuthError::Unavailable { .. })
        ));
        assert!(matches!(
            a.authenticate(None).await,
            Err(AuthError::Unauthenticated(_))
        ));
    }
}
