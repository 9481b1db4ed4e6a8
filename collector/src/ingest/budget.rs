//! What ingest may use: a number of requests at a time, and memory. The collector's resident
//! set (from `/proc/self/statm`: the process's own pages, which is what the kernel's OOM
//! killer and a container's limit charge first; the cgroup's `memory.current` also counts the
//! page cache of files the collector writes, which the kernel reclaims before OOM, so it
//! would shed for memory that is not really in use) plus what the requests being decoded are
//! estimated to need must stay under `memory_limit`. A request is shed before its body is
//! read when the collector is already near the limit, and again before decoding when its
//! estimated decoded size does not fit; a request whose decoded size alone exceeds a quarter
//! of the limit is refused as too large. One request is always let through when none holds a
//! reservation: memory freed by the allocator is not always given back to the kernel, so a
//! resident set that stays high after a burst must not shed every sender for good; one
//! request at a time still makes progress, and its decoded size is at most a quarter of the
//! limit. A body being read is not reserved yet (its size is not
//! known until it has arrived): at most `max_concurrent_requests` × `max_request_bytes` (twice
//! that with gzip), which the resident set shows as it grows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was shed (the `reason` of the rejection counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `max_concurrent_requests` are being handled.
    Concurrency,
    /// Memory in use (or about to be) is over `memory_limit`.
    Memory,
}

/// The seconds a shed sender is asked to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Above this share of `memory_limit` (in percent), requests are shed before their body is
/// read: room for the requests already admitted.
const HIGH_WATER_PERCENT: usize = 90;

pub struct Budget {
    limit: usize,
    reserved: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
    rss: fn() -> usize,
}

/// One admitted request: holds a concurrency slot (and, once reserved, its memory).
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    reserved: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How long a reading of the resident set is used again: reading /proc/self/statm for each
/// of 500 requests a second was 5 % of the collector's CPU at 5 000 agents; in 50 ms the fleet
/// grows by far less than the room the high-water mark leaves, and the requests under way are
/// counted by their reservations, not by the reading.
const RSS_REUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The resident set of this process in bytes (0 when /proc cannot be read), read at most every
/// [`RSS_REUSE`].
pub fn rss() -> usize {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, usize)>> =
        std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, v)) = *last {
        if at.elapsed() < RSS_REUSE {
            return v;
        }
    }
    let v = read_rss();
    *last = Some((std::time::Instant::now(), v));
    v
}

fn read_rss() -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: usize = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages.saturating_mul(rustix::param::page_size())
}

impl Budget {
    pub fn new(memory_limit: usize, max_concurrent: usize) -> Budget {
        Budget::with_rss(memory_limit, max_concurrent, rss)
    }

    /// As [`Budget::new`], with another measure of memory in use (tests).
    pub fn with_rss(memory_limit: usize, max_concurrent: usize, rss: fn() -> usize) -> Budget {
        Budget {
            limit: memory_limit,
            reserved: Arc::new(AtomicUsize::new(0)),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            rss,
        }
    }

    /// The largest estimated decoded size one request may have.
    pub fn max_decoded(&self) -> usize {
        self.limit / 4
    }

    /// Memory in use: resident set plus what admitted requests reserved.
    pub fn in_use(&self) -> usize {
        (self.rss)().saturating_add(self.reserved.load(Ordering::Acquire))
    }

    /// A slot for one request, before its body is read.
    pub fn admit(&self) -> Result<Admission, Shed> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Shed::Concurrency)?;
        let idle = self.reserved.load(Ordering::Acquire) == 0;
        if !idle && self.in_use() >= self.limit / 100 * HIGH_WATER_PERCENT {
            return Err(Shed::Memory);
        }
        Ok(Admission {
            _permit: permit,
            reserved: self.reserved.clone(),
            bytes: 0,
        })
    }

    /// Reserves `bytes` (the request's estimated decoded size) for `admission` until it is
    /// dropped; Err when that would go over the limit.
    pub fn reserve(&self, admission: &mut Admission, bytes: usize) -> Result<(), Shed> {
        let before = self.reserved.fetch_add(bytes, Ordering::AcqRel);
        let over = (self.rss)().saturating_add(before).saturating_add(bytes) > self.limit;
        // The only reservation: let it through (see the module's doc).
        if over && before != 0 {
            self.reserved.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Shed::Memory);
        }
        admission.bytes += bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read() {
        assert!(rss() > 1 << 20, "{}", rss());
        let before = read_rss();
        let grown = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = read_rss();
        assert!(
            after >= before + (60 << 20),
            "64 MiB touched: {after} vs {before}"
        );
        drop(grown);
    }

    #[test]
    fn slots_and_memory_are_bounded_and_given_back() {
        let b = Budget::with_rss(1000, 2, || 100);
        let mut one = b.admit().unwrap();
        let mut two = b.admit().unwrap();
        assert!(matches!(b.admit(), Err(Shed::Concurrency)));
        b.reserve(&mut one, 500).unwrap();
        assert_eq!(b.reserve(&mut two, 401), Err(Shed::Memory));
        b.reserve(&mut two, 350).unwrap();
        assert_eq!(b.in_use(), 950);
        drop(one);
        assert_eq!(b.in_use(), 450);
        drop(two);
        assert_eq!(b.in_use(), 100);
        let _three = b.admit().unwrap();
    }

    #[test]
    fn near_the_limit_only_one_request_at_a_time_goes_through() {
        let b = Budget::with_rss(1000, 4, || 990);
        // Nothing reserved: admitted although over the high-water mark, and reserved.
        let mut one = b.admit().unwrap();
        b.reserve(&mut one, 200).unwrap();
        // While it holds memory, the next is shed.
        assert!(matches!(b.admit(), Err(Shed::Memory)));
        drop(one);
        let (mut two, mut three) = (b.admit().unwrap(), b.admit().unwrap());
        b.reserve(&mut two, 10).unwrap();
        assert_eq!(b.reserve(&mut three, 10), Err(Shed::Memory));
    }
}
