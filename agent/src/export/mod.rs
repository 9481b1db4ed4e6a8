//! Exporters: each reads reports only, never a source's internals.

pub mod otlp;
pub mod prometheus;
pub mod table;
