//! Cgroup files kept open and re-read with `pread(2)` at offset 0: no path walk, open and close
//! at each sample (≈ 0.6–1.1 µs a read instead of ≈ 6 µs; benches/README.md). Descriptors are
//! counted against an [`FdBudget`] sized from the process's file limit; past it a file is
//! opened, read and closed each time as before. A kept file whose cgroup was removed fails to
//! read (the kernel answers ENODEV): its descriptor is dropped and the budget counts the
//! vanish, so the owner can walk the trees again.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Most bytes read from a kept file (`cpu.stat`'s `usage_usec` is its first line).
const MAX_KEPT: usize = 1024;

/// Descriptors held open for re-reading, at most `max`; shared by every [`Kept`] of one owner.
#[derive(Debug)]
pub struct FdBudget {
    max: usize,
    held: AtomicUsize,
    opens: AtomicU64,
    vanished: AtomicU64,
}

/// Descriptors left to the rest of the process before kept files take any.
const FD_RESERVE: u64 = 256;

impl FdBudget {
    pub fn new(max: usize) -> Arc<FdBudget> {
        Arc::new(FdBudget {
            max,
            held: AtomicUsize::new(0),
            opens: AtomicU64::new(0),
            vanished: AtomicU64::new(0),
        })
    }

    /// Half of what the soft `RLIMIT_NOFILE` leaves after [`FD_RESERVE`] (the agent's sockets,
    /// listener scans and the pod-file source need the rest): 384 at the common 1024.
    pub fn from_rlimit() -> Arc<FdBudget> {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) fills the struct we own; on failure it stays zero (no budget).
        let _ = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        let max = (r.rlim_cur.saturating_sub(FD_RESERVE) / 2).min(1 << 20);
        FdBudget::new(max as usize)
    }

    /// Descriptors held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Files opened by path so far (the slow way: each read past the budget, and first reads).
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// Kept files that failed to read so far (their cgroup removed or replaced).
    pub fn vanished(&self) -> u64 {
        self.vanished.load(Ordering::Relaxed)
    }

    fn take(self: &Arc<Self>) -> Option<Held> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                (h < self.max).then_some(h + 1)
            })
            .ok()
            .map(|_| Held(self.clone()))
    }
}

/// One descriptor's place in the budget, given back on drop.
#[derive(Debug)]
struct Held(Arc<FdBudget>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cgroup file, kept open while the budget allows.
#[derive(Debug)]
pub struct Kept {
    path: PathBuf,
    open: Option<(File, Held)>,
}

impl Kept {
    pub fn new(path: PathBuf) -> Kept {
        Kept { path, open: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a descriptor is held.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Reads the file (at most 1 KiB) and parses it. A held descriptor that fails is dropped
    /// and counted as vanished (None this time; the next read opens the path afresh). A file
    /// opened by path is kept when the budget has room. Never follows a link.
    pub fn read<T>(
        &mut self,
        budget: &Arc<FdBudget>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let mut buf = [0u8; MAX_KEPT];
        if let Some((f, _)) = &self.open {
            return match f.read_at(&mut buf, 0) {
                Ok(n) => std::str::from_utf8(&buf[..n]).ok().and_then(parse),
                Err(_) => {
                    self.open = None;
                    budget.vanished.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
        }
        budget.opens.fetch_add(1, Ordering::Relaxed);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .ok()?;
        let n = f.read_at(&mut buf, 0).ok()?;
        let out = std::str::from_utf8(&buf[..n]).ok().and_then(parse);
        if out.is_some() {
            if let Some(h) = budget.take() {
                self.open = Some((f, h));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_the_budget_rereads_and_gives_back() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "5\n").unwrap();
        std::fs::write(&b, "7\n").unwrap();
        let budget = FdBudget::new(1);
        let num = |t: &str| t.trim().parse::<u64>().ok();
        let (mut ka, mut kb) = (Kept::new(a.clone()), Kept::new(b.clone()));
        assert_eq!(ka.read(&budget, num), Some(5));
        assert_eq!(kb.read(&budget, num), Some(7));
        assert!(
            ka.is_open() && !kb.is_open(),
            "one descriptor in a budget of one"
        );
        assert_eq!((budget.held(), budget.opens()), (1, 2));
        // The held descriptor sees the file's new content (pread at 0, not the old offset).
        std::fs::write(&a, "6\n").unwrap();
        assert_eq!(ka.read(&budget, num), Some(6));
        assert_eq!(kb.read(&budget, num), Some(7));
        assert_eq!(budget.opens(), 3, "past the budget: opened each time");
        drop(ka);
        assert_eq!(budget.held(), 0);
        assert_eq!(kb.read(&budget, num), Some(7));
        assert!(kb.is_open());
        // Unparsable text is None and keeps nothing.
        std::fs::write(d.path().join("c"), "max\n").unwrap();
        let mut kc = Kept::new(d.path().join("c"));
        assert_eq!(kc.read(&budget, num), None);
        assert!(!kc.is_open());
    }

    #[test]
    fn never_follows_a_link_and_a_missing_file_is_none() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::write(&t, "1\n").unwrap();
        std::os::unix::fs::symlink(&t, d.path().join("l")).unwrap();
        let budget = FdBudget::new(8);
        let num = |t: &str| t.trim().parse::<u64>().ok();
        assert_eq!(Kept::new(d.path().join("l")).read(&budget, num), None);
        assert_eq!(Kept::new(d.path().join("gone")).read(&budget, num), None);
        assert_eq!(budget.held(), 0);
        assert!(FdBudget::from_rlimit().max > 0);
    }
}
