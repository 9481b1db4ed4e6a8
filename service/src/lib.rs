//! What both headroom binaries copied before: the SIGTERM future, logging set-up, one-line usage
//! errors from clap, the HTTP/1.1 serve loop (TLS from reloaded PEM files, web-config auth), retry backoff with jitter and Kubernetes access as
//! kube-rs infers it. Nothing here knows a signal, a report or a fleet.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod http;
pub mod kube;
pub mod logging;
pub mod quantity;
pub mod signal;
pub mod tls;
pub mod web;
