//! headroom-agent: measures on each node what nobody watches until it breaks, starting with the
//! packets each network interface sends to EC2 link-local services (1024/s per interface).
//!
//! Layout: `sources/<signal>/` measure (one folder per signal), `enrich/` adds pod identity,
//! `report` is what every exporter reads, `export/` turns reports into /metrics, OTLP and
//! tables, `sys/` is the only code that talks to the kernel directly.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod enrich;
pub mod export;
pub mod health;
pub mod interfaces;
pub mod mode;
pub mod pipeline;
pub mod pod;
pub mod report;
pub mod sources;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;

/// Errors that end a command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad flags, config or names: exit 64 (EX_USAGE).
    #[error("{0}")]
    Usage(String),
    /// Missing privilege: exit 77 (EX_NOPERM).
    #[error("{0}")]
    Permission(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Usage(_) => 64,
            AgentError::Permission(_) => 77,
            AgentError::Runtime(_) => 1,
        }
    }
}

impl From<sys::packet::TapError> for AgentError {
    fn from(e: sys::packet::TapError) -> Self {
        match e {
            sys::packet::TapError::Permission { .. }
            | sys::packet::TapError::EbpfPermission { .. } => AgentError::Permission(e.to_string()),
            _ => AgentError::Runtime(e.to_string()),
        }
    }
}
