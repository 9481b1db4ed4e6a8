//! `SIOCETHTOOL`: a driver's statistics, as `ethtool -S` prints them. `ETHTOOL_GSSET_INFO` for the
//! number of `ETH_SS_STATS` strings, `ETHTOOL_GSTRINGS` for their names, `ETHTOOL_GSTATS` for the
//! values (include/uapi/linux/ethtool.h). Synchronous and small.

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
}

/// `struct ifreq` with `ifr_data`, the only member SIOCETHTOOL uses.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Reads every `ETH_SS_STATS` counter of `iface` (what `ethtool -S IFACE` prints), in driver order.
pub fn read_stats(iface: &str) -> Result<Vec<(String, u64)>, EnaError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(EnaError::Name {
            iface: iface.into(),
        });
    }
    // SAFETY: socket(2) has no memory preconditions; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("socket", iface));
    }
    // SAFETY: fd is a fresh descriptor we own; OwnedFd closes it exactly once.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let ioctl = |op: &'static str, buf: &mut [u64]| -> Result<(), EnaError> {
        let mut ifr = IfreqData {
            name: [0; libc::IFNAMSIZ],
            data: buf.as_mut_ptr().cast(),
            _pad: [0; 16],
        };
        for (d, s) in ifr.name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: ifr is a valid ifreq whose data points at `buf`, which is u64-aligned and as
        // large as the command's struct plus the count of entries written into its header, so
        // the kernel writes only inside it; both live across the call.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => EnaError::Gone {
                    iface: iface.into(),
                },
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => EnaError::Unsupported {
                    iface: iface.into(),
                },
                _ => EnaError::Io {
                    op,
                    iface: iface.into(),
                    source: e,
                },
            });
        }
        Ok(())
    };

    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }
    let mut info = [0u64; 3];
    set_u32(&mut info, 0, ETHTOOL_GSSET_INFO);
    set_u32(&mut info, 1, 0);
    info[1] = 1u64 << ETH_SS_STATS;
    ioctl("ETHTOOL_GSSET_INFO", &mut info)?;
    if info[1] & (1u64 << ETH_SS_STATS) == 0 {
        return Err(EnaError::Unsupported {
            iface: iface.into(),
        });
    }
    let n = get_u32(&info, 4) as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = n.min(MAX_STATS);

    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }: 12-byte header.
    let mut strings = vec![0u64; (12 + n * ETH_GSTRING_LEN).div_ceil(8)];
    set_u32(&mut strings, 0, ETHTOOL_GSTRINGS);
    set_u32(&mut strings, 1, ETH_SS_STATS);
    set_u32(&mut strings, 2, n as u32);
    ioctl("ETHTOOL_GSTRINGS", &mut strings)?;
    let got = (get_u32(&strings, 2) as usize).min(n);
    let raw = as_bytes(&strings);
    let names: Vec<String> = (0..got)
        .map(|i| {
            let s = &raw[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect();

    // struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
    let mut stats = vec![0u64; 1 + got];
    set_u32(&mut stats, 0, ETHTOOL_GSTATS);
    set_u32(&mut stats, 1, got as u32);
    ioctl("ETHTOOL_GSTATS", &mut stats)?;
    let m = (get_u32(&stats, 1) as usize).min(got);
    Ok(names
        .into_iter()
        .zip(stats[1..=m].iter().copied())
        .collect())
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
