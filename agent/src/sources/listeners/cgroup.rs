//! The cgroup code lives in [`crate::sys::cgroup`] (shared with the pod-use source); this alias
//! keeps the listener files' `cgroup::` paths.
pub use crate::sys::cgroup::*;
