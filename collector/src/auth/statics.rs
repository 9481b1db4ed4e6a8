//! Static tokens for foreign senders (an OpenTelemetry Collector gateway), from a file that is
//! usually a mounted Secret. One token per line, `TOKEN CLUSTER`, separated by spaces or tabs;
//! `#` starts a comment line; blank lines are skipped:
//!
//! ```text
//! # gateway of cluster prod-b
//! 3c1f0e…9a prod-b
//! ```
//!
//! A line per token rather than TOML: the file is written by `kubectl create secret generic
//! --from-file`, tokens are opaque non-blank strings that need no quoting, and a line that is
//! wrong can be named by its number. Only SHA-256 digests of the tokens are kept, compared in
//! constant time with every entry. The file is looked at again at most once per
//! [`RECHECK`] and read again when its size, modification time or inode changed (a Secret
//! volume swaps a symlink); a file that cannot be read or parsed keeps the tokens already
//! loaded, with a warning.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the file's metadata is looked at.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Most tokens one file may hold; more is a mistake (or not a token file).
pub const MAX_TOKENS: usize = 10_000;

/// Largest file read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// A bad static tokens file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaticError {
    #[error("cannot read auth_static_tokens_file {path}: {why}")]
    Read { path: String, why: String },
    #[error("auth_static_tokens_file {path} line {line}: {why}; each line is 'TOKEN CLUSTER'")]
    Line {
        path: String,
        line: usize,
        why: &'static str,
    },
}

/// Parses the file's text into (digest, cluster) pairs.
pub fn parse(path: &str, text: &str) -> Result<Vec<([u8; 32], String)>, StaticError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why| StaticError::Line {
            path: path.to_string(),
            line: i + 1,
            why,
        };
        let mut words = line.split_whitespace();
        let (Some(token), Some(cluster)) = (words.next(), words.next()) else {
            return Err(bad("no cluster after the token"));
        };
        if words.next().is_some() {
            return Err(bad("more than two words"));
        }
        if token.len() < 16 {
            return Err(bad("token shorter than 16 characters"));
        }
        if token.len() > super::MAX_TOKEN_BYTES || cluster.len() > 253 {
            return Err(bad("token or cluster name too long"));
        }
        if out.len() >= MAX_TOKENS {
            return Err(bad("more than 10000 tokens"));
        }
        out.push((super::digest(token), cluster.to_string()));
    }
    Ok(out)
}

type Stamp = (u64, i64, i64, u64);

struct Loaded {
    stamp: Option<Stamp>,
    checked: Option<Instant>,
    tokens: Vec<([u8; 32], String)>,
}

pub struct StaticTokens {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
}

impl StaticTokens {
    /// Loads the file now (a warning when it cannot be used: see [`StaticTokens::check`]).
    pub fn new(path: PathBuf) -> StaticTokens {
        let s = StaticTokens {
            path,
            loaded: Mutex::new(Loaded {
                stamp: None,
                checked: None,
                tokens: Vec::new(),
            }),
        };
        s.refresh(true);
        s
    }

    /// Checks the file once before the collector binds a port: a file that is there from the
    /// start must be usable.
    pub fn check(path: &std::path::Path) -> Result<usize, StaticError> {
        let p = path.display().to_string();
        read(path).and_then(|t| parse(&p, &t)).map(|t| t.len())
    }

    fn refresh(&self, force: bool) {
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if !force && l.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        l.checked = Some(Instant::now());
        let now = std::fs::metadata(&self.path).ok().map(|m| stamp(&m));
        if now.is_some() && now == l.stamp {
            return;
        }
        let p = self.path.display().to_string();
        match read(&self.path).and_then(|t| parse(&p, &t)) {
            Ok(tokens) => {
                tracing::info!(message = "Static tokens loaded.", path = %p, tokens = tokens.len());
                l.tokens = tokens;
                l.stamp = now;
            }
            Err(error) => {
                // Keep what was loaded; try again when the file changes.
                l.stamp = now;
                tracing::warn!(message = "Static tokens file not used; keeping the tokens loaded before.", %error, kept = l.tokens.len());
            }
        }
    }

    /// The cluster of `token`, if it is one of the file's. Every entry is compared.
    pub fn lookup(&self, token: &str) -> Option<String> {
        self.refresh(false);
        let d = super::digest(token);
        let l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (t, cluster) in &l.tokens {
            if super::same(t, &d) && found.is_none() {
                found = Some(cluster.clone());
            }
        }
        found
    }

    /// Whether some static token is allowed `cluster`.
    pub fn owns(&self, cluster: &str) -> bool {
        let l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        l.tokens.iter().any(|(_, c)| c == cluster)
    }
}

fn read(path: &std::path::Path) -> Result<String, StaticError> {
    use std::io::Read;
    let bad = |why: String| StaticError::Read {
        path: path.display().to_string(),
        why,
    };
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_and_its_errors() {
        let t = parse(
            "f",
            "# c\n\n  aaaaaaaaaaaaaaaa\tprod \nbbbbbbbbbbbbbbbb dev\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].1, "prod");
        assert_eq!(t[0].0, crate::auth::digest("aaaaaaaaaaaaaaaa"));
        for (bad, line) in [
            ("aaaaaaaaaaaaaaaa\n", 1),
            ("# x\nshort prod\n", 2),
            ("aaaaaaaaaaaaaaaa prod extra\n", 1),
        ] {
            match parse("f", bad) {
                Err(StaticError::Line { line: l, .. }) => assert_eq!(l, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "aaaaaaaaaaaaaaaa prod\n").unwrap();
        let s = StaticTokens::new(f.clone());
        assert_eq!(s.lookup("aaaaaaaaaaaaaaaa").as_deref(), Some("prod"));
        assert_eq!(s.lookup("bbbbbbbbbbbbbbbb"), None);
        assert!(s.owns("prod") && !s.owns("dev"));
        // Replaced as a Secret volume does: a new file renamed over the old one.
        let tmp = dir.path().join("tokens.new");
        std::fs::write(&tmp, "bbbbbbbbbbbbbbbb dev\n").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        s.refresh(true);
        assert_eq!(s.lookup("aaaaaaaaaaaaaaaa"), None);
        assert_eq!(s.lookup("bbbbbbbbbbbbbbbb").as_deref(), Some("dev"));
        std::fs::write(&tmp, "broken\n").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        s.refresh(true);
        assert_eq!(s.lookup("bbbbbbbbbbbbbbbb").as_deref(), Some("dev"));
    }
}
