//! `SIOCETHTOOL`: a driver's statistics, as `ethtool -S` prints them. `ETHTOOL_GSSET_INFO` for the
//! number of `ETH_SS_STATS` strings, `ETHTOOL_GSTRINGS` for their names, `ETHTOOL_GSTATS` for the
//! values (include/uapi/linux/ethtool.h). Synchronous and small.
//!
//! The kernel (`ethtool_get_strings`, `ethtool_get_stats` in net/ethtool/ioctl.c) writes the
//! driver's count *at the time of each call*, not the count the buffer was sized for: the
//! buffers have slack ([`with_slack`]) and end at a PROT_NONE guard page ([`Guarded`]), so a
//! count that grows makes the ioctl fail with EFAULT rather than write past them, and a sample
//! whose count changed is discarded ([`EnaError::Resized`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// include/uapi/linux/ethtool.h
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// More statistics than any driver has; a bound on what a confused driver can make us allocate.
const MAX_STATS: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum EnaError {
    #[error("interface {iface} does not exist (any more)")]
    Gone { iface: String },
    #[error("interface {iface} has no driver statistics")]
    Unsupported { iface: String },
    #[error("{op} on {iface} failed: {source}")]
    Io {
        op: &'static str,
        iface: String,
        source: std::io::Error,
    },
    #[error("invalid interface name '{iface}'")]
    Name { iface: String },
    #[error("driver statistics of {iface} changed size between calls ({asked} asked, {} now); sample discarded", now.map_or("more than the buffer holds".to_string(), |n| n.to_string()))]
    Resized {
        iface: String,
        asked: usize,
        now: Option<usize>,
    },
}

/// `struct ifreq` with `ifr_data`, the only member SIOCETHTOOL uses.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// The `SIOCETHTOOL` call, behind a seam so a test can play a kernel whose statistics count
/// changes between the calls. `data` points at `len` bytes the caller owns, followed by an
/// inaccessible guard page ([`Guarded`]).
pub trait EthtoolIoctl {
    /// Runs the ethtool command whose struct is at `data` for interface `name` (NUL-padded).
    fn call(
        &mut self,
        name: &[u8; libc::IFNAMSIZ],
        data: *mut u64,
        len: usize,
    ) -> std::io::Result<()>;
}

/// The real kernel, through a datagram socket.
struct Kernel(OwnedFd);

impl EthtoolIoctl for Kernel {
    fn call(
        &mut self,
        name: &[u8; libc::IFNAMSIZ],
        data: *mut u64,
        _len: usize,
    ) -> std::io::Result<()> {
        let mut ifr = IfreqData {
            name: [0; libc::IFNAMSIZ],
            data: data.cast(),
            _pad: [0; 16],
        };
        for (d, s) in ifr.name.iter_mut().zip(name) {
            *d = *s as libc::c_char;
        }
        // SAFETY: ifr is a valid ifreq that lives across the call. Its data points at a
        // [`Guarded`] buffer. The kernel does NOT bound its writes by the count in the command
        // header (net/ethtool/ioctl.c writes the driver's *current* count), so the buffer has
        // slack for a count that grows between calls, and its end abuts a PROT_NONE page: a
        // count that grows past the slack makes copy_to_user fail with EFAULT at that page
        // instead of writing into memory we do not own.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A buffer of `u64` words that ends exactly where a PROT_NONE page begins, so nothing (the
/// kernel included) can write past its end.
pub struct Guarded {
    map: *mut libc::c_void,
    map_len: usize,
    data: *mut u64,
    words: usize,
}

impl Guarded {
    pub fn new(words: usize) -> std::io::Result<Guarded> {
        // SAFETY: sysconf has no memory preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = words.max(1) * 8;
        let data_len = bytes.div_ceil(page) * page;
        let map_len = data_len + page;
        // SAFETY: a fresh anonymous private mapping at an address the kernel chooses: no
        // existing memory is affected.
        let map = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }?;
        // SAFETY: the last page of the mapping just made, page-aligned, ours alone.
        if let Err(e) = unsafe {
            rustix::mm::mprotect(
                map.cast::<u8>().add(data_len).cast(),
                page,
                rustix::mm::MprotectFlags::empty(),
            )
        } {
            // SAFETY: unmapping the mapping made above, which nothing else refers to.
            let _ = unsafe { rustix::mm::munmap(map, map_len) };
            return Err(e.into());
        }
        // SAFETY: data_len - bytes is within the mapping and a multiple of 8 (page and bytes
        // are), so the pointer is u64-aligned and `words` words end at the guard page.
        let data = unsafe { map.cast::<u8>().add(data_len - bytes).cast::<u64>() };
        Ok(Guarded {
            map,
            map_len,
            data,
            words: bytes / 8,
        })
    }

    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        // SAFETY: `words` u64s at `data` lie in the read-write part of our mapping, zeroed by
        // mmap, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.words) }
    }

    pub fn len_bytes(&self) -> usize {
        self.words * 8
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`; no slice of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.map, self.map_len) };
    }
}

/// Room for a statistics count that grows between `GSSET_INFO` and the calls that fill the
/// buffers (a driver adding queues): n + n/4 + 16 entries.
pub fn with_slack(n: usize) -> usize {
    n + n / 4 + 16
}

/// Reads every `ETH_SS_STATS` counter of `iface` (what `ethtool -S IFACE` prints), in driver order.
pub fn read_stats(iface: &str) -> Result<Vec<(String, u64)>, EnaError> {
    let name = if_name(iface)?;
    // SAFETY: socket(2) has no memory preconditions; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("socket", iface));
    }
    // SAFETY: fd is a fresh descriptor we own; OwnedFd closes it exactly once.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    read_stats_with(iface, &name, &mut Kernel(sock))
}

fn if_name(iface: &str) -> Result<[u8; libc::IFNAMSIZ], EnaError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(EnaError::Name {
            iface: iface.into(),
        });
    }
    let mut name = [0u8; libc::IFNAMSIZ];
    name[..bytes.len()].copy_from_slice(bytes);
    Ok(name)
}

/// [`read_stats`] over any [`EthtoolIoctl`]. A count that differs between the calls (the
/// names would not line up with the values) or outgrows the slack is
/// [`EnaError::Resized`]: that sample is discarded.
pub fn read_stats_with(
    iface: &str,
    name: &[u8; libc::IFNAMSIZ],
    io: &mut dyn EthtoolIoctl,
) -> Result<Vec<(String, u64)>, EnaError> {
    let mut call = |op: &'static str, buf: &mut Guarded, asked: usize| -> Result<(), EnaError> {
        let len = buf.len_bytes();
        io.call(name, buf.as_mut_slice().as_mut_ptr(), len)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => EnaError::Gone {
                    iface: iface.into(),
                },
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => EnaError::Unsupported {
                    iface: iface.into(),
                },
                // The kernel wrote up to the guard page: the count outgrew the slack.
                Some(libc::EFAULT) => EnaError::Resized {
                    iface: iface.into(),
                    asked,
                    now: None,
                },
                _ => EnaError::Io {
                    op,
                    iface: iface.into(),
                    source: e,
                },
            })
    };
    let alloc = |words: usize| {
        Guarded::new(words).map_err(|source| EnaError::Io {
            op: "mmap",
            iface: iface.into(),
            source,
        })
    };

    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }: one
    // mask bit asked, so one u32 of data.
    let mut info = alloc(3)?;
    {
        let w = info.as_mut_slice();
        set_u32(w, 0, ETHTOOL_GSSET_INFO);
        set_u32(w, 1, 0);
        w[1] = 1u64 << ETH_SS_STATS;
    }
    call("ETHTOOL_GSSET_INFO", &mut info, 0)?;
    let w = info.as_mut_slice();
    if w[1] & (1u64 << ETH_SS_STATS) == 0 {
        return Err(EnaError::Unsupported {
            iface: iface.into(),
        });
    }
    let n = (get_u32(w, 4) as usize).min(MAX_STATS);
    if n == 0 {
        return Ok(Vec::new());
    }
    let cap = with_slack(n);
    let resized = |now: usize| EnaError::Resized {
        iface: iface.into(),
        asked: n,
        now: Some(now),
    };

    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }: 12-byte header.
    let mut strings = alloc((12 + cap * ETH_GSTRING_LEN).div_ceil(8))?;
    {
        let w = strings.as_mut_slice();
        set_u32(w, 0, ETHTOOL_GSTRINGS);
        set_u32(w, 1, ETH_SS_STATS);
        set_u32(w, 2, n as u32);
    }
    call("ETHTOOL_GSTRINGS", &mut strings, n)?;
    let got = get_u32(strings.as_mut_slice(), 2) as usize;
    if got != n {
        return Err(resized(got));
    }
    let names = parse_strings(&as_bytes(strings.as_mut_slice())[12..], n);

    // struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
    let mut stats = alloc(1 + cap)?;
    {
        let w = stats.as_mut_slice();
        set_u32(w, 0, ETHTOOL_GSTATS);
        set_u32(w, 1, n as u32);
    }
    call("ETHTOOL_GSTATS", &mut stats, n)?;
    let w = stats.as_mut_slice();
    let m = get_u32(w, 1) as usize;
    if m != n {
        return Err(resized(m));
    }
    Ok(names.into_iter().zip(w[1..=n].iter().copied()).collect())
}

/// Pure: the first `count` NUL-padded 32-byte names of an `ETH_SS_STATS` string table (fewer
/// when `raw` is shorter), lossily decoded.
pub fn parse_strings(raw: &[u8], count: usize) -> Vec<String> {
    raw.chunks_exact(ETH_GSTRING_LEN)
        .take(count)
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect()
}

fn io_err(op: &'static str, iface: &str) -> EnaError {
    EnaError::Io {
        op,
        iface: iface.into(),
        source: std::io::Error::last_os_error(),
    }
}

fn as_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same memory.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), std::mem::size_of_val(buf)) }
}

fn get_u32(buf: &[u64], i: usize) -> u32 {
    let b = as_bytes(buf);
    u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

fn set_u32(buf: &mut [u64], i: usize, v: u32) {
    let w = &mut buf[i / 2];
    let mut b = w.to_ne_bytes();
    b[(i % 2) * 4..(i % 2) * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    *w = u64::from_ne_bytes(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The kernel as net/ethtool/ioctl.c is: GSTRINGS and GSTATS write the driver's count at
    /// the time of the call, whatever the header asked for. Writes go through
    /// `process_vm_writev` into this process, which like the kernel's copy_to_user stops with
    /// EFAULT at a page that is not writable. `counts` is the driver's count at each call
    /// (GSSET_INFO, GSTRINGS, GSTATS).
    struct CurrentCountKernel {
        counts: [usize; 3],
        calls: usize,
        /// Bytes written past the `len` the caller owns: memory that was not the buffer's.
        past_end: usize,
    }

    impl CurrentCountKernel {
        fn new(counts: [usize; 3]) -> Self {
            CurrentCountKernel {
                counts,
                calls: 0,
                past_end: 0,
            }
        }

        /// copy_to_user: `bytes` at `dst`; EFAULT when not all could be written.
        fn copy_out(&mut self, dst: *mut u8, bytes: &[u8], owned: usize) -> std::io::Result<()> {
            let local = libc::iovec {
                iov_base: bytes.as_ptr() as *mut _,
                iov_len: bytes.len(),
            };
            let remote = libc::iovec {
                iov_base: dst.cast(),
                iov_len: bytes.len(),
            };
            // SAFETY: process_vm_writev checks every page of `remote` itself (EFAULT for a
            // page it cannot write) and reads only `bytes`.
            let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
            let n = if n < 0 { 0 } else { n as usize };
            self.past_end = self.past_end.max(n.saturating_sub(owned));
            if n < bytes.len() {
                return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
            }
            Ok(())
        }
    }

    impl EthtoolIoctl for CurrentCountKernel {
        fn call(
            &mut self,
            _name: &[u8; libc::IFNAMSIZ],
            data: *mut u64,
            len: usize,
        ) -> std::io::Result<()> {
            let count = self.counts[self.calls.min(2)];
            self.calls += 1;
            // SAFETY: the command word is the first u32 of the caller's buffer.
            let cmd = unsafe { data.cast::<u32>().read() };
            let mut out = Vec::new();
            match cmd {
                ETHTOOL_GSSET_INFO => {
                    out.extend(ETHTOOL_GSSET_INFO.to_ne_bytes());
                    out.extend(0u32.to_ne_bytes());
                    out.extend((1u64 << ETH_SS_STATS).to_ne_bytes());
                    out.extend((count as u32).to_ne_bytes());
                }
                ETHTOOL_GSTRINGS => {
                    out.extend(ETHTOOL_GSTRINGS.to_ne_bytes());
                    out.extend(ETH_SS_STATS.to_ne_bytes());
                    out.extend((count as u32).to_ne_bytes());
                    for i in 0..count {
                        let mut s = [0u8; ETH_GSTRING_LEN];
                        let t = format!("stat_{i}");
                        s[..t.len()].copy_from_slice(t.as_bytes());
                        out.extend(s);
                    }
                }
                ETHTOOL_GSTATS => {
                    out.extend(ETHTOOL_GSTATS.to_ne_bytes());
                    out.extend((count as u32).to_ne_bytes());
                    for i in 0..count {
                        out.extend((1000 + i as u64).to_ne_bytes());
                    }
                }
                _ => return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
            }
            self.copy_out(data.cast(), &out, len)
        }
    }

    fn run(counts: [usize; 3]) -> (Result<Vec<(String, u64)>, EnaError>, CurrentCountKernel) {
        let mut k = CurrentCountKernel::new(counts);
        let r = read_stats_with("eth0", &if_name("eth0").unwrap(), &mut k);
        (r, k)
    }

    #[test]
    fn a_steady_count_reads_every_statistic() {
        let (r, k) = run([40, 40, 40]);
        let s = r.unwrap();
        assert_eq!(s.len(), 40);
        assert_eq!(s[0], ("stat_0".to_string(), 1000));
        assert_eq!(s[39], ("stat_39".to_string(), 1039));
        assert_eq!(k.past_end, 0);
    }

    #[test]
    fn a_count_that_grows_between_the_calls_is_discarded_and_never_overflows() {
        for counts in [
            // Grows by less than the slack before GSTATS: fits, but names and values
            // would not line up.
            [40, 40, 45],
            // Before GSTRINGS.
            [40, 41, 41],
            // Far past the slack (a driver adding hundreds of queues): the guard page stops
            // the write, where a heap buffer of 41 words would have been overrun by 32 KiB.
            [40, 40, 4000],
            [40, 4000, 4000],
        ] {
            let (r, k) = run(counts);
            assert!(
                matches!(r, Err(EnaError::Resized { asked: 40, .. })),
                "{counts:?}: {r:?}"
            );
            assert_eq!(k.past_end, 0, "{counts:?}: wrote past the buffer");
        }
        // A shrinking count is discarded too (the names would not line up).
        let (r, _) = run([40, 40, 30]);
        assert!(
            matches!(r, Err(EnaError::Resized { now: Some(30), .. })),
            "{r:?}"
        );
    }

    #[test]
    fn the_guard_page_ends_the_buffer() {
        let mut g = Guarded::new(5).unwrap();
        assert_eq!(g.as_mut_slice().len(), 5);
        g.as_mut_slice()[4] = 7;
        let mut k = CurrentCountKernel::new([0; 3]);
        let end = g.as_mut_slice().as_mut_ptr().wrapping_add(5).cast::<u8>();
        assert!(
            k.copy_out(end, &[1], 0).is_err(),
            "the byte after the buffer is writable"
        );
    }

    proptest! {
        /// Whatever a driver puts in its string table: no panic, at most `count` names, none
        /// longer than 32 bytes of input or holding a NUL.
        #[test]
        fn parses_arbitrary_string_tables(
            raw in proptest::collection::vec(any::<u8>(), 0..2048),
            count in 0usize..100,
        ) {
            let names = parse_strings(&raw, count);
            prop_assert!(names.len() <= count);
            prop_assert_eq!(names.len(), count.min(raw.len() / ETH_GSTRING_LEN));
            for n in &names {
                prop_assert!(!n.contains('\0'));
                prop_assert!(n.chars().count() <= ETH_GSTRING_LEN);
            }
        }
    }
}
