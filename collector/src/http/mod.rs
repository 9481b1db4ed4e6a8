//! The collector's own HTTP listener (`--http-listen`): the routes ([`api`]), `/metrics`
//! ([`metrics`]) and the status page ([`page`]).

mod api;
mod metrics;
mod page;

pub use api::handle;
