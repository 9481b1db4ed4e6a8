//! No library code: this crate holds the deployment checks in `deploy/tests/manifests.rs`.
