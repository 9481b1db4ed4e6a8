//! Time as the collector stores it (nanoseconds since the epoch) and shows it (RFC 3339).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch (0 before it).
pub fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds, truncated, not rounded.
    #[test]
    fn the_epoch_and_a_known_instant() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_765_000_000_123_999_999),
            "2025-12-06T05:46:40.123Z"
        );
        assert_eq!(
            rfc3339(1_765_000_000_124_000_000),
            "2025-12-06T05:46:40.124Z"
        );
    }
}
