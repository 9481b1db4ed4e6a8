//! The collector's integration tests in one binary (one link of testbed instead of one per
//! file): each module is one area, run against the real collector binary or the library.
//! Tests that also start the agent live in the e2e crate (`e2e/tests/it`).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bounds;
mod config_docs;
mod fleet_figures;
mod forwarding;
mod hpa_kube;
mod otlp_errors;
mod packing;
mod python_sdk;
mod rightsizing;
mod scale_down;
mod state;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;

/// An OTLP/gRPC metrics client to `c` that sends whatever size the test gives it (64 MiB), so
/// the collector's own limits are what is tested.
async fn metrics_client(c: &common::Collector) -> MetricsServiceClient<tonic::transport::Channel> {
    MetricsServiceClient::connect(format!("http://{}", c.grpc))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
}
