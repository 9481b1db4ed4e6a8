//! Command line: flags (which override the config file), dispatch, and exit codes.

use crate::config::{self, Config, Settings};
use crate::{commands, AgentError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "headroom-agent",
    version,
    about = "Measures, per network interface, packets/s to EC2 link-local services against the 1024/s limit."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: Common,
}

/// Flags shared by every command; each is also a config file field.
#[derive(Args, Debug, Default)]
pub struct Common {
    /// TOML configuration file; flags override its fields.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to measure, by name or glob (repeatable). Default: the physical interfaces.
    #[arg(long = "interface", global = true, value_name = "NAME|GLOB")]
    pub interfaces: Vec<String>,
    /// A resolver whose packets count toward the limit (repeatable); 169.254.169.253 and
    /// fd00:ec2::253 always count.
    #[arg(long = "resolver", global = true, value_name = "IP|auto")]
    pub resolvers: Vec<String>,
    /// What counts the packets: ebpf (in-line, nothing cloned), af_packet, or auto (eBPF where
    /// the kernel and capabilities allow, else AF_PACKET) [default: auto].
    #[arg(long, global = true, value_enum, value_name = "TAP")]
    pub tap: Option<crate::sources::linklocal::capture::TapChoice>,
    /// Address for /metrics, /healthz and /readyz (run).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// The EC2 instance metadata service (IMDSv2) [default: http://169.254.169.254].
    #[arg(long, global = true, value_name = "URL")]
    pub imds_endpoint: Option<String>,
    /// This node's name (Kubernetes: from the downward API).
    #[arg(long, global = true, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// node (a DaemonSet: the host's /proc, every ENI), sidecar (this pod only: EKS Fargate),
    /// or auto (sidecar in a pod with no host /proc at --proc-root) [default: auto].
    #[arg(long, global = true, value_enum, value_name = "MODE")]
    pub mode: Option<crate::mode::ModeChoice>,
    /// Where /proc is (the host's, when the agent runs in a container).
    #[arg(long, global = true, value_name = "PATH")]
    pub proc_root: Option<String>,
    /// Where the cgroup hierarchy is mounted (for containers' CPU throttling).
    #[arg(long, global = true, value_name = "PATH")]
    pub cgroup_root: Option<String>,
    /// OTLP/HTTP endpoint `run` exports each report window to, e.g.
    /// http://headroom-collector:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no export).
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: http/protobuf (default) or grpc (default: $OTEL_EXPORTER_OTLP_PROTOCOL).
    #[arg(long, global = true, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure once for a while, print one report, exit 0.
    Once {
        /// How long to measure (at least 1s: a peak is a one-second window).
        #[arg(long, default_value = "10s")]
        duration: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Live per-interface view, refreshed every second.
    Watch {
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Time small-file opens and reads and large-file throughput on the filesystem holding PATH
    /// (a network volume: EFS, NFS, sshfs…) against a local reference directory.
    StorageCheck {
        /// A directory on the filesystem to check; a temporary directory is made in it and
        /// removed afterwards.
        path: PathBuf,
        /// Small files to write and read back.
        #[arg(long, default_value_t = 200)]
        files: u32,
        /// Bytes in each small file.
        #[arg(long, default_value_t = 4096, value_name = "BYTES")]
        file_size: usize,
        /// Size of the one large file in MiB (0: none).
        #[arg(long, default_value_t = 16, value_name = "MIB")]
        large_mib: u64,
        /// Local directory to compare with, or `none` [default: /dev/shm, else the temporary
        /// directory].
        #[arg(long, value_name = "DIR|none")]
        reference: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The daemon: measure continuously and serve /metrics, /healthz, /readyz.
    Run {
        /// Length of one report window.
        #[arg(long, value_name = "DURATION")]
        report_interval: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// Builds the configuration: file first, then flags over it; then validates everything.
fn settings(cli: &Cli) -> Result<Settings, AgentError> {
    let mut cfg = match &cli.common.config {
        Some(p) => config::load(p).map_err(|e| AgentError::Usage(e.to_string()))?,
        None => Config::default(),
    };
    let c = &cli.common;
    if !c.interfaces.is_empty() {
        cfg.interfaces = c.interfaces.clone();
    }
    if !c.resolvers.is_empty() {
        cfg.resolvers = c.resolvers.clone();
    }
    if let Some(t) = c.tap {
        cfg.tap = t;
    }
    if let Some(m) = &c.metrics_listen {
        cfg.metrics_listen = m.clone();
    }
    if let Some(e) = &c.imds_endpoint {
        cfg.imds_endpoint = e.clone();
    }
    if let Some(n) = &c.node_name {
        cfg.node_name = Some(n.clone());
    }
    if let Some(m) = c.mode {
        cfg.mode = m;
    }
    if let Some(p) = &c.proc_root {
        cfg.proc_root = p.clone();
    }
    if let Some(p) = &c.cgroup_root {
        cfg.cgroup_root = p.clone();
    }
    if let Some(e) = &c.otlp_endpoint {
        cfg.otlp_endpoint = Some(e.clone());
    }
    if let Some(p) = &c.otlp_protocol {
        cfg.otlp_protocol = Some(p.clone());
    }
    if cfg.otlp_protocol.is_none() {
        cfg.otlp_protocol = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .ok()
            .filter(|p| !p.is_empty());
    }
    if cfg.otlp_endpoint.is_none() {
        cfg.otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
    }
    if cfg.otlp_certificate.is_none() {
        cfg.otlp_certificate = std::env::var("OTEL_EXPORTER_OTLP_CERTIFICATE")
            .ok()
            .filter(|e| !e.is_empty());
    }
    if let Command::Run {
        report_interval: Some(r),
    } = &cli.command
    {
        cfg.report_interval = r.clone();
    }
    cfg.validate()
        .map_err(|errs| AgentError::Usage(errs.join("\nheadroom-agent: ")))
}

/// Parses the command line and runs the command.
pub fn main() -> Result<(), AgentError> {
    let Some(cli) = headroom_service::cli::parse::<Cli>().map_err(AgentError::Usage)? else {
        return Ok(());
    };
    let settings = settings(&cli)?;
    headroom_service::logging::init();
    match cli.command {
        Command::Once { duration, format } => {
            let d = config::parse_duration("--duration", &duration)
                .map_err(|e| AgentError::Usage(e.to_string()))?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                return Err(AgentError::Usage(format!(
                    "invalid --duration '{duration}': must be between 1s (one peak window) and 1h"
                )));
            }
            let report = commands::once::once(&settings, d)?;
            print_report(format, &report, || report.table());
            Ok(())
        }
        Command::StorageCheck {
            path,
            files,
            file_size,
            large_mib,
            reference,
            format,
        } => {
            use crate::sources::storage::check::{self, CheckError, Options};
            let reference = match reference {
                Some(r) if r.as_os_str() == "none" => None,
                Some(r) => Some(r),
                None => Some(check::default_reference()),
            };
            let o = Options {
                files,
                file_bytes: file_size,
                large_bytes: large_mib.saturating_mul(1 << 20),
            };
            let report = check::run(&path, reference.as_deref(), &o).map_err(|e| match e {
                CheckError::BadPath(_) => AgentError::Usage(e.to_string()),
                CheckError::Io { .. } => AgentError::Runtime(e.to_string()),
            })?;
            print_report(format, &report, || report.table());
            Ok(())
        }
        Command::Watch { count } => commands::watch::watch(&settings, count),
        Command::Run { .. } => commands::run::run(&settings),
    }
}

/// A command's report on stdout: pretty JSON, or its table.
fn print_report(format: Format, report: &impl serde::Serialize, table: impl FnOnce() -> String) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).expect("the report always serializes")
        ),
        Format::Table => print!("{}", table()),
    }
}
