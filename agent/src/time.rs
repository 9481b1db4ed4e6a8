//! Time helpers every part uses: the wall clock in nanoseconds and the one duration syntax of
//! flags and config files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 before it).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// A duration that does not parse, naming the setting and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{text}': expected a duration such as 10s, 1m or 500ms")]
pub struct DurationError {
    pub what: String,
    pub text: String,
}

/// Parses a duration such as `10s`, `1m` or `500ms`.
pub fn parse_duration(what: &str, text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text).map_err(|_| DurationError {
        what: what.to_string(),
        text: text.to_string(),
    })
}
