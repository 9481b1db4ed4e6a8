//! Command line: flags (which override the config file), and exit codes.

use crate::config::{self, Config, Settings};
use crate::CollectorError;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug, Default)]
#[command(
    name = "headroom-collector",
    version,
    about = "Receives OTLP from headroom agents and any OTLP sender; serves the fleet as JSON, /metrics and a status page."
)]
pub struct Cli {
    /// TOML configuration file; flags override its fields.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC receiver address [default: 0.0.0.0:4317].
    #[arg(long, value_name = "ADDR")]
    pub otlp_grpc_listen: Option<String>,
    /// OTLP/HTTP receiver address [default: 0.0.0.0:4318].
    #[arg(long, value_name = "ADDR")]
    pub otlp_http_listen: Option<String>,
    /// API, status page, /metrics, /healthz, /readyz [default: 0.0.0.0:9464].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Send received spans on to this OTLP/HTTP base URL (e.g. http://jaeger:4318).
    #[arg(long, value_name = "URL")]
    pub traces_endpoint: Option<String>,
    /// Send firing findings to this Alertmanager (base URL, e.g. http://alertmanager:9093);
    /// repeatable. Replaces the config file's alertmanager_urls.
    #[arg(long = "alertmanager-url", value_name = "URL")]
    pub alertmanager_url: Vec<String>,
    /// POST every finding state change as JSON to this URL.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// How spans go to --traces-endpoint: grpc or http [default: http].
    #[arg(long, value_name = "PROTOCOL")]
    pub traces_protocol: Option<String>,
    /// Who may send OTLP: required (bearer tokens) or none (anyone; logs a warning)
    /// [default: required].
    #[arg(long, value_name = "MODE")]
    pub auth: Option<String>,
}

/// The configuration: file first, flags over it, then every field checked.
pub fn settings(cli: &Cli) -> Result<Settings, CollectorError> {
    let mut cfg = match &cli.config {
        Some(p) => config::load(p)?,
        None => Config::default(),
    };
    // A flag given replaces the field (a repeated flag replaces the whole list).
    let set = |field: &mut String, flag: &Option<String>| {
        if let Some(v) = flag {
            field.clone_from(v);
        }
    };
    set(&mut cfg.otlp_grpc_listen, &cli.otlp_grpc_listen);
    set(&mut cfg.otlp_http_listen, &cli.otlp_http_listen);
    set(&mut cfg.http_listen, &cli.http_listen);
    set(&mut cfg.traces_protocol, &cli.traces_protocol);
    set(&mut cfg.auth, &cli.auth);
    if cli.traces_endpoint.is_some() {
        cfg.traces_endpoint.clone_from(&cli.traces_endpoint);
    }
    if cli.webhook_url.is_some() {
        cfg.webhook_url.clone_from(&cli.webhook_url);
    }
    if !cli.alertmanager_url.is_empty() {
        cfg.alertmanager_urls.clone_from(&cli.alertmanager_url);
    }
    cfg.validate().map_err(CollectorError::Invalid)
}

/// Parses the command line; `Ok(None)` when help or the version was printed.
pub fn parse() -> Result<Option<Settings>, CollectorError> {
    match headroom_service::cli::parse::<Cli>().map_err(CollectorError::Usage)? {
        Some(cli) => settings(&cli).map(Some),
        None => Ok(None),
    }
}
