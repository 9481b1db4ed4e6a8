//! Time as the collector stores it (nanoseconds since the epoch) and shows it (RFC 3339).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch (0 before it).
pub fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// Formatted milliseconds kept per thread (a power of two).
const SEEN: usize = 16;

thread_local! {
    /// (milliseconds, their text) by a hash of the milliseconds; `u64::MAX` is empty (no
    /// time in nanoseconds reaches it in milliseconds).
    static FORMATTED: RefCell<[(u64, String); SEEN]> =
        RefCell::new(std::array::from_fn(|_| (u64::MAX, String::new())));
}

/// RFC 3339 with milliseconds, UTC. The last few texts are kept per thread: a snapshot
/// formats the same instants again and again (every probe of a node and most of its DNS
/// peaks share its agent's window ends), and formatting was a tenth of a snapshot's cost at
/// 2 000 nodes; a kept text costs a copy.
pub fn rfc3339(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let slot = (ms.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SEEN.trailing_zeros())) as usize;
    FORMATTED.with_borrow_mut(|seen| {
        let (at, text) = &mut seen[slot];
        if *at != ms {
            *text = format_millis(ms);
            *at = ms;
        }
        text.clone()
    })
}

fn format_millis(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn direct(ns: u64) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
    }

    proptest! {
        /// Kept texts are the texts: instants that share a slot, the same millisecond with
        /// other nanoseconds, and one millisecond apart, in any order.
        #[test]
        fn kept_texts_are_what_formatting_gives(
            base in 0u64..4_102_444_800_000_000_000,
            steps in prop::collection::vec((0u64..40, 0u64..1_000_000, 0u64..3), 1..200),
        ) {
            for (ms, sub, far) in steps {
                let ns = base + far * 86_400_000_000_000 + ms * 1_000_000 + sub;
                prop_assert_eq!(rfc3339(ns), direct(ns));
            }
        }
    }

    #[test]
    fn the_epoch_and_a_known_instant() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_765_000_000_123_456_789),
            "2025-12-06T05:46:40.123Z"
        );
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
