//! The bearer token for a collector that requires authentication (`otlp_token_file`): in the
//! DaemonSet a projected ServiceAccount token (audience `headroom-collector`) that the kubelet
//! rotates well before it expires by swapping a symlink. The file is looked at (one `stat`)
//! before each request and read again when its size, modification time or inode changed, so
//! a rotated token is used from the next request on. The token is never logged; a file that
//! cannot be read keeps the last token read (the old one is still valid for a while), with a
//! warning once per problem.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Longest token file read (a ServiceAccount JWT is about 1 KiB).
const MAX_BYTES: u64 = 16 << 10;

type Stamp = (u64, i64, i64, u64);

pub(super) struct TokenFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    /// `Bearer <token>`.
    value: Option<String>,
    /// The last problem warned about (not repeated while it lasts).
    problem: Option<String>,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            stamp: None,
            value: None,
            problem: None,
        }
    }

    /// The `Authorization` value, read again when the file changed.
    pub fn authorization(&mut self) -> Option<&str> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
        if stamp.is_none() || stamp != self.stamp {
            match self.read() {
                Ok(v) => {
                    if self.value.is_some() {
                        tracing::info!(message = "OTLP token file changed; sending the new token.", path = %self.path.display());
                    }
                    self.value = Some(v);
                    self.stamp = stamp;
                    self.problem = None;
                }
                Err(why) => {
                    if self.problem.as_deref() != Some(why.as_str()) {
                        tracing::warn!(message = "Cannot use the OTLP token file; keeping the last token read.", path = %self.path.display(), problem = %why, have_token = self.value.is_some());
                        self.problem = Some(why);
                    }
                }
            }
        }
        self.value.as_deref()
    }

    fn read(&self) -> Result<String, String> {
        use std::io::Read;
        let f = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let mut text = String::new();
        f.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        if text.len() as u64 > MAX_BYTES {
            return Err(format!("larger than {MAX_BYTES} bytes"));
        }
        let token = text.trim();
        if token.is_empty() {
            return Err("empty".into());
        }
        let value = format!("Bearer {token}");
        // Only visible ASCII goes into a header.
        if hyper::header::HeaderValue::from_str(&value).is_err() {
            return Err("not a token (characters a header cannot carry)".into());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_is_read_again_and_a_broken_one_keeps_the_last_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        let mut t = TokenFile::new(f.clone());
        assert_eq!(t.authorization(), None, "no file yet");
        std::fs::write(&f, "first.token.1\n").unwrap();
        assert_eq!(t.authorization(), Some("Bearer first.token.1"));
        // The kubelet's way: a new file renamed over the path.
        let tmp = dir.path().join("token.tmp");
        std::fs::write(&tmp, "second.token.2").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(t.authorization(), Some("Bearer second.token.2"));
        std::fs::write(&tmp, "  \n").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(t.authorization(), Some("Bearer second.token.2"));
        std::fs::remove_file(&f).unwrap();
        assert_eq!(t.authorization(), Some("Bearer second.token.2"));
        std::fs::write(&f, "bad\u{1}token").unwrap();
        assert_eq!(t.authorization(), Some("Bearer second.token.2"));
    }
}
