//! The collector's integration tests in one binary (one link of testbed instead of one per
//! file): each module is one area, run against the real collector binary or the library.
//! Tests that also start the agent live in the e2e crate (`e2e/tests/it`).

#[path = "../common/mod.rs"]
mod common;

mod bounds;
mod config_docs;
mod fleet_figures;
mod forwarding;
mod hpa_kube;
mod otlp_errors;
mod python_sdk;
mod state;
