//! Checking configuration: one error type for an invalid setting (named by its field or flag,
//! with what would be valid: the one-line message a user sees), and a collector of every
//! problem, so validation reports them all at once and builds its result without unwrapping.

use std::net::SocketAddr;

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A text value (quoted in the message).
    #[error("invalid {field} '{text}': {expected}")]
    Text {
        field: String,
        text: String,
        expected: String,
    },
    /// A number (unquoted).
    #[error("invalid {field} {value}: {expected}")]
    Number {
        field: String,
        value: String,
        expected: String,
    },
    #[error("address {0} is given to two listeners; each needs its own port")]
    SharedAddress(SocketAddr),
    /// A whole config section (its name, then why).
    #[error("invalid [{0}]: {1}")]
    Section(&'static str, String),
}

impl Invalid {
    pub fn text(field: impl Into<String>, text: &str, expected: impl Into<String>) -> Invalid {
        Invalid::Text {
            field: field.into(),
            text: text.to_string(),
            expected: expected.into(),
        }
    }

    pub fn number(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Invalid {
        Invalid::Number {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Every problem found so far.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<Invalid>,
}

impl Check {
    /// The value, or None with its error kept.
    pub fn take<T>(&mut self, r: Result<T, Invalid>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    /// A part's own validation (all its errors kept).
    pub fn take_all<T>(&mut self, r: Result<T, Vec<Invalid>>) -> Option<T> {
        r.map_err(|e| self.errors.extend(e)).ok()
    }

    pub fn push(&mut self, e: Invalid) {
        self.errors.push(e);
    }

    /// The checked value when nothing was wrong, else every problem.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Invalid>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            // Every None came with an error, so there is at least one.
            _ => Err(self.errors),
        }
    }
}

/// A duration of at least `min` (humantime: `30s`, `5m`, `1h`); `too_short` and `bad` are the
/// message's expected part for a short and an unreadable value.
pub fn duration(
    field: &str,
    text: &str,
    min: std::time::Duration,
    too_short: &str,
    bad: &str,
) -> Result<std::time::Duration, Invalid> {
    match humantime::parse_duration(text) {
        Ok(d) if d >= min => Ok(d),
        Ok(_) => Err(Invalid::text(field, text, too_short)),
        Err(_) => Err(Invalid::text(field, text, bad)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_problem_is_kept_and_messages_are_one_line() {
        let mut c = Check::default();
        let d = c.take(duration(
            "x",
            "soon",
            Duration::ZERO,
            "short",
            "expected 5m",
        ));
        assert_eq!(d, None);
        c.push(Invalid::number("n", 0, "must be at least 1"));
        let errs = c.finish(Some(1)).unwrap_err();
        assert_eq!(errs[0].to_string(), "invalid x 'soon': expected 5m");
        assert_eq!(errs[1].to_string(), "invalid n 0: must be at least 1");
        assert_eq!(Check::default().finish(Some(1)), Ok(1));
    }
}
