//! Kubernetes: what the API server says about this node.

pub mod kubelet;
pub mod pods;
