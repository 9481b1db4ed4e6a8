//! Nothing here: this crate holds the end-to-end tests (`tests/it`) that run the agent and the
//! collector together. They find both binaries through cargo (`headroom_testbed::bins`).
#![forbid(unsafe_code)]
