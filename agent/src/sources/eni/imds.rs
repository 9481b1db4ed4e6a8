//! A small IMDSv2 client (hyper): session token first (`PUT /latest/api/token`), then GETs with
//! the token, one keep-alive connection, few packets (they count toward the link-local limit).

use super::{parse_mac_listing, EniInfo, Identity};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The longest session IMDS grants (6 hours): one token PUT per 6 hours.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(21600);
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Bodies larger than this are not metadata.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("IMDS at {endpoint} is unreachable ({reason})")]
    Unreachable { endpoint: String, reason: String },
    #[error("IMDS at {endpoint} answered {status} for {path}")]
    Status {
        endpoint: String,
        path: String,
        status: u16,
    },
    #[error("IMDS at {endpoint} sent an invalid {path}: {reason}")]
    Invalid {
        endpoint: String,
        path: String,
        reason: String,
    },
}

impl ImdsError {
    /// True when nothing answered at all (not on EC2, IMDS disabled, hop limit).
    pub fn unreachable(&self) -> bool {
        matches!(self, ImdsError::Unreachable { .. })
    }
}

/// Checks an `--imds-endpoint` value: `http://HOST[:PORT]`, IPv6 in brackets.
pub fn validate_endpoint(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("invalid --imds-endpoint '{text}': {why}; expected a URL such as http://169.254.169.254 or http://[fd00:ec2::254]")
    };
    let uri: Uri = text.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported (IMDS does not speak TLS)"));
    }
    if uri.authority().is_none() {
        return Err(bad("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("give the endpoint only, without a path"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

pub struct ImdsClient {
    endpoint: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<(String, Instant)>,
    /// Session length asked for; refreshed a quarter (at most a minute) before it ends.
    pub token_ttl: Duration,
    /// Limit on each request, connect included.
    pub timeout: Duration,
    /// Requests sent (each costs a few link-local packets).
    pub requests: u64,
}

impl ImdsClient {
    /// `endpoint` as returned by [`validate_endpoint`]. Needs a Tokio runtime to run requests.
    pub fn new(endpoint: &str) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_secs(1)));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        ImdsClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            client,
            token: None,
            token_ttl: MAX_TOKEN_TTL,
            timeout: Duration::from_secs(1),
            requests: 0,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        header: (&str, String),
    ) -> Result<(StatusCode, Bytes), ImdsError> {
        let url = format!("{}{path}", self.endpoint);
        let unreachable = |reason: String| ImdsError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header.0, header.1)
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(format!("cannot build request: {e}")))?;
        self.requests += 1;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let mut reason = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    reason = format!("{reason}: {s}");
                    src = s.source();
                }
                reason
            })?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(reason)) => Err(unreachable(reason)),
            Err(_) => Err(unreachable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// A valid session token, asking for a new one when none is left or it ends soon.
    async fn token(&mut self) -> Result<String, ImdsError> {
        let margin = (self.token_ttl / 4).min(Duration::from_secs(60));
        if let Some((t, until)) = &self.token {
            if Instant::now() + margin < *until {
                return Ok(t.clone());
            }
        }
        let asked = Instant::now();
        let ttl = self.token_ttl.as_secs().clamp(1, MAX_TOKEN_TTL.as_secs());
        let path = "/latest/api/token";
        let (status, body) = self
            .send(Method::PUT, path, (TTL_HEADER, ttl.to_string()))
            .await?;
        if status != StatusCode::OK {
            return Err(self.status(path, status));
        }
        let token = self.text(path, &body)?.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.invalid(path, "not a token".into()));
        }
        self.token = Some((token.clone(), asked + Duration::from_secs(ttl)));
        Ok(token)
    }

    fn status(&self, path: &str, status: StatusCode) -> ImdsError {
        ImdsError::Status {
            endpoint: self.endpoint.clone(),
            path: path.to_string(),
            status: status.as_u16(),
        }
    }

    fn invalid(&self, path: &str, reason: String) -> ImdsError {
        ImdsError::Invalid {
            endpoint: self.endpoint.clone(),
            path: path.to_string(),
            reason,
        }
    }

    fn text(&self, path: &str, body: &[u8]) -> Result<String, ImdsError> {
        String::from_utf8(body.to_vec()).map_err(|_| self.invalid(path, "not UTF-8 text".into()))
    }

    /// `GET /latest/meta-data/PATH` as text. A 401 (token expired or revoked) gets one retry
    /// with a fresh token.
    pub async fn get(&mut self, path: &str) -> Result<String, ImdsError> {
        let full = format!("/latest/meta-data/{path}");
        for attempt in 0..2 {
            let token = self.token().await?;
            let (status, body) = self.send(Method::GET, &full, (TOKEN_HEADER, token)).await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.token = None;
                continue;
            }
            if status != StatusCode::OK {
                return Err(self.status(&full, status));
            }
            return self.text(&full, &body);
        }
        Err(self.status(&full, StatusCode::UNAUTHORIZED))
    }

    /// The instance and every ENI attached to it. An ENI whose metadata is malformed is left
    /// out with a warning (its interface reports `eni_id: null`); instance fields must be valid.
    pub async fn identity(&mut self) -> Result<Identity, ImdsError> {
        let instance_id = self.field("instance-id").await?;
        let instance_type = self.field("instance-type").await?;
        let availability_zone = self.field("placement/availability-zone").await?;
        let listing = self.get("network/interfaces/macs/").await?;
        let macs = parse_mac_listing(&listing)
            .map_err(|reason| self.invalid("/latest/meta-data/network/interfaces/macs/", reason))?;
        let mut enis = BTreeMap::new();
        for mac in macs {
            match self.eni(&mac).await {
                Ok(e) => {
                    enis.insert(mac, e);
                }
                Err(error @ ImdsError::Invalid { .. }) => {
                    tracing::warn!(message = "Malformed ENI metadata; this interface's ENI stays unknown.", %mac, %error);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Identity {
            instance_id,
            instance_type,
            availability_zone,
            enis,
        })
    }

    /// A one-line, printable field.
    async fn field(&mut self, path: &str) -> Result<String, ImdsError> {
        let v = self.get(path).await?;
        let v = v.trim();
        if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.invalid(
                &format!("/latest/meta-data/{path}"),
                format!("expected one word, got {:?}", truncate(v)),
            ));
        }
        Ok(v.to_string())
    }

    async fn eni(&mut self, mac: &str) -> Result<EniInfo, ImdsError> {
        let base = format!("network/interfaces/macs/{mac}/");
        let interface_id = self.field(&format!("{base}interface-id")).await?;
        let device = self.field(&format!("{base}device-number")).await?;
        let subnet = self.get(&format!("{base}subnet-ipv4-cidr-block")).await?;
        let primary = self.get(&format!("{base}vpc-ipv4-cidr-block")).await?;
        let blocks = self.get(&format!("{base}vpc-ipv4-cidr-blocks")).await?;
        let ips = self.get(&format!("{base}local-ipv4s")).await?;
        EniInfo::parse(&interface_id, &device, &subnet, &primary, &blocks, &ips)
            .map_err(|reason| self.invalid(&format!("/latest/meta-data/{base}"), reason))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
