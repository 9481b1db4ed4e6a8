//! ServiceAccount tokens, verified by the API server: a TokenReview
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`, `spec.audiences` the configured
//! audiences) must say `authenticated`, name one of the configured audiences in
//! `status.audiences` and one of the accepted ServiceAccounts as `status.user.username`. The
//! node is `status.user.extra["authentication.kubernetes.io/node-name"]` where the API server
//! sets it (pod-bound tokens since Kubernetes 1.30), else the `spec.nodeName` of the bound pod
//! (extra `authentication.kubernetes.io/pod-name`, in the ServiceAccount's namespace; its
//! `pod-uid` must match).
//!
//! Results are cached by SHA-256 of the token (never the token): an accepted one until the
//! token's `exp` claim and at most [`MAX_CACHE`], a refused one for [`REFUSED_CACHE`] (a flood
//! of bad tokens costs the API server one review each per that time). The cache holds at most
//! `auth_cache_entries`; the oldest entry goes first. When the API server cannot be reached,
//! reviews wait for the shared jittered [`Backoff`]: until then uncached tokens are answered
//! "unavailable, retry after" at once, while cached ones keep working.

use super::{digest, AuthError, AuthSettings};
use headroom_service::backoff::Backoff;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Longest an accepted token is trusted without asking again.
pub const MAX_CACHE: Duration = Duration::from_secs(300);
/// How long a refused token is answered from the cache.
pub const REFUSED_CACHE: Duration = Duration::from_secs(30);
/// Longest one review (and pod lookup) may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Reviews in flight at a time.
const MAX_REVIEWS: usize = 4;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";

struct Entry {
    /// The node, or why the token was refused.
    result: Result<String, String>,
    expires: Instant,
    seq: u64,
}

/// Bounded by entries; the oldest inserted is evicted first.
struct Cache {
    max: usize,
    map: HashMap<[u8; 32], Entry>,
    order: BTreeMap<u64, [u8; 32]>,
    seq: u64,
}

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Result<String, String>> {
        let e = self.map.get(key)?;
        if e.expires > now {
            return Some(e.result.clone());
        }
        let seq = e.seq;
        self.map.remove(key);
        self.order.remove(&seq);
        None
    }

    fn put(&mut self, key: [u8; 32], result: Result<String, String>, expires: Instant) {
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.seq);
        }
        while self.map.len() >= self.max {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&k);
        }
        self.seq += 1;
        self.order.insert(self.seq, key);
        self.map.insert(
            key,
            Entry {
                result,
                expires,
                seq: self.seq,
            },
        );
    }
}

struct Outage {
    backoff: Backoff,
    until: Option<Instant>,
    why: String,
}

/// A review's answer.
enum Verdict {
    /// The token's node, and until when the token is valid (its `exp`), if readable.
    Node(String, Option<SystemTime>),
    Refused(String),
}

pub struct Reviewer {
    kube: bool,
    client: Arc<OnceLock<::kube::Client>>,
    audiences: Vec<String>,
    accounts: Vec<String>,
    cache: Mutex<Cache>,
    outage: Mutex<Outage>,
    reviews: tokio::sync::Semaphore,
}

impl Reviewer {
    pub fn new(s: &AuthSettings, client: Arc<OnceLock<::kube::Client>>) -> Reviewer {
        Reviewer {
            kube: s.kube,
            client,
            audiences: s.audiences.clone(),
            accounts: s.service_accounts.clone(),
            cache: Mutex::new(Cache {
                max: s.cache_entries.max(1),
                map: HashMap::new(),
                order: BTreeMap::new(),
                seq: 0,
            }),
            outage: Mutex::new(Outage {
                backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
                until: None,
                why: String::new(),
            }),
            reviews: tokio::sync::Semaphore::new(MAX_REVIEWS),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<String, AuthError>> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(key, Instant::now())
            .map(|r| r.map_err(AuthError::Unauthenticated))
    }

    /// The node of a ServiceAccount token's pod.
    pub async fn node_of(&self, token: &str) -> Result<String, AuthError> {
        let key = digest(token);
        if let Some(r) = self.cached(&key) {
            return r;
        }
        if !self.kube {
            return Err(AuthError::Unauthenticated(
                "not a static token, and kube = false: ServiceAccount tokens cannot be reviewed"
                    .into(),
            ));
        }
        let Some(client) = self.client.get() else {
            return Err(AuthError::Unavailable {
                why: "no Kubernetes access (yet)".into(),
                retry_after: BACKOFF_MIN,
            });
        };
        self.blocked()?;
        let _permit = self.reviews.acquire().await;
        // Another request may have reviewed the same token meanwhile.
        if let Some(r) = self.cached(&key) {
            return r;
        }
        self.blocked()?;
        let verdict = tokio::time::timeout(REVIEW_TIMEOUT, self.review(client, token))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", REVIEW_TIMEOUT.as_secs())));
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match verdict {
            Ok(Verdict::Node(node, exp)) => {
                self.recovered();
                let left = exp
                    .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
                    .unwrap_or(MAX_CACHE)
                    .min(MAX_CACHE);
                cache.put(key, Ok(node.clone()), now + left);
                Ok(node)
            }
            Ok(Verdict::Refused(why)) => {
                self.recovered();
                cache.put(key, Err(why.clone()), now + REFUSED_CACHE);
                Err(AuthError::Unauthenticated(why))
            }
            Err(why) => {
                drop(cache);
                let mut o = self.outage.lock().unwrap_or_else(|e| e.into_inner());
                let d = o.backoff.next_delay();
                o.until = Some(now + d);
                o.why.clone_from(&why);
                Err(AuthError::Unavailable {
                    why,
                    retry_after: d,
                })
            }
        }
    }

    /// Unavailable while the backoff after a failed review runs.
    fn blocked(&self) -> Result<(), AuthError> {
        let o = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        match o
            .until
            .and_then(|u| u.checked_duration_since(Instant::now()))
        {
            Some(left) if !left.is_zero() => Err(AuthError::Unavailable {
                why: o.why.clone(),
                retry_after: left,
            }),
            _ => Ok(()),
        }
    }

    fn recovered(&self) {
        let mut o = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        if o.until.take().is_some() {
            tracing::info!(message = "TokenReview works again.");
        }
        o.backoff.reset();
    }

    /// One TokenReview (and the pod lookup when the review names no node). Err: the API
    /// server could not answer.
    async fn review(&self, client: &::kube::Client, token: &str) -> Result<Verdict, String> {
        let tr = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: ::kube::Api<TokenReview> = ::kube::Api::all(client.clone());
        let done = api
            .create(&::kube::api::PostParams::default(), &tr)
            .await
            .map_err(|e| match &e {
                ::kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
                    "TokenReview refused ({e}): the collector's ServiceAccount needs RBAC create on tokenreviews.authentication.k8s.io"
                ),
                _ => format!("TokenReview failed: {e}"),
            })?;
        let Some(status) = done.status else {
            return Err("TokenReview answered without a status".into());
        };
        let (username, pod, pod_uid) = match self.judge(&status) {
            Judged::Refused(why) => return Ok(Verdict::Refused(why)),
            Judged::Node(node) => return Ok(Verdict::Node(node, expiry(token))),
            Judged::Pod { username, pod, uid } => (username, pod, uid),
        };
        let ns = username.split(':').nth(2).unwrap_or_default().to_string();
        let pods: ::kube::Api<Pod> = ::kube::Api::namespaced(client.clone(), &ns);
        let found = pods.get_opt(&pod).await.map_err(|e| match &e {
            ::kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
                "pod lookup refused ({e}): the collector's ServiceAccount needs RBAC get on pods"
            ),
            _ => format!("pod lookup failed: {e}"),
        })?;
        let Some(p) = found else {
            return Ok(Verdict::Refused(format!(
                "the token's pod {ns}/{pod} does not exist"
            )));
        };
        if pod_uid.is_some() && p.metadata.uid != pod_uid {
            return Ok(Verdict::Refused(format!(
                "the token's pod {ns}/{pod} was replaced (uid differs)"
            )));
        }
        match p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()) {
            Some(node) => Ok(Verdict::Node(node, expiry(token))),
            None => Ok(Verdict::Refused(format!(
                "the token's pod {ns}/{pod} is not on a node"
            ))),
        }
    }

    /// What a review's status says, before any pod lookup.
    fn judge(&self, status: &TokenReviewStatus) -> Judged {
        if status.authenticated != Some(true) {
            let why = status
                .error
                .as_deref()
                .filter(|e| !e.is_empty())
                .unwrap_or("the API server did not authenticate the token");
            return Judged::Refused(format!("token not valid: {}", clip(why)));
        }
        let for_us = status
            .audiences
            .iter()
            .flatten()
            .any(|a| self.audiences.contains(a));
        if !for_us {
            return Judged::Refused(format!(
                "token not issued for audience {} (a projected serviceAccountToken with that audience)",
                self.audiences.join(" or ")
            ));
        }
        let Some(user) = &status.user else {
            return Judged::Refused("the review names no user".into());
        };
        let username = user.username.clone().unwrap_or_default();
        if !self.accounts.contains(&username) {
            return Judged::Refused(format!(
                "user '{}' is not an accepted ServiceAccount (auth_service_accounts)",
                clip(&username)
            ));
        }
        let first = |k: &str| {
            user.extra
                .as_ref()
                .and_then(|x| x.get(k))
                .and_then(|v| v.first())
                .filter(|v| !v.is_empty())
                .cloned()
        };
        if let Some(node) = first(NODE_NAME_KEY) {
            return Judged::Node(node);
        }
        match first(POD_NAME_KEY) {
            Some(pod) => Judged::Pod {
                username,
                pod,
                uid: first(POD_UID_KEY),
            },
            None => Judged::Refused(
                "token is not bound to a pod: mount a projected serviceAccountToken".into(),
            ),
        }
    }
}

enum Judged {
    Refused(String),
    Node(String),
    Pod {
        username: String,
        pod: String,
        uid: Option<String>,
    },
}

/// At most 200 characters of text from the API server or a sender, for a log line.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The `exp` claim of a JWT, read without verifying it (the review did): only ever used to
/// cache for less time.
pub fn expiry(token: &str) -> Option<SystemTime> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn reviewer() -> Reviewer {
        let s = AuthSettings {
            required: true,
            kube: true,
            audiences: vec!["headroom-collector".into()],
            service_accounts: vec!["system:serviceaccount:headroom:headroom-agent".into()],
            static_tokens_file: None,
            cache_entries: 2,
        };
        Reviewer::new(&s, Default::default())
    }

    fn status(user: &str, extra: &[(&str, &str)], audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            error: None,
            user: Some(UserInfo {
                username: Some(user.into()),
                uid: Some("sa-uid".into()),
                groups: Some(vec!["system:serviceaccounts".into()]),
                extra: Some(
                    extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                        .collect(),
                ),
            }),
        }
    }

    #[test]
    fn a_review_is_judged_by_audience_account_and_binding() {
        let r = reviewer();
        let sa = "system:serviceaccount:headroom:headroom-agent";
        let aud = ["headroom-collector"];
        let node = status(sa, &[(NODE_NAME_KEY, "n1"), (POD_NAME_KEY, "p")], &aud);
        assert!(matches!(r.judge(&node), Judged::Node(n) if n == "n1"));
        let pod = status(sa, &[(POD_NAME_KEY, "p"), (POD_UID_KEY, "u")], &aud);
        assert!(
            matches!(r.judge(&pod), Judged::Pod { pod, uid: Some(u), .. } if pod == "p" && u == "u")
        );
        let cases = [
            status(
                sa,
                &[(NODE_NAME_KEY, "n1")],
                &["https://kubernetes.default.svc"],
            ),
            status(
                "system:serviceaccount:default:default",
                &[(NODE_NAME_KEY, "n1")],
                &aud,
            ),
            status(sa, &[], &aud),
            TokenReviewStatus {
                authenticated: Some(false),
                error: Some("token has expired".into()),
                ..Default::default()
            },
        ];
        for (i, s) in cases.iter().enumerate() {
            assert!(matches!(r.judge(s), Judged::Refused(_)), "case {i}");
        }
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let mut c = Cache {
            max: 2,
            map: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        };
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        c.put([1; 32], Ok("a".into()), later);
        c.put([2; 32], Ok("b".into()), later);
        c.put([3; 32], Err("no".into()), later);
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.get(&[1; 32], now), None, "the oldest went first");
        assert_eq!(c.get(&[3; 32], now), Some(Err("no".into())));
        assert_eq!(c.get(&[2; 32], later), None, "expired");
        assert_eq!((c.map.len(), c.order.len()), (1, 1));
    }

    #[test]
    fn expiry_reads_the_exp_claim_only_when_there_is_one() {
        use base64::Engine;
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.sig",
            e("{\"alg\":\"RS256\"}"),
            e("{\"exp\":1700000000}")
        );
        assert_eq!(
            expiry(&t),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        for bad in [
            "opaque",
            "a.b.c",
            "a..c",
            &format!("x.{}.y", e("{\"exp\":\"soon\"}")),
        ] {
            assert_eq!(expiry(bad), None, "{bad}");
        }
    }
}
