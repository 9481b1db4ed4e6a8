//! The agent's one configuration struct: a TOML file (`--config`), overridden by flags.

use crate::interfaces::{Pattern, Selection};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Every field has a default, so an empty file (or none) is a valid configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Interfaces to measure, by name or glob (`eth*`). Empty: the node's physical interfaces
    /// (those with /sys/class/net/X/device), never pod-side veths, which would count twice.
    pub interfaces: Vec<String>,
    /// Resolvers whose packets count toward the link-local limit besides 169.254.169.253 and
    /// fd00:ec2::253, which always count. `auto` adds the VPC resolver once it is discovered.
    pub resolvers: Vec<String>,
    /// Where `run` serves /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Length of one report window in `run` (peaks and means are per window).
    pub report_interval: String,
    /// How often to look for interfaces that appeared (the VPC CNI attaches ENIs at runtime).
    pub rescan_interval: String,
    /// What counts the packets: `ebpf` (tcx programs counting in-line: the node's other
    /// traffic pays nothing; kernel ≥ 6.6, CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON), `af_packet`
    /// (a packet socket: the kernel clones every packet the interface sends; CAP_NET_RAW), or
    /// `auto`: eBPF where possible, else AF_PACKET with one log line saying why.
    pub tap: crate::sources::linklocal::capture::TapChoice,
    /// This node's name; defaults to $NODE_NAME, then the host name.
    pub node_name: Option<String>,
    /// Names resolved every `resolver_check_interval` against each checked resolver, recorded
    /// as `dns.resolve` spans and in `resolver_checks`. Empty: no checks.
    pub resolver_check_names: Vec<String>,
    /// Resolvers to check: `auto` (the counted resolvers, 169.254.169.253, and NodeLocal
    /// DNSCache 169.254.20.10 when this host holds it) and/or IPs such as the cluster DNS.
    pub resolver_check_targets: Vec<String>,
    /// How often to run the checks. Their packets count toward the limit too.
    pub resolver_check_interval: String,
    /// How long one check waits for an answer.
    pub resolver_check_timeout: String,
    /// Where /proc is. In a container, mount the host's /proc (with hostPID) and point here.
    /// In sidecar mode the agent reads its own /proc (the processes its pod shows it).
    pub proc_root: String,
    /// `node` (a DaemonSet: the host's /proc, every ENI), `sidecar` (inside one pod: its own
    /// network namespace, interfaces and processes; EKS Fargate), or `auto`: sidecar when
    /// there is no host /proc at `proc_root` and the agent runs in a pod
    /// (`KUBERNETES_SERVICE_HOST` is set), else node.
    pub mode: crate::mode::ModeChoice,
    /// Where the cgroup hierarchy is mounted (v2, or v1 with `cpu,cpuacct/` beneath it); the
    /// containers' `cpu.stat` is read under it for CPU throttling.
    pub cgroup_root: String,
    /// How often listeners, busy workers and accept queues are sampled (5 Hz by default).
    pub workers_sample_interval: String,
    /// The EC2 instance metadata service (IMDSv2), for ENI ids and the VPC resolver.
    /// IPv6: `http://[fd00:ec2::254]`.
    pub imds_endpoint: String,
    /// How often to refresh the ENI map from IMDS when nothing changed (each refresh costs a
    /// few dozen link-local packets); a new interface triggers a refresh at once.
    pub imds_refresh_interval: String,
    /// `[probes]`: shadowing of this node's pods' readiness/liveness/startup probes.
    pub probes: crate::sources::probes::ProbeConfig,
    /// `[listeners]`: caps on the listeners one report carries.
    pub listeners: crate::sources::listeners::ListenerConfig,
    /// `[pod_use]`: caps on the pods and containers measured from their cgroups.
    pub pod_use: crate::sources::pod_use::PodUseConfig,
    /// `[dns]`: the answer table behind the cacheable share and `cache_savings_pps` (what a
    /// node-local DNS cache would have answered).
    pub dns: crate::sources::dns::cache::DnsConfig,
    /// OTLP/HTTP endpoint for `run` to export each report window to (base URL such as
    /// http://headroom-collector:4318; `/v1/metrics` is appended). Unset: no export. Falls back
    /// to $OTEL_EXPORTER_OTLP_ENDPOINT.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`; falls back to $OTEL_EXPORTER_OTLP_PROTOCOL.
    pub otlp_protocol: Option<String>,
    /// Extra headers on OTLP requests (added to $OTEL_EXPORTER_OTLP_HEADERS).
    pub otlp_headers: std::collections::BTreeMap<String, String>,
    /// PEM file of the CA certificates an `https://` OTLP endpoint is verified against
    /// (default: $OTEL_EXPORTER_OTLP_CERTIFICATE; unset: the system's CA certificates).
    /// `otlp_ca_file` is the same field.
    #[serde(alias = "otlp_ca_file")]
    pub otlp_certificate: Option<String>,
    /// A directory where the export queue is also kept (the DaemonSet mounts a hostPath), so
    /// windows queued during a collector outage survive an agent restart. Unset: memory only.
    pub otlp_queue_dir: Option<String>,
    /// File holding a bearer token sent on every OTLP request (`Authorization: Bearer …`, HTTP
    /// and gRPC), read again when it changes: the DaemonSet mounts a projected ServiceAccount
    /// token (audience `headroom-collector`) here for a collector that requires
    /// authentication. Unset: no token. The token is never logged.
    pub otlp_token_file: Option<String>,
    /// The name the collector's certificate must carry when it is not the endpoint's host
    /// (an endpoint given by IP, or through a proxy).
    pub otlp_server_name: Option<String>,
    /// `[tls]`: serve /metrics, /healthz and /readyz over TLS from these PEM files (re-read
    /// when they change). The kubelet probes then need `scheme: HTTPS`.
    pub tls: headroom_service::tls::TlsConfig,
    /// `[web]`: credentials /metrics asks for (bcrypt `basic_auth_users`, or a bearer token
    /// file); /healthz and /readyz stay open.
    pub web: headroom_service::web::WebConfig,
}

/// Most checks (names × resolvers) per interval: they spend the same allowance they watch.
pub const MAX_CHECKS_PER_INTERVAL: usize = 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: Vec::new(),
            resolvers: vec!["auto".into()],
            metrics_listen: "0.0.0.0:9465".into(),
            report_interval: "10s".into(),
            rescan_interval: "10s".into(),
            tap: Default::default(),
            node_name: None,
            resolver_check_names: Vec::new(),
            resolver_check_targets: vec!["auto".into()],
            resolver_check_interval: "30s".into(),
            resolver_check_timeout: "2s".into(),
            proc_root: "/proc".into(),
            mode: Default::default(),
            cgroup_root: "/sys/fs/cgroup".into(),
            workers_sample_interval: "200ms".into(),
            imds_endpoint: crate::sources::eni::imds::DEFAULT_ENDPOINT.into(),
            imds_refresh_interval: "5m".into(),
            probes: Default::default(),
            listeners: Default::default(),
            pod_use: Default::default(),
            dns: Default::default(),
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_headers: Default::default(),
            otlp_certificate: None,
            otlp_queue_dir: None,
            otlp_token_file: None,
            otlp_server_name: None,
            tls: Default::default(),
            web: Default::default(),
        }
    }
}

/// A configuration checked and turned into the types the agent runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Node or sidecar, and why (logged once at startup).
    pub mode: crate::mode::Mode,
    pub mode_reason: String,
    /// The sidecar's own pod from the downward API (empty in node mode).
    pub own_pod: crate::mode::OwnPod,
    pub selection: Selection,
    /// True when `--interface` named nothing and the default applies (node: the physical
    /// interfaces; sidecar: every interface but loopback).
    pub default_interfaces: bool,
    pub resolvers: Vec<IpAddr>,
    pub metrics_listen: SocketAddr,
    pub report_interval: Duration,
    pub rescan_interval: Duration,
    pub tap: crate::sources::linklocal::capture::TapChoice,
    pub node_name: String,
    pub checks: crate::sources::resolver_checks::CheckSpec,
    pub workers: crate::sources::listeners::WorkersSpec,
    /// The pod-use source: the cgroup root and sample interval of `workers`, its own caps.
    pub pod_use: crate::sources::pod_use::PodUseSpec,
    /// `--resolver auto`: count the VPC resolver (base + 2) once IMDS names the VPC.
    pub resolver_auto: bool,
    pub imds_endpoint: String,
    pub imds_refresh_interval: Duration,
    pub probes: crate::sources::probes::ProbeConfig,
    pub dns_cache: crate::sources::dns::cache::CacheConfig,
    /// OTLP export (`run`); None when no endpoint is configured.
    pub otlp: Option<crate::export::otlp::OtlpSettings>,
    /// TLS on the metrics listener, when on.
    pub tls: Option<headroom_service::tls::TlsFiles>,
    pub web: headroom_service::web::WebConfig,
}

/// A config file that cannot be used; the one line names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Reads a TOML file.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| LoadError::Parse {
        path: path.into(),
        message: e.message().to_string(),
    })
}

pub use crate::time::parse_duration;

impl Config {
    /// Checks every field and returns all problems at once.
    pub fn validate(&self) -> Result<Settings, Vec<String>> {
        let mut errors = Vec::new();
        let (mode, mode_reason) = crate::mode::resolve(
            self.mode,
            &self.proc_root,
            crate::mode::has_proc(&self.proc_root),
            std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
        );
        let sidecar = mode == crate::mode::Mode::Sidecar;
        let mut patterns = Vec::new();
        for i in &self.interfaces {
            match Pattern::parse(i) {
                Ok(p) => patterns.push(p),
                Err(e) => errors.push(e),
            }
        }
        let mut resolvers = Vec::new();
        for r in &self.resolvers {
            if r == "auto" {
                continue;
            }
            match r.parse::<IpAddr>() {
                Ok(ip) => resolvers.push(ip),
                Err(_) => errors.push(format!(
                    "invalid --resolver '{r}': expected an IP address such as 10.0.0.2 or 'auto'"
                )),
            }
        }
        let metrics_listen = listen_addr(&self.metrics_listen, std::env::var("NODE_IP").ok());
        let mut duration = |what: &str, text: &str| match parse_duration(what, text) {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            Ok(_) => {
                errors.push(format!(
                    "invalid {what} '{text}': must be at least 1s, the width of a peak window"
                ));
                None
            }
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        let report_interval = duration("report_interval", &self.report_interval);
        let rescan_interval = duration("rescan_interval", &self.rescan_interval);
        let check_interval = duration("resolver_check_interval", &self.resolver_check_interval);
        let imds_refresh_interval = duration("imds_refresh_interval", &self.imds_refresh_interval);
        let check_timeout =
            match parse_duration("resolver_check_timeout", &self.resolver_check_timeout) {
                Ok(d) if d > Duration::ZERO => Some(d),
                Ok(_) => {
                    errors.push("invalid resolver_check_timeout: must be more than 0".into());
                    None
                }
                Err(e) => {
                    errors.push(e.to_string());
                    None
                }
            };
        let mut check_targets = Vec::new();
        for t in &self.resolver_check_targets {
            if t == "auto" {
                let auto = crate::sources::linklocal::FIXED_RESOLVERS[..1]
                    .iter()
                    .chain(&resolvers);
                check_targets.extend(auto.copied());
                let nodelocal: IpAddr = crate::sources::resolver_checks::NODELOCAL_DNS
                    .parse()
                    .expect("valid");
                if crate::sources::resolver_checks::is_local(nodelocal) {
                    check_targets.push(nodelocal);
                }
                continue;
            }
            match t.parse::<IpAddr>() {
                Ok(ip) => check_targets.push(ip),
                Err(_) => errors.push(format!(
                    "invalid resolver_check_targets entry '{t}': expected an IP address or 'auto'"
                )),
            }
        }
        check_targets.dedup();
        let checks = self.resolver_check_names.len() * check_targets.len();
        if checks > MAX_CHECKS_PER_INTERVAL {
            errors.push(format!(
                "too many resolver checks: {} names x {} resolvers = {checks} per interval, at most {MAX_CHECKS_PER_INTERVAL}; their packets count toward the same limit, so name fewer",
                self.resolver_check_names.len(),
                check_targets.len()
            ));
        }
        let imds_endpoint = crate::sources::eni::imds::validate_endpoint(&self.imds_endpoint)
            .map_err(|e| errors.push(e))
            .ok();
        errors.extend(self.probes.validate());
        errors.extend(self.listeners.validate());
        errors.extend(self.pod_use.validate());
        let dns_cache = self.dns.settings().map_err(|e| errors.extend(e)).ok();
        let metrics_listen = metrics_listen.map_err(|e| errors.push(e)).ok();
        // A sidecar reads its own /proc: the processes its pod shows it.
        let proc_root = if sidecar {
            "/proc"
        } else {
            self.proc_root.as_str()
        };
        let workers = self
            .workers_spec(proc_root, sidecar)
            .map_err(|e| errors.extend(e))
            .ok();
        let otlp = self
            .otlp_settings()
            .map_err(|e| errors.push(e.to_string()))
            .ok()
            .flatten();
        let tls = self.tls.files("tls").map_err(|e| errors.push(e)).ok();
        let (
            Some(metrics_listen),
            Some(report_interval),
            Some(rescan_interval),
            Some(check_interval),
            Some(check_timeout),
            Some(imds_endpoint),
            Some(imds_refresh_interval),
            Some(workers),
            Some(tls),
            Some(dns_cache),
            true,
        ) = (
            metrics_listen,
            report_interval,
            rescan_interval,
            check_interval,
            check_timeout,
            imds_endpoint,
            imds_refresh_interval,
            workers,
            tls,
            dns_cache,
            errors.is_empty(),
        )
        else {
            return Err(errors);
        };
        Ok(Settings {
            mode,
            mode_reason,
            own_pod: if sidecar {
                crate::mode::OwnPod::from_env(|k| std::env::var(k).ok())
            } else {
                Default::default()
            },
            default_interfaces: patterns.is_empty(),
            selection: match (patterns.is_empty(), sidecar) {
                (true, false) => Selection::Physical,
                (true, true) => Selection::NotLoopback,
                (false, _) => Selection::Patterns(patterns),
            },
            resolvers,
            metrics_listen,
            report_interval,
            rescan_interval,
            // Fargate grants no CAP_BPF: a sidecar counts with AF_PACKET (CAP_NET_RAW) unless
            // told otherwise.
            tap: match (sidecar, self.tap) {
                (true, crate::sources::linklocal::capture::TapChoice::Auto) => {
                    crate::sources::linklocal::capture::TapChoice::AfPacket
                }
                (_, t) => t,
            },
            node_name: self.node_name.clone().unwrap_or_else(hostname),
            checks: crate::sources::resolver_checks::CheckSpec {
                names: self.resolver_check_names.clone(),
                resolvers: check_targets,
                interval: check_interval,
                timeout: check_timeout,
            },
            resolver_auto: self.resolvers.iter().any(|r| r == "auto"),
            imds_endpoint,
            imds_refresh_interval,
            probes: self.probes.clone(),
            dns_cache,
            pod_use: crate::sources::pod_use::PodUseSpec {
                cgroup_root: workers.cgroup_root.clone(),
                interval: workers.interval,
                caps: self.pod_use,
            },
            workers,
            otlp,
            tls,
            web: self.web.clone(),
        })
    }

    /// The worker source's roots and sample interval.
    fn workers_spec(
        &self,
        proc_root: &str,
        sidecar: bool,
    ) -> Result<crate::sources::listeners::WorkersSpec, Vec<String>> {
        let mut errors = Vec::new();
        if !Path::new(proc_root).is_dir() {
            errors.push(format!(
                "invalid --proc-root '{proc_root}': no such directory; point it at the host's /proc"
            ));
        }
        let interval =
            match parse_duration("workers_sample_interval", &self.workers_sample_interval) {
                Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(10) => Some(d),
                Ok(_) => {
                    errors.push(format!(
                        "invalid workers_sample_interval '{}': must be between 10ms and 10s",
                        self.workers_sample_interval
                    ));
                    None
                }
                Err(e) => {
                    errors.push(e.to_string());
                    None
                }
            };
        match interval {
            Some(interval) if errors.is_empty() => Ok(crate::sources::listeners::WorkersSpec {
                proc_root: proc_root.into(),
                cgroup_root: self.cgroup_root.clone().into(),
                own_netns_only: sidecar,
                interval,
                caps: self.listeners,
            }),
            _ => Err(errors),
        }
    }

    fn otlp_settings(
        &self,
    ) -> Result<Option<crate::export::otlp::OtlpSettings>, crate::export::otlp::SettingError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(None);
        };
        let mut headers = match std::env::var("OTEL_EXPORTER_OTLP_HEADERS") {
            Ok(h) => crate::export::otlp::parse_headers(&h)?,
            Err(_) => Vec::new(),
        };
        for (k, v) in &self.otlp_headers {
            headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
            headers.extend(crate::export::otlp::parse_headers(&format!("{k}={v}"))?);
        }
        if self
            .otlp_token_file
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(crate::export::otlp::SettingError::TokenFile);
        }
        let protocol = match &self.otlp_protocol {
            Some(p) => crate::export::otlp::Protocol::parse(p)?,
            None => crate::export::otlp::Protocol::HttpProtobuf,
        };
        Ok(Some(crate::export::otlp::OtlpSettings {
            protocol,
            metrics_url: crate::export::otlp::metrics_url(endpoint, protocol)?,
            traces_url: crate::export::otlp::traces_url(endpoint, protocol)?,
            headers,
            resource_attributes: std::env::var("OTEL_RESOURCE_ATTRIBUTES")
                .map(|t| crate::export::otlp::encode::parse_resource_attributes(&t))
                .unwrap_or_default(),
            token_file: self.otlp_token_file.as_ref().map(std::path::PathBuf::from),
            trust: match &self.otlp_certificate {
                Some(path) => crate::export::otlp::Trust::from_file(path)?,
                None => crate::export::otlp::Trust::System,
            },
            queue_dir: self.otlp_queue_dir.as_ref().map(Into::into),
            server_name: match &self.otlp_server_name {
                Some(n) => Some(
                    rustls::pki_types::ServerName::try_from(n.clone())
                        .map_err(|_| crate::export::otlp::SettingError::ServerName(n.clone()))?,
                ),
                None => None,
            },
        }))
    }
}

/// `ADDRESS:PORT`, or `node:PORT`: the node's IP from `$NODE_IP` (the DaemonSet sets it from
/// `status.hostIP`), so /metrics is not served on every address of the host network (IPv6
/// written as it must be, which `$(NODE_IP):9465` in a manifest would not be).
fn listen_addr(text: &str, node_ip: Option<String>) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("node:") {
        let ip = node_ip.ok_or_else(|| {
            format!("--metrics-listen '{text}' needs $NODE_IP (the node's IP, e.g. from the pod's status.hostIP)")
        })?;
        let ip: IpAddr = ip.trim().parse().map_err(|_| {
            format!("invalid $NODE_IP '{ip}' for --metrics-listen '{text}': expected an IP address")
        })?;
        let port: u16 = port.parse().map_err(|_| {
            format!("invalid --metrics-listen '{text}': expected node:PORT such as node:9465")
        })?;
        return Ok(SocketAddr::new(ip, port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid --metrics-listen '{text}': expected ADDRESS:PORT such as 0.0.0.0:9465, or node:PORT"
        )
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_takes_the_nodes_ip() {
        let v4 = listen_addr("node:9465", Some("10.1.2.3".into())).unwrap();
        assert_eq!(v4, "10.1.2.3:9465".parse().unwrap());
        let v6 = listen_addr("node:9465", Some("2600:1f14::5".into())).unwrap();
        assert_eq!(v6, "[2600:1f14::5]:9465".parse().unwrap());
        assert_eq!(
            listen_addr("0.0.0.0:1", None).unwrap(),
            "0.0.0.0:1".parse().unwrap()
        );
        assert!(listen_addr("node:9465", None)
            .unwrap_err()
            .contains("needs $NODE_IP"));
        assert!(listen_addr("node:9465", Some("x".into()))
            .unwrap_err()
            .contains("invalid $NODE_IP 'x'"));
        assert!(listen_addr("node:x", Some("10.0.0.1".into()))
            .unwrap_err()
            .contains("node:PORT"));
        assert!(listen_addr("nowhere", None)
            .unwrap_err()
            .contains("ADDRESS:PORT"));
    }

    #[test]
    fn defaults_are_valid() {
        let s = Config::default().validate().unwrap();
        assert!(s.default_interfaces);
        assert!(s.resolvers.is_empty());
        assert_eq!(s.metrics_listen.port(), 9465);
        assert_eq!(s.report_interval, Duration::from_secs(10));
        assert_eq!(s.workers.interval, Duration::from_millis(200));
        assert_eq!(s.workers.proc_root, Path::new("/proc"));
        assert!(s.resolver_auto);
        assert_eq!(s.imds_endpoint, "http://169.254.169.254");
        assert_eq!(s.imds_refresh_interval, Duration::from_secs(300));
    }

    #[test]
    fn the_token_file_reaches_the_sender_and_must_name_a_file() {
        let with = |f: &str| Config {
            otlp_endpoint: Some("http://collector:4318".into()),
            otlp_token_file: Some(f.into()),
            ..Config::default()
        };
        let s = with("/var/run/secrets/headroom/collector/token")
            .otlp_settings()
            .unwrap()
            .unwrap();
        assert_eq!(
            s.token_file.as_deref(),
            Some(Path::new("/var/run/secrets/headroom/collector/token"))
        );
        let e = with(" ").otlp_settings().unwrap_err().to_string();
        assert!(e.contains("otlp_token_file"), "{e}");
        assert!(Config::default().otlp_settings().unwrap().is_none());
    }

    #[test]
    fn imds_endpoints() {
        for ok in [
            "http://169.254.169.254",
            "http://[fd00:ec2::254]",
            "http://127.0.0.1:8080/",
        ] {
            let c = Config {
                imds_endpoint: ok.into(),
                ..Config::default()
            };
            assert!(c.validate().is_ok(), "{ok}");
        }
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://h/latest",
            "",
        ] {
            let c = Config {
                imds_endpoint: bad.into(),
                imds_refresh_interval: "0s".into(),
                ..Config::default()
            };
            let errs = c.validate().unwrap_err();
            assert_eq!(errs.len(), 2, "{bad}: {errs:?}");
            assert!(
                errs[1].contains("--imds-endpoint") || errs[0].contains("--imds-endpoint"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let c = Config {
            interfaces: vec!["eth[".into()],
            resolvers: vec!["10.0.0.300".into(), "auto".into()],
            metrics_listen: "nope".into(),
            report_interval: "0.5s".into(),
            rescan_interval: "soon".into(),
            resolver_check_names: (0..11).map(|i| format!("n{i}.example.com")).collect(),
            resolver_check_targets: vec!["auto".into(), "10.0.0.9".into(), "x".into()],
            proc_root: "/nonexistent-proc".into(),
            workers_sample_interval: "1ms".into(),
            node_name: None,
            otlp_endpoint: Some("ftp://collector".into()),
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 10, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.contains("too many resolver checks: 11 names")));
        assert!(errs
            .iter()
            .any(|e| e.contains("--proc-root '/nonexistent-proc'")));
        assert!(errs.iter().any(|e| e.contains("--otlp-endpoint")));
        assert!(errs.iter().any(|e| e.contains("--resolver '10.0.0.300'")));
        assert!(errs.iter().any(|e| e.contains("at least 1s")));
    }

    /// A sidecar with the DaemonSet's ConfigMap: the missing host /proc is no error (it reads
    /// its own), every interface but lo, the AF_PACKET tap, its own namespace only.
    #[test]
    fn a_sidecar_reads_its_own_proc_and_counts_with_af_packet() {
        use crate::sources::linklocal::capture::TapChoice;
        let c = Config {
            mode: crate::mode::ModeChoice::Sidecar,
            proc_root: "/nonexistent-host-proc".into(),
            ..Config::default()
        };
        let s = c.validate().unwrap();
        assert_eq!(s.mode, crate::mode::Mode::Sidecar);
        assert_eq!(s.workers.proc_root, Path::new("/proc"));
        assert!(s.workers.own_netns_only);
        assert!(matches!(s.selection, Selection::NotLoopback));
        assert_eq!(s.tap, TapChoice::AfPacket);
        let c = Config {
            tap: TapChoice::Ebpf,
            ..c
        };
        assert_eq!(
            c.validate().unwrap().tap,
            TapChoice::Ebpf,
            "a named tap stands"
        );
        let node = Config {
            mode: crate::mode::ModeChoice::Node,
            proc_root: "/nonexistent-host-proc".into(),
            ..Config::default()
        };
        let errs = node.validate().unwrap_err();
        assert!(
            errs[0].contains("--proc-root '/nonexistent-host-proc'"),
            "{errs:?}"
        );
    }

    #[test]
    fn file_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "interfaces = [\"eth0\"]\nresolvers = [\"10.0.0.2\"]\n").unwrap();
        let c = load(&p).unwrap();
        assert_eq!(c.interfaces, ["eth0"]);
        assert_eq!(c.metrics_listen, "0.0.0.0:9465");
        std::fs::write(&p, "interface = [\"eth0\"]\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `interface`"), "{e}");
    }
}
