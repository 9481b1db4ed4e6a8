//! The findings state file: the tracked findings as JSON, written atomically (a temporary file,
//! fsynced, renamed over it, then the directory fsynced so the rename survives a power loss)
//! after each change and read at start, so a restarted collector neither pages again nor
//! forgets a firing alert. A damaged file is moved aside (`<name>.corrupt-<unix seconds>`) by
//! the caller and the collector starts without saved findings, rather than crash-looping.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "headroom.findings-state/v1";

#[derive(Serialize, Deserialize)]
struct StateFile<T> {
    schema: String,
    findings: Vec<T>,
}

/// Why a state file cannot be read: each a usage error (exit 64), reported before any port
/// is bound.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state_file {}: {source}; fix its permissions or point state_file elsewhere", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid state_file {}: {source}; remove it to start without saved findings", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state_file {} has schema '{found}', expected '{SCHEMA}'; remove it to start afresh", path.display())]
    Schema { path: PathBuf, found: String },
    #[error("cannot move the damaged state_file {} aside to {}: {source}; fix the directory's permissions or remove the file", path.display(), to.display())]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

impl StateError {
    /// Whether the file's content is the problem (rather than reading it).
    pub fn is_damage(&self) -> bool {
        matches!(self, StateError::Invalid { .. } | StateError::Schema { .. })
    }
}

/// The directory holding `path` (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (a rename in it) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves a damaged state file to `<name>.corrupt-<unix seconds>`; returns where.
pub fn set_aside(path: &Path, now: std::time::SystemTime) -> Result<PathBuf, StateError> {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".corrupt-{secs}"));
    let to = PathBuf::from(to);
    std::fs::rename(path, &to)
        .and_then(|()| sync_dir(dir_of(path)))
        .map_err(|source| StateError::SetAside {
            path: path.to_owned(),
            to: to.clone(),
            source,
        })?;
    Ok(to)
}

/// The findings saved in `path`; None when the file does not exist.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let file: StateFile<T> = serde_json::from_str(&text).map_err(|source| StateError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    if file.schema != SCHEMA {
        return Err(StateError::Schema {
            path: path.to_owned(),
            found: file.schema,
        });
    }
    Ok(Some(file.findings))
}

/// Writes the findings to `path` atomically and durably: a temporary file written and fsynced,
/// renamed over it, the directory fsynced.
pub fn save<'a, T: Serialize + 'a>(
    path: &Path,
    findings: impl Iterator<Item = &'a T>,
) -> std::io::Result<()> {
    let file = StateFile {
        schema: SCHEMA.into(),
        findings: findings.collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir_of(path))
}
