//! What the kubelet would run: probe specs read from a pod, with the kubelet's defaults, named
//! ports resolved from the container's own ports, and a reason for what cannot be shadowed.
//! Pure: no I/O.

use crate::pod::PodRef;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// User-Agent of shadow probes and kubelet scrapes.
pub const USER_AGENT: &str = concat!("headroom-probe/", env!("CARGO_PKG_VERSION"));

/// Annotation that opts a pod out of shadow probes when set to "false".
pub const OPT_OUT_ANNOTATION: &str = "headroom.io/probe";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Readiness,
    Liveness,
    Startup,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Readiness => "readiness",
            Kind::Liveness => "liveness",
            Kind::Startup => "startup",
        }
    }
}

/// Where and how one attempt goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Http {
        /// HTTPS: TLS without certificate checks, as the kubelet.
        tls: bool,
        host: IpAddr,
        port: u16,
        path: String,
        /// Host header when `httpHeaders` names one.
        host_header: Option<String>,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: IpAddr,
        port: u16,
    },
    /// gRPC health checking protocol (`grpc.health.v1.Health/Check`) over plaintext HTTP/2.
    Grpc {
        host: IpAddr,
        port: u16,
        service: String,
    },
}

impl Target {
    /// Where the attempt connects.
    pub fn addr(&self) -> (IpAddr, u16) {
        match self {
            Target::Http { host, port, .. }
            | Target::Tcp { host, port }
            | Target::Grpc { host, port, .. } => (*host, *port),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |h: &IpAddr, p: &u16| match h {
            IpAddr::V6(_) => format!("[{h}]:{p}"),
            IpAddr::V4(_) => format!("{h}:{p}"),
        };
        match self {
            Target::Http {
                tls,
                host,
                port,
                path,
                ..
            } => {
                let scheme = if *tls { "https" } else { "http" };
                write!(f, "{scheme}://{}{path}", hp(host, port))
            }
            Target::Tcp { host, port } => write!(f, "tcp://{}", hp(host, port)),
            Target::Grpc {
                host,
                port,
                service,
            } => {
                write!(f, "grpc://{}", hp(host, port))?;
                if !service.is_empty() {
                    write!(f, "/{service}")?;
                }
                Ok(())
            }
        }
    }
}

/// Timing as the kubelet applies it (defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timing {
    pub timeout: Duration,
    pub period: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub initial_delay: Duration,
}

impl Timing {
    /// Kubelet defaults: timeoutSeconds 1, periodSeconds 10, failureThreshold 3, successThreshold 1; values below
    /// the API minimum of 1 are raised to 1, as validation would.
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(1) as u64);
        Timing {
            timeout: secs(p.timeout_seconds, 1),
            period: secs(p.period_seconds, 10),
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
        }
    }
}

/// One probe of one container: shadowed (a target) or not (a reason).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub pod: PodRef,
    pub container: String,
    pub kind: Kind,
    pub timing: Timing,
    /// What the report shows as `target` (also for probes that are not shadowed).
    pub target_text: String,
    pub action: Result<Target, String>,
    /// The kubelet's first attempt comes no earlier than the container's start plus
    /// initialDelaySeconds; None when the pod's status does not say when it started.
    pub not_before: Option<SystemTime>,
}

impl ProbeSpec {
    /// Identity of a probe across pod updates: pod uid, container, kind.
    pub fn key(&self) -> (String, String, Kind) {
        (self.pod.uid.clone(), self.container.clone(), self.kind)
    }
}

/// True when the pod opted out with `headroom.io/probe: "false"`.
pub fn opted_out(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

/// Every readiness/liveness/startup probe of the pod's containers (not init containers, whose
/// probes the kubelet does not run; sidecars aside). Empty for opted-out pods.
pub fn probes_of(pod: &Pod) -> Vec<ProbeSpec> {
    if opted_out(pod) {
        return Vec::new();
    }
    let Some(pod_ref) = PodRef::of(pod) else {
        return Vec::new();
    };
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|s| !s.is_empty());
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        let kinds = [
            (Kind::Readiness, &c.readiness_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Startup, &c.startup_probe),
        ];
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|s| s.name == c.name));
        let gate = gate_of(status);
        let has_startup = c.startup_probe.is_some();
        for (kind, probe) in kinds {
            let Some(p) = probe else { continue };
            let timing = Timing::of(p);
            let (target_text, mut action) = action_of(p, c, pod_ip);
            let mut not_before = None;
            match &gate {
                Gate::Unknown => {}
                Gate::NotRunning(why) => action = action.and(Err(why.clone())),
                Gate::Running { since, started } => {
                    let why = match (kind, started) {
                        (Kind::Startup, Some(true)) => {
                            Some("the startup probe has succeeded; the kubelet no longer runs it")
                        }
                        (Kind::Readiness | Kind::Liveness, Some(false)) if has_startup => {
                            Some("the kubelet runs it only once the startup probe has succeeded")
                        }
                        _ => None,
                    };
                    if let Some(why) = why {
                        action = action.and(Err(why.to_string()));
                    }
                    not_before = since.map(|t| t + timing.initial_delay);
                }
            }
            out.push(ProbeSpec {
                pod: pod_ref.clone(),
                container: c.name.clone(),
                kind,
                timing,
                target_text,
                action,
                not_before,
            });
        }
    }
    out
}

/// What the container's status allows: the kubelet probes only running containers, runs
/// readiness and liveness only once the startup probe (if any) has succeeded, and the startup
/// probe only until then.
#[derive(Debug)]
enum Gate {
    /// No status yet: probe.
    Unknown,
    NotRunning(String),
    Running {
        since: Option<SystemTime>,
        started: Option<bool>,
    },
}

fn gate_of(status: Option<&k8s_openapi::api::core::v1::ContainerStatus>) -> Gate {
    let Some(s) = status else {
        return Gate::Unknown;
    };
    let state = s.state.as_ref();
    let Some(running) = state.and_then(|st| st.running.as_ref()) else {
        let why = state
            .and_then(|st| {
                st.waiting
                    .as_ref()
                    .map(|w| format!("waiting: {}", w.reason.as_deref().unwrap_or("unknown")))
                    .or(st.terminated.as_ref().map(|t| {
                        format!("terminated: {}", t.reason.as_deref().unwrap_or("unknown"))
                    }))
            })
            .unwrap_or_else(|| "no state yet".into());
        return Gate::NotRunning(format!(
            "container is not running ({why}); the kubelet probes running containers only"
        ));
    };
    Gate::Running {
        since: running
            .started_at
            .as_ref()
            .map(|t| UNIX_EPOCH + Duration::from_millis(t.0.as_millisecond().max(0) as u64)),
        started: s.started,
    }
}

/// The port a probe names: a number, or a name looked up in the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is out of range 1-65535")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<i64>() {
                // The API accepts a number in a string; the kubelet parses it.
                return u16::try_from(n)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {n} is out of range 1-65535"));
            }
            let ports = c.ports.as_deref().unwrap_or_default();
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                    format!(
                        "named port '{s}' not found in container '{}' (its named ports: {}); name a port the container declares",
                        c.name,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )
                })
        }
    }
}

/// Where a probe connects: always the pod's IP. A `host` that names anything else (IMDS, the
/// node's loopback, another pod, a name) is not shadowed, with a reason starting `host:`: the
/// agent runs in the node's network, and a pod must not choose what it connects to there.
fn host_of(explicit: Option<&str>, pod_ip: Option<&str>) -> Result<IpAddr, String> {
    let pod = match pod_ip {
        None => return Err("pod has no IP yet (not scheduled or sandbox not ready)".to_string()),
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| format!("pod IP '{ip}' is not an IP address"))?,
    };
    match explicit.filter(|h| !h.is_empty()) {
        Some(h) if h.parse::<IpAddr>().ok() != Some(pod) => Err(format!(
            "{HOST_REASON}: probe host '{h}' is not the pod's IP {pod}; headroom probes only the pod IP"
        )),
        _ => Ok(pod),
    }
}

/// The start of the reason for a probe whose `host` is not the pod's IP.
pub const HOST_REASON: &str = "host";

fn port_text(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn action_of(p: &Probe, c: &Container, pod_ip: Option<&str>) -> (String, Result<Target, String>) {
    if let Some(h) = &p.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        let path = match h.path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        };
        let host_text = h.host.clone().or(pod_ip.map(str::to_string));
        let text = format!(
            "{}://{}:{}{path}",
            scheme.to_ascii_lowercase(),
            host_text.as_deref().unwrap_or("<pod IP>"),
            port_text(&h.port)
        );
        let tls = scheme.eq_ignore_ascii_case("HTTPS");
        if !tls && !scheme.eq_ignore_ascii_case("HTTP") {
            return (
                text,
                Err(format!(
                    "unknown scheme {scheme}: the kubelet accepts HTTP or HTTPS"
                )),
            );
        }
        let action = (|| {
            let host = host_of(h.host.as_deref(), pod_ip)?;
            let port = resolve_port(&h.port, c)?;
            let mut headers = Vec::new();
            let mut host_header = None;
            for hd in h.http_headers.as_deref().unwrap_or_default() {
                if hd.name.eq_ignore_ascii_case("host") {
                    host_header = Some(hd.value.clone());
                } else {
                    headers.push((hd.name.clone(), hd.value.clone()));
                }
            }
            Ok(Target::Http {
                tls,
                host,
                port,
                path: path.clone(),
                host_header,
                headers,
            })
        })();
        return (text, action);
    }
    if let Some(t) = &p.tcp_socket {
        let host_text = t.host.clone().or(pod_ip.map(str::to_string));
        let text = format!(
            "tcp://{}:{}",
            host_text.as_deref().unwrap_or("<pod IP>"),
            port_text(&t.port)
        );
        let action = host_of(t.host.as_deref(), pod_ip).and_then(|host| {
            Ok(Target::Tcp {
                host,
                port: resolve_port(&t.port, c)?,
            })
        });
        return (text, action);
    }
    if let Some(g) = &p.grpc {
        let service = g.service.clone().unwrap_or_default();
        let mut text = format!("grpc://{}:{}", pod_ip.unwrap_or("<pod IP>"), g.port);
        if !service.is_empty() {
            text = format!("{text}/{service}");
        }
        // The kubelet dials the pod IP (a grpc probe has no host field).
        let action = host_of(None, pod_ip).and_then(|host| {
            Ok(Target::Grpc {
                host,
                port: resolve_port(&IntOrString::Int(g.port), c)?,
                service,
            })
        });
        return (text, action);
    }
    if let Some(e) = &p.exec {
        return (
            format!(
                "exec {}",
                e.command.as_deref().unwrap_or_default().join(" ")
            ),
            Err(
                "exec probes run inside the container; headroom cannot shadow them from the node"
                    .to_string(),
            ),
        );
    }
    (
        "none".to_string(),
        Err("probe has no handler (httpGet, tcpSocket, grpc or exec)".to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn web(probe: serde_json::Value, ip: Option<&str>) -> Pod {
        let mut status = serde_json::json!({});
        if let Some(ip) = ip {
            status = serde_json::json!({"podIP": ip});
        }
        pod(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-1", "uid": "u1"},
            "spec": {"containers": [{
                "name": "app",
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}],
                "readinessProbe": probe
            }]},
            "status": status
        }))
    }

    #[test]
    fn http_probe_with_named_port_headers_and_defaults() {
        let p = web(
            serde_json::json!({"httpGet": {"path": "healthz", "port": "http",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "Host", "value": "web"}]}}),
            Some("10.244.0.5"),
        );
        let s = probes_of(&p);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.kind, s.container.as_str()), (Kind::Readiness, "app"));
        assert_eq!(
            s.timing,
            Timing {
                timeout: Duration::from_secs(1),
                period: Duration::from_secs(10),
                failure_threshold: 3,
                success_threshold: 1,
                initial_delay: Duration::ZERO
            }
        );
        assert_eq!(s.target_text, "http://10.244.0.5:http/healthz");
        let t = s.action.clone().unwrap();
        assert_eq!(t.to_string(), "http://10.244.0.5:8080/healthz");
        let Target::Http {
            headers,
            host_header,
            ..
        } = t
        else {
            panic!()
        };
        assert_eq!(headers, [("X-Probe".to_string(), "1".to_string())]);
        assert_eq!(host_header.as_deref(), Some("web"));
    }

    #[test]
    fn reasons_for_what_cannot_be_shadowed() {
        let table = [
            (
                serde_json::json!({"httpGet": {"port": "nope"}}),
                Some("10.0.0.1"),
                "named port 'nope' not found in container 'app' (its named ports: http)",
            ),
            (
                serde_json::json!({"httpGet": {"port": 8080}}),
                None,
                "pod has no IP yet",
            ),
            (
                serde_json::json!({"tcpSocket": {"port": 70000}}),
                Some("10.0.0.1"),
                "port 70000 is out of range",
            ),
            (
                serde_json::json!({"httpGet": {"port": 8080, "host": "db.local"}}),
                Some("10.0.0.1"),
                "host: probe host 'db.local' is not the pod's IP 10.0.0.1",
            ),
            (
                serde_json::json!({"httpGet": {"port": 80, "host": "169.254.169.254"}}),
                Some("10.0.0.1"),
                "host: probe host '169.254.169.254' is not the pod's IP",
            ),
            (
                serde_json::json!({"tcpSocket": {"port": 22, "host": "127.0.0.1"}}),
                Some("10.0.0.1"),
                "host: probe host '127.0.0.1' is not the pod's IP",
            ),
            (
                serde_json::json!({"httpGet": {"port": 8443, "scheme": "FTP"}}),
                Some("10.0.0.1"),
                "unknown scheme FTP",
            ),
            (
                serde_json::json!({"exec": {"command": ["cat", "/ready"]}}),
                Some("10.0.0.1"),
                "exec probes run inside the container",
            ),
            (
                serde_json::json!({"grpc": {"port": 0}}),
                Some("10.0.0.1"),
                "port 0 is out of range",
            ),
        ];
        for (probe, ip, want) in table {
            let s = probes_of(&web(probe.clone(), ip));
            let err = s[0].action.clone().unwrap_err();
            assert!(err.contains(want), "{probe}: {err}");
        }
        // The pod's own IP named as host is the pod IP: shadowed.
        let s = probes_of(&web(
            serde_json::json!({"tcpSocket": {"port": 8080, "host": "10.0.0.1"}}),
            Some("10.0.0.1"),
        ));
        assert!(s[0].action.is_ok(), "{:?}", s[0].action);
    }

    #[test]
    fn container_state_gates_probes_as_the_kubelet_does() {
        let p = |statuses: serde_json::Value| {
            pod(serde_json::json!({
                "metadata": {"namespace": "a", "name": "p", "uid": "u"},
                "spec": {"containers": [{"name": "app",
                    "readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5},
                    "startupProbe": {"tcpSocket": {"port": 80}}}]},
                "status": {"podIP": "10.0.0.1", "containerStatuses": statuses}
            }))
        };
        let status = |state: serde_json::Value, started: bool| {
            serde_json::json!([{"name": "app", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "started": started, "state": state}])
        };
        let crash = probes_of(&p(status(
            serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            false,
        )));
        assert!(crash.iter().all(|s| s
            .action
            .as_ref()
            .is_err_and(|e| e.contains("not running (waiting: CrashLoopBackOff)"))));
        let running = serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}});
        let starting = probes_of(&p(status(running.clone(), false)));
        assert!(starting[0]
            .action
            .as_ref()
            .unwrap_err()
            .contains("once the startup probe"));
        assert!(starting[1].action.is_ok());
        let started = probes_of(&p(status(running, true)));
        assert!(started[0].action.is_ok());
        assert!(started[1]
            .action
            .as_ref()
            .unwrap_err()
            .contains("no longer runs it"));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(started[0].not_before, Some(t0 + Duration::from_secs(5)));
        assert_eq!(started[1].not_before, Some(t0));
    }

    #[test]
    fn grpc_probe_targets_the_pod_ip() {
        let p = web(
            serde_json::json!({"grpc": {"port": 9090, "service": "db"}}),
            Some("10.0.0.1"),
        );
        let s = &probes_of(&p)[0];
        assert_eq!(s.target_text, "grpc://10.0.0.1:9090/db");
        assert_eq!(
            s.action.clone().unwrap(),
            Target::Grpc {
                host: "10.0.0.1".parse().unwrap(),
                port: 9090,
                service: "db".into()
            }
        );
    }

    #[test]
    fn tcp_numeric_port_in_a_string_and_opt_out() {
        let p = web(
            serde_json::json!({"tcpSocket": {"port": "9090"}, "timeoutSeconds": 2, "periodSeconds": 5, "failureThreshold": 1}),
            Some("fd00::5"),
        );
        let s = &probes_of(&p)[0];
        assert_eq!(
            s.action.clone().unwrap().to_string(),
            "tcp://[fd00::5]:9090"
        );
        assert_eq!(s.timing.timeout, Duration::from_secs(2));
        assert_eq!(s.timing.failure_threshold, 1);
        let mut p = p;
        p.metadata.annotations =
            Some([(OPT_OUT_ANNOTATION.to_string(), "false".to_string())].into());
        assert!(probes_of(&p).is_empty());
    }
}
