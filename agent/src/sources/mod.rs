//! The agent's sources, one folder (or file) per signal. A source owns its configuration
//! section, its report section, how it starts and stops, and how it fills a report.

pub mod dns;
pub mod ena;
pub mod eni;
pub mod linklocal;
pub mod listeners;
pub mod probes;
pub mod resolver_checks;
