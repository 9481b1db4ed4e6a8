//! `storage-check PATH`: the by-hand `time cat` of a network filesystem made rigorous. It
//! writes and reads back N small files and one large file in a temporary directory under PATH
//! (removed afterwards), times every open and read, and does the same in a local reference
//! directory, so "each open costs 4 ms, 50× local" is a measured figure, not a guess.
//!
//! Reads bypass the local page cache (`posix_fadvise(DONTNEED)` after open, after a `syncfs`),
//! so they measure the filesystem, not this machine's memory.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SCHEMA: &str = "headroom.storage_check/v1";
/// The largest number of small files one check writes.
pub const MAX_FILES: u32 = 100_000;
/// The largest small file, and the largest large file (MiB).
pub const MAX_FILE_BYTES: usize = 16 << 20;
pub const MAX_LARGE_MIB: u64 = 4096;
/// mountinfo is read up to this much (a host can have thousands of mounts).
const MOUNTINFO_LIMIT: u64 = 8 << 20;
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// PATH (or the reference) cannot be used: a usage error, exit 64.
    #[error("storage-check: {0}")]
    BadPath(String),
    /// The filesystem failed during the check: exit 1.
    #[error("storage-check: {what} in {dir}: {source}")]
    Io {
        what: &'static str,
        dir: String,
        source: std::io::Error,
    },
}

/// What one check does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small files written then read back.
    pub files: u32,
    /// Bytes in each small file.
    pub file_bytes: usize,
    /// Bytes of the one large file (0: no large file).
    pub large_bytes: u64,
}

impl Options {
    /// Every out-of-range option, at once.
    pub fn validate(&self) -> Result<(), CheckError> {
        let mut errs = Vec::new();
        if self.files == 0 || self.files > MAX_FILES {
            errs.push(format!(
                "invalid --files {}: give 1 to {MAX_FILES}",
                self.files
            ));
        }
        if self.file_bytes == 0 || self.file_bytes > MAX_FILE_BYTES {
            errs.push(format!(
                "invalid --file-size {}: give 1 to {MAX_FILE_BYTES} bytes",
                self.file_bytes
            ));
        }
        if self.large_bytes > MAX_LARGE_MIB << 20 {
            errs.push(format!(
                "invalid --large-mib {}: give 0 (none) to {MAX_LARGE_MIB}",
                self.large_bytes >> 20
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(CheckError::BadPath(errs.join("; ")))
        }
    }
}

/// The report of `storage-check --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub target: Measured,
    pub reference: Option<Measured>,
    /// How many times slower PATH is than the reference (reference ÷ PATH for rates, PATH ÷
    /// reference for latencies: above 1 means PATH is slower).
    pub ratio: Option<Ratio>,
}

/// One directory's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub path: String,
    /// The mount PATH is on: its type (`nfs4`, `fuse.sshfs`, `tmpfs`…) and source (for EFS:
    /// `fs-….efs.REGION.amazonaws.com:/`).
    pub filesystem: Option<Mount>,
    pub small_files: SmallFiles,
    pub large_file: Option<LargeFile>,
    /// The whole check of this directory, cleanup included.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub fstype: String,
    pub source: String,
    pub mount_point: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmallFiles {
    pub count: u32,
    pub bytes_each: usize,
    /// Files created, written and closed per second (the median of five consecutive batches).
    pub creates_per_s: f64,
    /// Files opened, read to the end and closed per second (the median of five consecutive
    /// batches).
    pub opens_per_s: f64,
    /// open(O_CREAT) + write + close of one file.
    pub create_ms: Quantiles,
    /// open(O_RDONLY) of one existing file.
    pub open_ms: Quantiles,
    /// Reading one whole file after its open.
    pub read_ms: Quantiles,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LargeFile {
    pub bytes: u64,
    /// Written in 1 MiB writes and fsynced, in MB/s (10^6 bytes).
    pub write_mb_s: f64,
    /// Read back in 1 MiB reads from the filesystem (not the page cache), MB/s.
    pub read_mb_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub opens_per_s: f64,
    pub creates_per_s: f64,
    pub open_p50: f64,
    pub read_p50: f64,
    pub large_write: Option<f64>,
    pub large_read: Option<f64>,
}

/// Checks PATH and, when given, the reference directory (same options).
pub fn run(path: &Path, reference: Option<&Path>, o: &Options) -> Result<CheckReport, CheckError> {
    o.validate()?;
    usable(path, "PATH")?;
    if let Some(r) = reference {
        usable(r, "--reference")?;
    }
    let target = measure(path, o)?;
    let reference = reference.map(|r| measure(r, o)).transpose()?;
    let ratio = reference.as_ref().map(|r| ratio(&target, r));
    Ok(CheckReport {
        schema: SCHEMA,
        target,
        reference,
        ratio,
    })
}

/// The local directory to compare with when none is given: /dev/shm (memory) when present,
/// else the system's temporary directory.
pub fn default_reference() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn usable(p: &Path, what: &str) -> Result<(), CheckError> {
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CheckError::BadPath(format!(
            "{what} '{}' does not exist: give an existing directory on the filesystem to check",
            p.display()
        ))),
        Err(e) => Err(CheckError::BadPath(format!(
            "{what} '{}' cannot be read ({e}): give a directory this user can write to",
            p.display()
        ))),
        Ok(m) if !m.is_dir() => Err(CheckError::BadPath(format!(
            "{what} '{}' is not a directory: give a directory on the filesystem to check",
            p.display()
        ))),
        Ok(_) => Ok(()),
    }
}

struct Hist(Histogram<u64>);

impl Hist {
    fn new() -> Hist {
        // 1 ns to 10 min at 3 significant digits.
        Hist(Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds"))
    }
    fn record(&mut self, d: Duration) {
        self.0
            .saturating_record((d.as_nanos() as u64).clamp(1, 600_000_000_000));
    }
    fn quantiles(&self) -> Quantiles {
        let ms = |ns: u64| (ns as f64 / 1e6 * 1000.0).round() / 1000.0;
        Quantiles {
            p50: ms(self.0.value_at_quantile(0.5)),
            p99: ms(self.0.value_at_quantile(0.99)),
            max: ms(self.0.max()),
        }
    }
}

fn measure(dir: &Path, o: &Options) -> Result<Measured, CheckError> {
    let begin = Instant::now();
    let shown = dir.display().to_string();
    let io = |what: &'static str| {
        let dir = shown.clone();
        move |source: std::io::Error| CheckError::Io { what, dir, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".headroom-storage-check-")
        .tempdir_in(dir)
        .map_err(|e| {
            CheckError::BadPath(format!(
                "cannot create a directory in '{shown}' ({e}): give a directory this user can write to"
            ))
        })?;
    let names: Vec<PathBuf> = (0..o.files)
        .map(|i| tmp.path().join(format!("small-{i:06}")))
        .collect();

    let payload: Vec<u8> = (0..o.file_bytes).map(|i| (i % 251) as u8).collect();
    let mut create = Hist::new();
    let mut create_each = Vec::with_capacity(names.len());
    for p in &names {
        let t0 = Instant::now();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(io("creating a small file"))?;
        f.write_all(&payload).map_err(io("writing a small file"))?;
        drop(f);
        create.record(t0.elapsed());
        create_each.push(t0.elapsed().as_secs_f64());
    }
    // Dirty pages cannot be dropped: flush them so the reads below go to the filesystem.
    flush(tmp.path()).map_err(io("syncfs"))?;

    let (mut open, mut read) = (Hist::new(), Hist::new());
    let mut buf = vec![0u8; o.file_bytes + 1];
    let mut open_each = Vec::with_capacity(names.len());
    for p in &names {
        let t0 = Instant::now();
        let mut f = File::open(p).map_err(io("opening a small file"))?;
        let opened = t0.elapsed();
        drop_cache(&f);
        let t1 = Instant::now();
        let n = read_all(&mut f, &mut buf).map_err(io("reading a small file"))?;
        read.record(t1.elapsed());
        open.record(opened);
        drop(f);
        open_each.push(t0.elapsed().as_secs_f64());
        if n != o.file_bytes as u64 {
            return Err(CheckError::Io {
                what: "reading back a small file",
                dir: shown,
                source: std::io::Error::other(format!(
                    "read {n} bytes of {} written",
                    o.file_bytes
                )),
            });
        }
    }

    let large_file = if o.large_bytes > 0 {
        Some(large(tmp.path(), o.large_bytes).map_err(io("the large file"))?)
    } else {
        None
    };
    tmp.close()
        .map_err(io("removing the temporary directory"))?;
    Ok(Measured {
        path: shown,
        filesystem: mount_of(dir),
        small_files: SmallFiles {
            count: o.files,
            bytes_each: o.file_bytes,
            creates_per_s: median_rate(&create_each),
            opens_per_s: median_rate(&open_each),
            create_ms: create.quantiles(),
            open_ms: open.quantiles(),
            read_ms: read.quantiles(),
        },
        large_file,
        seconds: begin.elapsed().as_secs_f64(),
    })
}

fn large(dir: &Path, bytes: u64) -> std::io::Result<LargeFile> {
    let p = dir.join("large");
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 253) as u8).collect();
    let t = Instant::now();
    let mut f = File::create(&p)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    let write_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut f = File::open(&p)?;
    drop_cache(&f);
    let mut buf = vec![0u8; CHUNK];
    let got = read_all(&mut f, &mut buf)?;
    let read_secs = t.elapsed().as_secs_f64();
    if got != bytes {
        return Err(std::io::Error::other(format!(
            "read back {got} bytes of {bytes}"
        )));
    }
    let mb = bytes as f64 / 1e6;
    Ok(LargeFile {
        bytes,
        write_mb_s: round(rate(mb, write_secs)),
        read_mb_s: round(rate(mb, read_secs)),
    })
}

/// Reads to the end through `buf`, returning the bytes read.
fn read_all(f: &mut File, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn flush(dir: &Path) -> std::io::Result<()> {
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d)?;
    Ok(())
}

/// Drops this file's clean pages from the page cache; filesystems without a page cache of
/// their own data (tmpfs) ignore it. Best effort: a failure only means reads may be cached.
fn drop_cache(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

/// Consecutive batches the small files are timed in.
const BATCHES: usize = 5;

/// Files per second in the median of [`BATCHES`] consecutive batches (each batch: its files
/// over the sum of their times): a burst of other load on the machine moves one batch, not
/// the figure.
fn median_rate(per_file: &[f64]) -> f64 {
    if per_file.is_empty() {
        return 0.0;
    }
    let size = per_file.len().div_ceil(BATCHES);
    let mut rates: Vec<f64> = per_file
        .chunks(size)
        .map(|c| rate(c.len() as f64, c.iter().sum()))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        round(n / secs)
    } else {
        0.0
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn times(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn ratio(t: &Measured, r: &Measured) -> Ratio {
    let (ts, rs) = (&t.small_files, &r.small_files);
    let large = |f: fn(&LargeFile) -> f64| match (&t.large_file, &r.large_file) {
        (Some(a), Some(b)) => Some(times(f(b), f(a))),
        _ => None,
    };
    Ratio {
        opens_per_s: times(rs.opens_per_s, ts.opens_per_s),
        creates_per_s: times(rs.creates_per_s, ts.creates_per_s),
        open_p50: times(ts.open_ms.p50, rs.open_ms.p50),
        read_p50: times(ts.read_ms.p50, rs.read_ms.p50),
        large_write: large(|l| l.write_mb_s),
        large_read: large(|l| l.read_mb_s),
    }
}

/// The mount `dir` is on, from this process's mountinfo (the longest mount point that holds
/// it; the last such line when mounts are stacked).
pub fn mount_of(dir: &Path) -> Option<Mount> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mut text = String::new();
    File::open("/proc/self/mountinfo")
        .ok()?
        .take(MOUNTINFO_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    best_mount(&text, &dir)
}

/// Pure part of [`mount_of`]: `mountinfo` as proc_pid_mountinfo(5) prints it.
pub fn best_mount(mountinfo: &str, dir: &Path) -> Option<Mount> {
    let mut best: Option<(usize, Mount)> = None;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let Some(mp) = fields.nth(4) else { continue };
        let mount_point = super::mountstats::unescape(mp);
        let mut rest = fields.skip_while(|f| *f != "-").skip(1);
        let (Some(fstype), Some(source)) = (rest.next(), rest.next()) else {
            continue;
        };
        let depth = Path::new(&mount_point).components().count();
        if dir.starts_with(&mount_point) && best.as_ref().map_or(true, |(d, _)| depth >= *d) {
            best = Some((
                depth,
                Mount {
                    fstype: fstype.to_string(),
                    source: super::mountstats::unescape(source),
                    mount_point,
                },
            ));
        }
    }
    best.map(|(_, m)| m)
}

impl CheckReport {
    /// The `--format table` view: one row per figure, PATH beside the reference.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let fs = |m: &Measured| {
            m.filesystem
                .as_ref()
                .map(|f| format!("{} {}", f.fstype, f.source))
                .unwrap_or_else(|| "unknown filesystem".into())
        };
        let t = &self.target;
        let _ = writeln!(s, "path       {} ({})", t.path, fs(t));
        if let Some(r) = &self.reference {
            let _ = writeln!(s, "reference  {} ({})", r.path, fs(r));
        }
        let _ = writeln!(
            s,
            "{} small files of {} bytes{}\n",
            t.small_files.count,
            t.small_files.bytes_each,
            t.large_file
                .as_ref()
                .map(|l| format!(", one large file of {} MiB", l.bytes >> 20))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "{:<24}{:>14}{:>14}{:>12}",
            "", "PATH", "REFERENCE", "PATH SLOWER"
        );
        let r = self.reference.as_ref();
        let ratio = self.ratio.as_ref();
        let mut row = |name: &str, a: f64, b: Option<f64>, x: Option<f64>| {
            let _ = writeln!(
                s,
                "{name:<24}{a:>14.3}{:>14}{:>12}",
                b.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                x.map(|v| format!("{v:.1}×")).unwrap_or_else(|| "-".into())
            );
        };
        let (ts, rs) = (&t.small_files, r.map(|r| &r.small_files));
        row(
            "small opens/s",
            ts.opens_per_s,
            rs.map(|r| r.opens_per_s),
            ratio.map(|x| x.opens_per_s),
        );
        row(
            "small creates/s",
            ts.creates_per_s,
            rs.map(|r| r.creates_per_s),
            ratio.map(|x| x.creates_per_s),
        );
        row(
            "open p50 ms",
            ts.open_ms.p50,
            rs.map(|r| r.open_ms.p50),
            ratio.map(|x| x.open_p50),
        );
        row(
            "open p99 ms",
            ts.open_ms.p99,
            rs.map(|r| r.open_ms.p99),
            None,
        );
        row(
            "read p50 ms",
            ts.read_ms.p50,
            rs.map(|r| r.read_ms.p50),
            ratio.map(|x| x.read_p50),
        );
        row(
            "read p99 ms",
            ts.read_ms.p99,
            rs.map(|r| r.read_ms.p99),
            None,
        );
        row(
            "create p50 ms",
            ts.create_ms.p50,
            rs.map(|r| r.create_ms.p50),
            None,
        );
        row(
            "create p99 ms",
            ts.create_ms.p99,
            rs.map(|r| r.create_ms.p99),
            None,
        );
        if let Some(l) = &t.large_file {
            let rl = r.and_then(|r| r.large_file.as_ref());
            row(
                "large write MB/s",
                l.write_mb_s,
                rl.map(|r| r.write_mb_s),
                ratio.and_then(|x| x.large_write),
            );
            row(
                "large read MB/s",
                l.read_mb_s,
                rl.map(|r| r.read_mb_s),
                ratio.and_then(|x| x.large_read),
            );
        }
        let per = ts.open_ms.p50 + ts.read_ms.p50;
        let _ = writeln!(
            s,
            "\neach small file costs {per:.3} ms to open and read here: 2 000 of them take {:.1} s",
            per * 2000.0 / 1000.0
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/l
35 22 0:30 / /dev/shm rw,nosuid,nodev shared:5 - tmpfs shm rw,size=65536k
41 22 0:35 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pv-1/mount rw,relatime shared:9 - nfs4 fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/ rw,vers=4.1
42 22 0:36 / /mnt/my\\040data rw - fuse.sshfs root@127.0.0.1:/srv rw
43 42 0:37 / /mnt/my\\040data rw - tmpfs none rw
bad line
";

    #[test]
    fn mount_is_the_longest_and_last_mount_point_holding_the_path() {
        let m = |p: &str| best_mount(MOUNTINFO, Path::new(p)).unwrap();
        assert_eq!(m("/dev/shm/x").fstype, "tmpfs");
        assert_eq!(m("/dev/shmx").fstype, "overlay");
        let efs = m("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pv-1/mount/db");
        assert_eq!(efs.fstype, "nfs4");
        assert_eq!(
            efs.source,
            "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/"
        );
        // Escaped space; the later (stacked) mount on the same point wins.
        let stacked = m("/mnt/my data/y");
        assert_eq!(
            (stacked.fstype.as_str(), stacked.mount_point.as_str()),
            ("tmpfs", "/mnt/my data")
        );
        assert_eq!(best_mount("", Path::new("/")), None);
    }

    #[test]
    fn options_out_of_range_are_all_named() {
        let o = Options {
            files: 0,
            file_bytes: 0,
            large_bytes: (MAX_LARGE_MIB + 1) << 20,
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(
            e.contains("--files 0")
                && e.contains("--file-size 0")
                && e.contains("--large-mib 4097"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn rates_are_the_median_batch() {
        // Ten files at 10 ms, one batch slowed by a 1 s stall: the figure stays 100/s.
        let mut each = vec![0.01; 10];
        each[3] = 1.0;
        assert_eq!(median_rate(&each), 100.0);
        assert_eq!(median_rate(&[0.5]), 2.0);
        assert_eq!(median_rate(&[]), 0.0);
    }

    proptest::proptest! {
        #[test]
        fn mountinfo_never_panics(s in "\\PC*") {
            let _ = best_mount(&s, Path::new("/a/b"));
        }
    }
}
