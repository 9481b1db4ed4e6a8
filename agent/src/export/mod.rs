//! Exporters: each reads reports only, never a source's internals.

pub(crate) mod figures;
pub(crate) mod identity;
pub mod otlp;
pub mod prometheus;
pub mod table;
