//! The export queue on disk (`otlp_queue_dir`, a hostPath in the DaemonSet): every queued
//! request is also a file, removed once the receiver took it, so an agent restarted during a
//! collector outage (an upgrade, an OOM kill, `kill -9`) still sends every window it measured,
//! oldest first. One file per request, `<seq>.m` (metrics) or `<seq>.t` (traces): written to a
//! temporary name, fsynced, renamed into place and the directory fsynced, so a crash leaves
//! either the whole request or none (a temporary file is removed at the next start). Bounded:
//! at most [`MAX_BYTES`] and the queue's own capacity; beyond, the oldest go first (counted as
//! dropped, as in memory).

use super::Signal;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Most bytes of requests kept on disk.
pub const MAX_BYTES: u64 = 64 << 20;
/// A file larger than this is not one of ours (a request is at most 3 MiB): skipped, removed.
const MAX_FILE: u64 = 8 << 20;

/// A request read back from disk: its sequence number, kind and body.
pub type Stored = (u64, Signal, Vec<u8>);

/// The spool directory and what is in it, oldest first.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    files: VecDeque<(u64, Signal, u64)>,
    bytes: u64,
}

fn name(seq: u64, signal: Signal) -> String {
    let kind = match signal {
        Signal::Metrics => "m",
        Signal::Traces => "t",
    };
    format!("{seq:020}.{kind}")
}

fn parse_name(n: &str) -> Option<(u64, Signal)> {
    let (seq, kind) = n.split_once('.')?;
    let signal = match kind {
        "m" => Signal::Metrics,
        "t" => Signal::Traces,
        _ => return None,
    };
    (seq.len() == 20).then(|| seq.parse().ok().map(|s| (s, signal)))?
}

impl Spool {
    /// Opens (creating) `dir` and reads what an earlier run left, oldest first, within
    /// [`MAX_BYTES`] (older ones beyond it are removed). Temporary files and files that are
    /// not a request of ours (wrong name, not a regular file, too large) are removed.
    pub fn open(dir: &Path) -> io::Result<(Spool, Vec<Stored>)> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let n = e.file_name();
            let n = n.to_string_lossy();
            let meta = e.path().symlink_metadata()?;
            match parse_name(&n) {
                Some((seq, signal)) if meta.is_file() && meta.len() <= MAX_FILE => {
                    found.push((seq, signal, meta.len()))
                }
                _ => {
                    tracing::debug!(message = "Removing a file that is not a queued request.", file = %n);
                    let _ = if meta.is_dir() {
                        std::fs::remove_dir_all(e.path())
                    } else {
                        std::fs::remove_file(e.path())
                    };
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            files: VecDeque::new(),
            bytes: 0,
        };
        // Keep the newest within MAX_BYTES.
        let mut keep = 0;
        let mut total = 0;
        for f in found.iter().rev() {
            if total + f.2 > MAX_BYTES {
                break;
            }
            total += f.2;
            keep += 1;
        }
        let (old, kept) = found.split_at(found.len() - keep);
        for &(seq, signal, _) in old {
            let _ = std::fs::remove_file(dir.join(name(seq, signal)));
        }
        let mut items = Vec::new();
        for &(seq, signal, len) in kept {
            let mut body = Vec::with_capacity(len as usize);
            match File::open(dir.join(name(seq, signal)))
                .and_then(|f| f.take(MAX_FILE).read_to_end(&mut body))
            {
                Ok(_) => {
                    spool.files.push_back((seq, signal, body.len() as u64));
                    spool.bytes += body.len() as u64;
                    items.push((seq, signal, body));
                }
                Err(error) => {
                    tracing::warn!(message = "A queued request could not be read; dropped.", seq, %error)
                }
            }
        }
        Ok((spool, items))
    }

    /// Writes one request durably (temporary file, fsync, rename, directory fsync), first
    /// removing the oldest while over [`MAX_BYTES`]; returns the sequence numbers removed.
    pub fn write(&mut self, seq: u64, signal: Signal, body: &[u8]) -> io::Result<Vec<u64>> {
        let mut removed = Vec::new();
        while self.bytes + body.len() as u64 > MAX_BYTES {
            let Some((s, _, _)) = self.files.front().copied() else {
                break;
            };
            self.remove(s);
            removed.push(s);
        }
        let tmp = self.dir.join(format!(".tmp-{seq}"));
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(name(seq, signal)))?;
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.files.push_back((seq, signal, body.len() as u64));
        self.bytes += body.len() as u64;
        Ok(removed)
    }

    /// Removes request `seq` (sent, refused or dropped). Not fsynced: a removal lost in a
    /// crash only sends that request again, which the collector takes as the same window.
    pub fn remove(&mut self, seq: u64) {
        if let Some(i) = self.files.iter().position(|f| f.0 == seq) {
            let (s, signal, len) = self.files.remove(i).expect("index from position");
            self.bytes -= len;
            if let Err(error) = std::fs::remove_file(self.dir.join(name(s, signal))) {
                tracing::debug!(message = "Cannot remove a sent request's file.", seq, %error);
            }
        }
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_a_restart_oldest_first_and_sent_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("q");
        let (mut s, items) = Spool::open(&dir).unwrap();
        assert!(items.is_empty());
        for seq in 1..=4u64 {
            let sig = if seq == 2 {
                Signal::Traces
            } else {
                Signal::Metrics
            };
            assert!(s.write(seq, sig, &[seq as u8; 100]).unwrap().is_empty());
        }
        s.remove(1);
        assert_eq!(s.bytes(), 300);
        // What a crash leaves besides: a torn temporary file, and files that are not ours.
        std::fs::write(dir.join(".tmp-5"), b"half").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(format!("{:020}.m", 9))).unwrap();
        drop(s);
        let (s, items) = Spool::open(&dir).unwrap();
        let got: Vec<Stored> = items;
        assert_eq!(
            got,
            vec![
                (2, Signal::Traces, vec![2; 100]),
                (3, Signal::Metrics, vec![3; 100]),
                (4, Signal::Metrics, vec![4; 100]),
            ]
        );
        assert_eq!(s.bytes(), 300);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 3, "only the three requests are left: {left:?}");
    }

    #[test]
    fn over_max_bytes_the_oldest_go() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path()).unwrap();
        // 7 MiB each (under the 8 MiB a file of ours may be): nine fit in 64 MiB, the tenth
        // pushes the first out.
        let big = vec![0u8; 7 << 20];
        for seq in 1..=9 {
            assert!(s.write(seq, Signal::Metrics, &big).unwrap().is_empty());
        }
        assert_eq!(s.write(10, Signal::Metrics, &big).unwrap(), [1]);
        assert!(s.bytes() <= MAX_BYTES);
        let (_, items) = Spool::open(d.path()).unwrap();
        assert_eq!(
            items.iter().map(|i| i.0).collect::<Vec<_>>(),
            (2..=10).collect::<Vec<_>>()
        );
    }
}
