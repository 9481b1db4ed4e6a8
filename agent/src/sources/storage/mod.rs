//! Network storage: per pod and NFS mount (EFS is NFSv4.1), each procedure's calls, round trip
//! and execute time over the window (`mountstats.rs` parses, `report.rs` computes the window,
//! `source.rs` reads `/proc/PID/mountstats`); and the `storage-check` command (`check.rs`).

pub mod check;
pub mod mountstats;
pub mod report;
pub mod source;

pub use report::{OpWindow, StorageMount, StoragePod};
pub use source::Storage;

#[cfg(test)]
mod tests;
