//! End-to-end tests in one binary: the real agent and the real collector together, in network
//! namespace beds. Both binaries are found through cargo (`headroom_testbed::bins`), built in
//! this test's target dir and profile when `cargo test --workspace` has not built them yet.

#[path = "../../../agent/tests/common/mod.rs"]
mod agent_common;
#[path = "../../../collector/tests/common/mod.rs"]
mod collector_common;

mod agent_to_collector;
mod alerts;
mod auth;
mod cache_fix;
mod collector_from_agent;
mod dashboards;
mod hpa_request_rate;
mod hpa_servers;
mod image;
mod procs;
mod sidecar;
mod storage;
mod tls;
