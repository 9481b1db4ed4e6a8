//! The agent's integration tests, one binary (one link of the test bed) with a module per
//! area. Tests that also run the collector live in the e2e crate (`e2e/tests/it`).

#[path = "../common/mod.rs"]
mod common;

mod accepts;
mod bad_input;
mod daemon;
mod dns;
mod dns_cache;
mod ebpf_tap;
mod eni_bed;
mod imds_client;
mod linklocal_accounting;
mod linklocal_rates;
mod pod_files;
mod pod_use;
mod probes;
mod sidecar;
mod storage_check;
mod watch_tmux;
mod workers_passenger;
mod workers_prefork;
mod workers_unix;
