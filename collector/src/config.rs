//! The collector's one configuration struct: a TOML file (`--config`), overridden by flags.

use crate::alerts::SinkSettings;
use crate::check::{duration, Check, Invalid};
use crate::fleet::{Limits, HISTORY};
use crate::forward::TracesProtocol;
use crate::rules::{RulesConfig, Thresholds};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every field has a default, so an empty file (or none) is a valid configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OTLP/gRPC receiver (`opentelemetry.proto.collector.{metrics,trace}.v1` services).
    pub otlp_grpc_listen: String,
    /// OTLP/HTTP receiver: `POST /v1/metrics` and `/v1/traces`, protobuf or JSON, gzip or not.
    pub otlp_http_listen: String,
    /// API (`/api/v1/fleet`), status page (`/`), `/metrics`, `/healthz`, `/readyz`.
    pub http_listen: String,
    /// Largest request body accepted after decompression; larger ones get 413 /
    /// RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
    /// Memory the collector aims to stay under (`512MiB`, `1GiB`; KiB/MiB/GiB or plain bytes):
    /// its resident set plus what requests being decoded will need. Over 90 % of it, ingest
    /// sheds requests before reading them (HTTP 429 with Retry-After, gRPC
    /// RESOURCE_EXHAUSTED); a request whose decoded size would not fit is shed before it is
    /// decoded, and one that alone would take over a quarter of it gets 413 /
    /// RESOURCE_EXHAUSTED. Set it below the container's memory limit.
    pub memory_limit: String,
    /// Most OTLP requests (HTTP and gRPC together) handled at a time; further ones are shed
    /// (429 / RESOURCE_EXHAUSTED) before their body is read.
    pub max_concurrent_requests: usize,
    /// A node that sent nothing for this long leaves the fleet.
    pub node_expiry: String,
    /// Most distinct attribute sets kept per metric and node (other OTLP senders' metrics);
    /// further series are rejected and counted.
    pub max_series_per_metric: usize,
    /// Most distinct metric names kept per node.
    pub max_metrics_per_node: usize,
    /// Most interfaces kept per node.
    pub max_interfaces_per_node: usize,
    /// Most nodes in the fleet; data from further nodes is rejected until some expire.
    pub max_nodes: usize,
    /// Most listeners (pod, container, port) kept per node; further ones are rejected.
    pub max_listeners_per_node: usize,
    /// Most shadowed probes (pod, container, probe kind) kept per node.
    pub max_probes_per_node: usize,
    /// Most nodes one request may add to the fleet; further new nodes in it are rejected and
    /// counted (an agent sends one node per request, a gateway a batch).
    pub max_new_nodes_per_request: usize,
    /// Most latest-value series (other senders' metrics) over all nodes together: the bound
    /// that `max_series_per_metric` × `max_metrics_per_node` × `max_nodes` is not.
    pub max_series: usize,
    /// Most findings tracked; over it the oldest resolved one is forgotten, and with none
    /// resolved new findings are not tracked (both counted).
    pub max_findings: usize,
    /// Span of history the workload figures (busy mean/p95/max, queue max, saturated
    /// seconds) and the probe attempt counts cover: long enough for an HPA's view of load,
    /// short enough that memory stays small (every listener keeps each window of this span).
    pub workload_history: String,
    /// Span of measured pod use RequestsRightSizing sizes requests from (16 bytes per
    /// container and hour, whatever the pod count; at most 7 days).
    pub sizing_history: String,
    /// Where received spans go on to: an OTLP/HTTP base URL such as http://jaeger:4318
    /// (spans are POSTed to `/v1/traces`). Unset: spans are counted, not forwarded.
    pub traces_endpoint: Option<String>,
    /// Alertmanager base URLs (`--alertmanager-url`, repeatable): findings that fire are
    /// POSTed to each one's `/api/v2/alerts`, resent while firing, with `endsAt` on resolve.
    pub alertmanager_urls: Vec<String>,
    /// A URL that gets every finding state change as a JSON POST (`--webhook-url`).
    pub webhook_url: Option<String>,
    /// How often firing alerts are sent again to Alertmanager.
    pub alert_resend_interval: String,
    /// Base of each alert's `runbook_url` annotation; `#<rule, lowercased>` is appended.
    pub runbook_base_url: String,
    /// Findings state (pending/firing/resolved and their times), written atomically after
    /// each change and read at start, so a restart neither pages again nor forgets an alert.
    /// Unset: kept in memory only.
    pub state_file: Option<String>,
    /// Watch HorizontalPodAutoscalers, Deployments, StatefulSets and Nodes through the
    /// Kubernetes API (access as kube-rs infers it: in-cluster, else KUBECONFIG). `false` for a
    /// collector outside a cluster: HPAOverScaling then has nothing to compare.
    pub kube: bool,
    /// Thresholds and durations of the rules, and the evaluation interval.
    pub rules: RulesConfig,
    /// Instance types and prices over the shipped catalog (ScaleDownBlocked's $/month): CSV rows
    /// `instance_type,vcpu,memory_mib,max_enis,region,usd_per_hour` that add types or replace
    /// the shipped row of the same type and region. A bad row stops the collector (exit 64).
    pub instance_catalog_file: Option<String>,
    /// How spans go to `traces_endpoint`: `http` (OTLP/HTTP protobuf, POST `/v1/traces`) or
    /// `grpc` (the OTLP `TraceService/Export` call; the endpoint is then e.g. http://tempo:4317).
    pub traces_protocol: String,
    /// Who may send OTLP: `required` (default) takes only requests with a bearer token, a
    /// node's projected ServiceAccount token (verified by TokenReview; it writes only its own
    /// node) or a static token from `auth_static_tokens_file` (it writes only its cluster);
    /// `none` takes anyone's data for any node (logged as a warning at start).
    pub auth: String,
    /// Audiences a ServiceAccount token must be issued for (the DaemonSet's projected token).
    pub auth_audiences: Vec<String>,
    /// ServiceAccounts whose tokens are accepted, as `system:serviceaccount:NAMESPACE:NAME`.
    /// Empty: `headroom-agent` in the collector's namespace ($POD_NAMESPACE, else the
    /// in-cluster namespace file, else `headroom`).
    pub auth_service_accounts: Vec<String>,
    /// File of static tokens for foreign senders such as an OpenTelemetry Collector gateway:
    /// one `TOKEN CLUSTER` per line (`#` comments); read again when it changes.
    pub auth_static_tokens_file: Option<String>,
    /// Most reviewed tokens remembered (by SHA-256); each for at most 5 minutes.
    pub auth_cache_entries: usize,
    /// `[tls]`: TLS on every listener (OTLP gRPC and HTTP, and the API/page/metrics), from
    /// PEM files re-read when they change. Unset: plain TCP.
    pub tls: headroom_service::tls::TlsConfig,
    /// `[web]`: credentials the API, status page and `/metrics` ask for (exporter-toolkit's
    /// `basic_auth_users`, or a bearer token file); `/healthz` and `/readyz` stay open.
    pub web: headroom_service::web::WebConfig,
    /// `[alertmanager_http]`: https trust and credentials for every Alertmanager, in the
    /// names of Prometheus' `http_config`.
    pub alertmanager_http: crate::send::HttpClientConfig,
    /// `[webhook_http]`: the same for `webhook_url`.
    pub webhook_http: crate::send::HttpClientConfig,
}

impl Default for Config {
    /// The fleet's limits come from [`Limits::default`], their one home.
    fn default() -> Self {
        let l = Limits::default();
        let text = |d| humantime::format_duration(d).to_string();
        Config {
            otlp_grpc_listen: "0.0.0.0:4317".into(),
            otlp_http_listen: "0.0.0.0:4318".into(),
            http_listen: "0.0.0.0:9464".into(),
            max_request_bytes: 8 << 20,
            memory_limit: "768MiB".into(),
            max_concurrent_requests: 16,
            node_expiry: text(l.node_expiry),
            max_series_per_metric: l.max_series_per_metric,
            max_metrics_per_node: l.max_metrics_per_node,
            max_interfaces_per_node: l.max_interfaces_per_node,
            max_nodes: l.max_nodes,
            max_listeners_per_node: l.max_listeners_per_node,
            max_probes_per_node: l.max_probes_per_node,
            max_new_nodes_per_request: l.max_new_nodes_per_request,
            max_series: l.max_series,
            max_findings: crate::findings::engine::MAX_FINDINGS,
            workload_history: text(l.workload_history),
            // "24h", not humantime's "1day": as the docs and ConfigMap write it.
            sizing_history: "24h".into(),
            traces_endpoint: None,
            alertmanager_urls: Vec::new(),
            webhook_url: None,
            alert_resend_interval: "1m".into(),
            runbook_base_url: DEFAULT_RUNBOOK.into(),
            state_file: None,
            kube: true,
            rules: RulesConfig::default(),
            instance_catalog_file: None,
            traces_protocol: "http".into(),
            auth: "required".into(),
            auth_audiences: vec![DEFAULT_AUDIENCE.into()],
            auth_service_accounts: Vec::new(),
            auth_static_tokens_file: None,
            auth_cache_entries: 10_000,
            tls: Default::default(),
            web: Default::default(),
            alertmanager_http: Default::default(),
            webhook_http: Default::default(),
        }
    }
}

/// The audience the DaemonSet's projected token is issued for.
pub const DEFAULT_AUDIENCE: &str = "headroom-collector";

/// The collector's namespace: $POD_NAMESPACE, else the in-cluster namespace file, else
/// `headroom` (the deploy manifests' namespace).
fn own_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "headroom".into())
}

/// The runbook's path in the headroom repository; point `runbook_base_url` at where you host it.
pub const DEFAULT_RUNBOOK: &str = "docs/runbook.md";

/// A configuration checked and turned into the types the collector runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub otlp_grpc_listen: SocketAddr,
    pub otlp_http_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub max_request_bytes: usize,
    /// Bytes.
    pub memory_limit: usize,
    pub max_concurrent_requests: usize,
    pub max_findings: usize,
    pub limits: Limits,
    pub traces_endpoint: Option<hyper::Uri>,
    pub sinks: SinkSettings,
    pub state_file: Option<std::path::PathBuf>,
    pub kube: bool,
    pub rules: Thresholds,
    pub instance_catalog_file: Option<PathBuf>,
    pub traces_protocol: TracesProtocol,
    pub auth: crate::auth::AuthSettings,
    /// TLS on every listener, when on.
    pub tls: Option<headroom_service::tls::TlsFiles>,
    pub web: headroom_service::web::WebConfig,
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Reads a TOML file; the error names the file and the problem.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_string(),
    })
}

fn address(flag: &str, text: &str, example: &str) -> Result<SocketAddr, Invalid> {
    text.parse().map_err(|_| {
        Invalid::text(
            format!("--{flag}"),
            text,
            format!("expected ADDRESS:PORT such as {example}"),
        )
    })
}

fn traces_protocol(text: &str) -> Result<TracesProtocol, Invalid> {
    match text {
        "http" | "http/protobuf" => Ok(TracesProtocol::Http),
        "grpc" => Ok(TracesProtocol::Grpc),
        other => Err(Invalid::text(
            "--traces-protocol",
            other,
            "expected grpc or http",
        )),
    }
}

impl Config {
    /// Checks every field and returns all problems at once.
    pub fn validate(&self) -> Result<Settings, Vec<Invalid>> {
        let mut check = Check::default();
        let grpc = check.take(address(
            "otlp-grpc-listen",
            &self.otlp_grpc_listen,
            "0.0.0.0:4317",
        ));
        let http = check.take(address(
            "otlp-http-listen",
            &self.otlp_http_listen,
            "0.0.0.0:4318",
        ));
        let api = check.take(address("http-listen", &self.http_listen, "0.0.0.0:9464"));
        let expiry = check.take(duration(
            "node_expiry",
            &self.node_expiry,
            Duration::from_secs(10),
            "must be at least 10s",
            "expected a duration such as 15m",
        ));
        const HISTORY_RANGE: &str = "expected a duration from 10s to 1h such as 15m";
        let history = check.take(
            duration(
                "workload_history",
                &self.workload_history,
                Duration::from_secs(10),
                HISTORY_RANGE,
                HISTORY_RANGE,
            )
            .and_then(|d| {
                (d <= HISTORY).then_some(d).ok_or_else(|| {
                    Invalid::text("workload_history", &self.workload_history, HISTORY_RANGE)
                })
            }),
        );
        const SIZING_RANGE: &str = "expected a duration from 1h to 7d such as 24h";
        let sizing = check.take(
            duration(
                "sizing_history",
                &self.sizing_history,
                Duration::from_secs(3600),
                SIZING_RANGE,
                SIZING_RANGE,
            )
            .and_then(|d| {
                (d <= crate::fleet::MAX_SIZING_HISTORY)
                    .then_some(d)
                    .ok_or_else(|| {
                        Invalid::text("sizing_history", &self.sizing_history, SIZING_RANGE)
                    })
            }),
        );
        let traces_protocol = check.take(traces_protocol(&self.traces_protocol));
        if !(1024..=(256 << 20)).contains(&self.max_request_bytes) {
            check.push(Invalid::number(
                "max_request_bytes",
                self.max_request_bytes,
                "must be between 1024 and 268435456",
            ));
        }
        for (name, v) in [
            ("max_series_per_metric", self.max_series_per_metric),
            ("max_metrics_per_node", self.max_metrics_per_node),
            ("max_interfaces_per_node", self.max_interfaces_per_node),
            ("max_nodes", self.max_nodes),
            ("max_listeners_per_node", self.max_listeners_per_node),
            ("max_probes_per_node", self.max_probes_per_node),
            ("max_new_nodes_per_request", self.max_new_nodes_per_request),
            ("max_series", self.max_series),
            ("max_findings", self.max_findings),
            ("max_concurrent_requests", self.max_concurrent_requests),
        ] {
            if v == 0 {
                check.push(Invalid::number(name, 0, "must be at least 1"));
            }
        }
        let memory_limit = check.take(memory(&self.memory_limit));
        if let Some(m) = memory_limit {
            // One request's decoded share is a quarter of the limit: it must hold a body.
            if m / 4 < self.max_request_bytes {
                check.push(Invalid::text(
                    "memory_limit",
                    &self.memory_limit,
                    format!(
                        "must be at least four times max_request_bytes ({} bytes)",
                        self.max_request_bytes
                    ),
                ));
            }
        }
        let traces_endpoint = match &self.traces_endpoint {
            Some(e) => check
                .take(crate::forward::traces_url(
                    e,
                    traces_protocol.unwrap_or(TracesProtocol::Http),
                ))
                .map(Some),
            None => Some(None),
        };
        let alertmanager_urls: Option<Vec<hyper::Uri>> = self
            .alertmanager_urls
            .iter()
            .map(|u| {
                check
                    .take(http_url("alertmanager-url", u, "http://alertmanager:9093"))
                    .map(|_| alerts_url(u))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let webhook_url = match &self.webhook_url {
            Some(u) => check
                .take(http_url(
                    "webhook-url",
                    u,
                    "http://hooks.example:8080/headroom",
                ))
                .map(Some),
            None => Some(None),
        };
        let resend = check.take(duration(
            "alert_resend_interval",
            &self.alert_resend_interval,
            Duration::from_secs(1),
            "expected a duration of at least 1s, such as 1m",
            "expected a duration of at least 1s, such as 1m",
        ));
        let rules = check.take_all(self.rules.validate());
        let tls = check.take(
            self.tls
                .files("tls")
                .map_err(|why| Invalid::Section("tls", why)),
        );
        let am_http = check.take(self.alertmanager_http.check("alertmanager_http"));
        let webhook_http = check.take(self.webhook_http.check("webhook_http"));
        if self.instance_catalog_file.as_deref() == Some("") {
            check.push(Invalid::text(
                "instance_catalog_file",
                "",
                "name a CSV file such as /etc/headroom/instances.csv, or leave it unset",
            ));
        }
        if self.state_file.as_deref() == Some("") {
            check.push(Invalid::text(
                "state_file",
                "",
                "name a file such as /var/lib/headroom/findings.json, or leave it unset",
            ));
        }
        let auth = check.take(self.auth_settings());
        let mut seen = std::collections::HashSet::new();
        for a in [grpc, http, api].into_iter().flatten() {
            if a.port() != 0 && !seen.insert(a) {
                check.push(Invalid::SharedAddress(a));
            }
        }
        let settings = (|| {
            Some(Settings {
                otlp_grpc_listen: grpc?,
                otlp_http_listen: http?,
                http_listen: api?,
                max_request_bytes: self.max_request_bytes,
                memory_limit: memory_limit?,
                max_concurrent_requests: self.max_concurrent_requests,
                max_findings: self.max_findings,
                traces_endpoint: traces_endpoint?,
                sinks: SinkSettings {
                    alertmanagers: alertmanager_urls?,
                    webhook: webhook_url?,
                    alertmanager_http: am_http?,
                    webhook_http: webhook_http?,
                    resend_interval: resend?,
                    runbook_base_url: self.runbook_base_url.trim_end_matches('#').to_string(),
                },
                state_file: self.state_file.as_ref().map(PathBuf::from),
                kube: self.kube,
                rules: rules?,
                instance_catalog_file: self.instance_catalog_file.as_ref().map(PathBuf::from),
                traces_protocol: traces_protocol?,
                auth: auth?,
                tls: tls?,
                web: self.web.clone(),
                limits: Limits {
                    node_expiry: expiry?,
                    max_series_per_metric: self.max_series_per_metric,
                    max_metrics_per_node: self.max_metrics_per_node,
                    max_interfaces_per_node: self.max_interfaces_per_node,
                    max_nodes: self.max_nodes,
                    max_listeners_per_node: self.max_listeners_per_node,
                    max_probes_per_node: self.max_probes_per_node,
                    max_new_nodes_per_request: self.max_new_nodes_per_request,
                    max_series: self.max_series,
                    workload_history: history?,
                    sizing_history: sizing?,
                },
            })
        })();
        check.finish(settings)
    }
}

impl Config {
    fn auth_settings(&self) -> Result<crate::auth::AuthSettings, Invalid> {
        let required = match self.auth.as_str() {
            "required" => true,
            "none" => false,
            other => {
                return Err(Invalid::text(
                    "--auth",
                    other,
                    "expected required (bearer tokens, the default) or none (anyone may write any node)",
                ))
            }
        };
        if self.auth_audiences.iter().all(|a| a.trim().is_empty()) {
            return Err(Invalid::text(
                "auth_audiences",
                "",
                "name at least one audience, such as headroom-collector",
            ));
        }
        for sa in &self.auth_service_accounts {
            let parts: Vec<&str> = sa.split(':').collect();
            if parts.len() != 4
                || parts[..2] != ["system", "serviceaccount"]
                || parts[2].is_empty()
                || parts[3].is_empty()
            {
                return Err(Invalid::text(
                    "auth_service_accounts",
                    sa,
                    "expected system:serviceaccount:NAMESPACE:NAME, such as system:serviceaccount:headroom:headroom-agent",
                ));
            }
        }
        if self.auth_cache_entries == 0 {
            return Err(Invalid::number(
                "auth_cache_entries",
                0,
                "must be at least 1",
            ));
        }
        let static_tokens_file = match self.auth_static_tokens_file.as_deref() {
            Some("") => {
                return Err(Invalid::text(
                    "auth_static_tokens_file",
                    "",
                    "name a file such as /etc/headroom/tokens/gateways, or leave it unset",
                ))
            }
            Some(f) => {
                let p = PathBuf::from(f);
                // A file given must be usable from the start (later changes keep the old tokens).
                if required {
                    crate::auth::statics::StaticTokens::check(&p)
                        .map_err(|e| Invalid::text("auth_static_tokens_file", f, e.to_string()))?;
                }
                Some(p)
            }
            None => None,
        };
        let service_accounts = if self.auth_service_accounts.is_empty() {
            vec![format!(
                "system:serviceaccount:{}:headroom-agent",
                own_namespace()
            )]
        } else {
            self.auth_service_accounts.clone()
        };
        Ok(crate::auth::AuthSettings {
            required,
            kube: self.kube,
            audiences: self.auth_audiences.clone(),
            service_accounts,
            static_tokens_file,
            cache_entries: self.auth_cache_entries,
        })
    }
}

/// A size such as `512MiB`, `1GiB`, `65536KiB` or plain bytes, at least 32 MiB.
fn memory(text: &str) -> Result<usize, Invalid> {
    const EXPECTED: &str = "expected a size of at least 32MiB such as 512MiB or 1GiB";
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let unit = match t[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(Invalid::text("memory_limit", text, EXPECTED)),
    };
    t[..digits]
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|&b| b >= 32 << 20)
        .ok_or_else(|| Invalid::text("memory_limit", text, EXPECTED))
}

/// An http:// or https:// URL with a host.
fn http_url(flag: &str, text: &str, example: &str) -> Result<hyper::Uri, Invalid> {
    let bad = |why: &str| {
        Invalid::text(
            format!("--{flag}"),
            text,
            format!("{why}, such as {example}"),
        )
    };
    let uri: hyper::Uri = text.parse().map_err(|_| bad("expected a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(bad("expected an http:// or https:// URL"));
    }
    Ok(uri)
}

/// `BASE/api/v2/alerts` for an Alertmanager base URL (kept when it already ends so).
fn alerts_url(base: &str) -> hyper::Uri {
    let b = base.trim_end_matches('/');
    let full = if b.ends_with("/api/v2/alerts") {
        b.to_string()
    } else {
        format!("{b}/api/v2/alerts")
    };
    full.parse()
        .expect("a valid base URL stays valid with a path appended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_defaults_are_the_fleet_limits() {
        let c = Config::default();
        assert_eq!(
            (c.node_expiry.as_str(), c.workload_history.as_str()),
            ("15m", "15m")
        );
        assert_eq!(c.validate().unwrap().limits, Limits::default());
    }

    #[test]
    fn defaults_are_valid() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.otlp_grpc_listen.port(), 4317);
        assert_eq!(s.otlp_http_listen.port(), 4318);
        assert_eq!(s.http_listen.port(), 9464);
        assert_eq!(s.max_request_bytes, 8 << 20);
        assert_eq!(s.limits.node_expiry, Duration::from_secs(900));
        assert_eq!(s.limits.workload_history, Duration::from_secs(900));
        assert_eq!(s.traces_protocol, TracesProtocol::Http);
        assert_eq!(s.memory_limit, 768 << 20);
        assert_eq!(s.max_concurrent_requests, 16);
    }

    #[test]
    fn memory_limit_takes_binary_units_and_a_floor() {
        assert_eq!(memory("1GiB"), Ok(1 << 30));
        assert_eq!(memory("65536KiB"), Ok(64 << 20));
        assert_eq!(memory("33554432"), Ok(32 << 20));
        for bad in ["1MiB", "512MB", "lots", "", "99999999999999999999GiB"] {
            assert!(memory(bad).is_err(), "{bad}");
        }
        let c = Config {
            memory_limit: "32MiB".into(),
            max_request_bytes: 16 << 20,
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        assert!(
            errs[0].to_string().contains("four times max_request_bytes"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let c = Config {
            otlp_grpc_listen: "nope".into(),
            otlp_http_listen: "127.0.0.1:1".into(),
            http_listen: "127.0.0.1:1".into(),
            max_request_bytes: 1,
            node_expiry: "soon".into(),
            max_series_per_metric: 0,
            traces_endpoint: Some("jaeger:4318".into()),
            workload_history: "2h".into(),
            traces_protocol: "thrift".into(),
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 8, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("workload_history '2h'")));
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("--traces-protocol 'thrift'")));
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("--otlp-grpc-listen 'nope'")));
        assert!(errs.iter().any(|e| e.to_string().contains("two listeners")));
    }

    #[test]
    fn alert_urls_and_rules_are_checked() {
        let c = Config {
            alertmanager_urls: vec![
                "http://am:9093".into(),
                "http://am2:9093/api/v2/alerts/".into(),
            ],
            ..Config::default()
        };
        let s = c.validate().unwrap();
        assert_eq!(
            s.sinks.alertmanagers[0].to_string(),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            s.sinks.alertmanagers[1].to_string(),
            "http://am2:9093/api/v2/alerts"
        );
        assert_eq!(s.sinks.resend_interval, Duration::from_secs(60));
        assert!(s.kube);
        let c = Config {
            alertmanager_urls: vec!["am:9093".into()],
            webhook_url: Some("ftp://x".into()),
            alert_resend_interval: "0s".into(),
            rules: RulesConfig {
                dns_warning: 2.0,
                ..RulesConfig::default()
            },
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("--alertmanager-url 'am:9093'")));
        assert!(errs
            .iter()
            .any(|e| e.to_string().contains("rules.dns_critical")));
    }

    #[test]
    fn auth_is_required_by_default_and_checked() {
        let s = Config::default().validate().unwrap();
        assert!(s.auth.required);
        assert_eq!(s.auth.audiences, [DEFAULT_AUDIENCE]);
        assert_eq!(s.auth.service_accounts.len(), 1);
        assert!(s.auth.service_accounts[0].starts_with("system:serviceaccount:"));
        assert!(s.auth.service_accounts[0].ends_with(":headroom-agent"));
        let none = Config {
            auth: "none".into(),
            ..Config::default()
        };
        assert!(!none.validate().unwrap().auth.required);
        let c = Config {
            auth: "off".into(),
            auth_audiences: vec![],
            auth_service_accounts: vec!["headroom-agent".into()],
            auth_cache_entries: 0,
            auth_static_tokens_file: Some("/nonexistent/tokens".into()),
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 1, "the first auth problem: {errs:?}");
        assert!(errs[0].to_string().contains("--auth 'off'"), "{errs:?}");
        for (c, says) in [
            (
                Config {
                    auth_audiences: vec![],
                    ..Config::default()
                },
                "auth_audiences",
            ),
            (
                Config {
                    auth_service_accounts: vec!["headroom-agent".into()],
                    ..Config::default()
                },
                "system:serviceaccount:NAMESPACE:NAME",
            ),
            (
                Config {
                    auth_cache_entries: 0,
                    ..Config::default()
                },
                "auth_cache_entries",
            ),
            (
                Config {
                    auth_static_tokens_file: Some("/nonexistent/tokens".into()),
                    ..Config::default()
                },
                "cannot read auth_static_tokens_file",
            ),
        ] {
            let e = c.validate().unwrap_err();
            assert!(e[0].to_string().contains(says), "{says}: {e:?}");
        }
    }

    #[test]
    fn file_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("collector.toml");
        std::fs::write(&p, "http_listen = \"127.0.0.1:9999\"\n").unwrap();
        let c = load(&p).unwrap();
        assert_eq!(c.http_listen, "127.0.0.1:9999");
        assert_eq!(c.otlp_grpc_listen, "0.0.0.0:4317");
        std::fs::write(&p, "listen = \"x\"\n").unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("unknown field `listen`"));
    }
}
