//! Network storage: the `storage-check` command's measurement (`check.rs`).

pub mod check;
