//! Resolver checks: every interval, resolve the configured names against each resolver and
//! record outcome and latency, as a `dns.resolve` span and in the report's `resolver_checks`.
//! Their packets go to the same link-local resolvers, so they count toward the same limit:
//! the number of checks per interval is capped by configuration validation.

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::Resolver;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

pub mod report;
mod source;

pub use report::ResolverCheck;
pub use source::ResolverChecks;

/// NodeLocal DNSCache's usual address; checked when a local interface holds it.
pub const NODELOCAL_DNS: &str = "169.254.20.10";
/// Most check results kept between two report windows.
const KEEP: usize = 1000;

#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub names: Vec<String>,
    pub resolvers: Vec<IpAddr>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Results since the last report window, shared with the report builder.
#[derive(Debug, Clone, Default)]
pub struct CheckLog(Arc<Mutex<Vec<ResolverCheck>>>);

impl CheckLog {
    fn push(&self, c: ResolverCheck) {
        let mut v = self.0.lock().unwrap();
        if v.len() >= KEEP {
            v.remove(0);
        }
        v.push(c);
    }

    /// Takes the results gathered since the last call.
    pub fn take(&self) -> Vec<ResolverCheck> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Whether this host holds `ip` (binding to it succeeds only then).
pub fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn resolver_for(ip: IpAddr, timeout: Duration) -> Resolver<TokioConnectionProvider> {
    let mut cfg = ResolverConfig::new();
    cfg.add_name_server(NameServerConfig::new(
        SocketAddr::new(ip, 53),
        Protocol::Udp,
    ));
    let mut opts = ResolverOpts::default();
    opts.attempts = 1;
    opts.timeout = timeout;
    opts.cache_size = 0;
    opts.ndots = 0;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    Resolver::builder_with_config(cfg, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// One check, as a `dns.resolve` span.
pub async fn check_once(ip: IpAddr, name: String, timeout: Duration) -> ResolverCheck {
    let span = tracing::info_span!(
        "dns.resolve",
        resolver = %ip,
        qname = %name.as_str(),
        attempt = 1u32,
        rcode = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty
    );
    let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let start = Instant::now();
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let result = resolver_for(ip, timeout).lookup_ip(fqdn.as_str()).await;
    let elapsed_ms = (start.elapsed().as_secs_f64() * 1e5).round() / 100.0;
    let (rcode, answers) = match result {
        Ok(l) => (
            "NOERROR".to_string(),
            l.iter().map(|a| a.to_string()).collect(),
        ),
        Err(e) => match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => (
                crate::sources::dns::parse::rcode_name(u16::from(*response_code)),
                Vec::new(),
            ),
            Some(ProtoErrorKind::Timeout) => ("TIMEOUT".to_string(), Vec::new()),
            _ => {
                tracing::debug!(parent: &span, message = "Resolver check failed.", error = %e);
                ("ERROR".to_string(), Vec::new())
            }
        },
    };
    span.record("rcode", rcode.as_str());
    span.record("elapsed_ms", elapsed_ms);
    ResolverCheck {
        resolver: ip.to_string(),
        qname: name,
        rcode,
        elapsed_ms,
        attempt: 1,
        at,
        answers,
    }
}

/// Checks every interval until cancelled, the first round at once.
pub async fn run(spec: CheckSpec, log: CheckLog, stop: CancellationToken) {
    if spec.names.is_empty() || spec.resolvers.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // All checks of a round at once (at most MAX_CHECKS_PER_INTERVAL): a resolver that does
        // not answer must not delay the others.
        let mut round = tokio::task::JoinSet::new();
        for ip in &spec.resolvers {
            for name in &spec.names {
                round.spawn(check_once(*ip, name.clone(), spec.timeout));
            }
        }
        loop {
            tokio::select! {
                next = round.join_next() => match next {
                    Some(Ok(c)) => log.push(c),
                    Some(Err(_)) => {}
                    None => break,
                },
                _ = stop.cancelled() => return,
            }
        }
    }
}
