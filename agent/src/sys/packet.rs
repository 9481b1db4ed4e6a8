//! AF_PACKET TPACKET_V3 ring with a classic BPF filter: the kernel selects and truncates the
//! packets, user space reads whole blocks of them without a system call per packet.
//!
//! This is the one place that talks to the kernel's packet socket; it is small, synchronous,
//! and every `unsafe` block says why it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Packets seen by the kernel filter since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Packets the filter accepted, including dropped ones.
    pub matched: u64,
    /// Packets the filter accepted that did not fit in the ring.
    pub dropped: u64,
}

/// Capture errors, each naming the interface and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open a packet socket on {iface}: permission denied; run as root or grant CAP_NET_RAW (capabilities: add NET_RAW), or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON for the eBPF tap (kernel 6.6 or later)")]
    Permission { iface: String },
    #[error("interface {iface} does not exist (any more)")]
    Gone { iface: String },
    #[error("{op} on {iface} failed: {source}")]
    Io {
        op: &'static str,
        iface: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cannot attach the eBPF tap on {iface}: {reason}; grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (capabilities: add BPF, NET_ADMIN, PERFMON), or use --tap af_packet")]
    EbpfPermission { iface: String, reason: String },
    #[error("cannot use the eBPF tap on {iface}: {reason}; use --tap af_packet (or auto)")]
    Ebpf { iface: String, reason: String },
}

/// What a tap hands over, one item at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// A packet the kernel filter matched, from its IP header on: counted by the agent when the
    /// node sent it, decoded when it is DNS (the AF_PACKET tap).
    Packet {
        /// Kernel timestamp, ns since the Unix epoch.
        ts: u64,
        /// Whether the node sent it.
        outgoing: bool,
        data: &'a [u8],
    },
    /// A DNS packet (query sent, reply received) the kernel has already counted: to decode
    /// only (the eBPF tap).
    Decode {
        ts: u64,
        outgoing: bool,
        data: &'a [u8],
    },
    /// `n` packets to targets of `class` counted in the kernel in the 10 ms step that starts
    /// at `ts` (the eBPF tap).
    Counted { ts: u64, class: u8, n: u32 },
}

/// Which kind of tap runs on an interface (the report's `tap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TapKind {
    /// An AF_PACKET ring fed a clone of every packet, with a classic BPF filter.
    AfPacket,
    /// tcx programs that count in-line and copy only DNS packets to user space.
    Ebpf,
}

impl TapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TapKind::AfPacket => "af_packet",
            TapKind::Ebpf => "ebpf",
        }
    }
}

/// What one interface sends to the targets, and the DNS packets among them: the AF_PACKET ring
/// ([`AfPacketTap`]) or the tcx programs that count in the kernel (`super::ebpf::EbpfTap`).
pub trait PacketTap: Send {
    /// Waits up to `timeout` for what the kernel has; hands each item to `sink`. Returns how
    /// many batches (ring blocks, or ring-buffer drains) were read.
    fn next_batch(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(Delivery<'_>),
    ) -> Result<usize, TapError>;
    /// Counters since the previous call.
    fn take_stats(&mut self) -> Result<TapStats, TapError>;
    fn kind(&self) -> TapKind;
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Why a program could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error(
        "too many link-local target addresses for one filter ({0} instructions; at most 4096)"
    )]
    TooLong(usize),
    #[error("too many link-local target addresses: a jump in the filter exceeds 255 instructions")]
    JumpTooFar,
}

/// Ring geometry. The defaults hold about 20 000 truncated packets: at 100 000 packets/s and
/// the 100 ms block timeout that is twice what can pile up between two reads.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub block_size: u32,
    pub block_count: u32,
    /// Milliseconds after which the kernel hands over a partly filled block.
    pub block_timeout_ms: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 18,
            block_count: 16,
            block_timeout_ms: 100,
        }
    }
}

const FRAME_SIZE: u32 = 2048;
/// Where the sockaddr_ll sits after each tpacket3_hdr: the header size rounded up to
/// TPACKET_ALIGNMENT (16).
const SLL_OFFSET: usize = (std::mem::size_of::<libc::tpacket3_hdr>() + 15) & !15;

/// A packet socket bound to one interface, with its mapped receive ring.
pub struct AfPacketTap {
    name: String,
    ifindex: i32,
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    block_count: usize,
    next: usize,
    /// The kernel reported ENETDOWN and the interface was still there: `ip link del` takes it
    /// down first (the only error report the socket gets) and unregisters it a moment later,
    /// so while down every idle poll looks again whether it is gone for good.
    down: bool,
}

// SAFETY: the ring mapping is owned by this value alone and only touched through `&mut self`.
unsafe impl Send for AfPacketTap {}

fn os_err(op: &'static str, iface: &str) -> TapError {
    let source = io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission {
            iface: iface.to_string(),
        },
        Some(libc::ENODEV) | Some(libc::ENXIO) => TapError::Gone {
            iface: iface.to_string(),
        },
        _ => TapError::Io {
            op,
            iface: iface.to_string(),
            source,
        },
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The interface's index, or `None` when it does not exist (now).
pub fn ifindex(name: &str) -> Option<i32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx as i32)
}

impl AfPacketTap {
    /// Opens a ring on `name` that receives what `program` accepts.
    pub fn open(name: &str, program: &[Insn], ring: RingConfig) -> Result<Self, TapError> {
        let ifindex = ifindex(name).ok_or_else(|| TapError::Gone {
            iface: name.to_string(),
        })?;
        // Protocol 0: the socket receives nothing until `bind` below, after the filter is in
        // place, so no unfiltered packet is ever queued.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET)", name));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let version: libc::c_int = 2; // TPACKET_V3
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|_| os_err("setsockopt(PACKET_VERSION)", name))?;

        let filter: Vec<libc::sock_filter> = program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
            .map_err(|_| os_err("setsockopt(SO_ATTACH_FILTER)", name))?;

        let req = libc::tpacket_req3 {
            tp_block_size: ring.block_size,
            tp_block_nr: ring.block_count,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: ring.block_size / FRAME_SIZE * ring.block_count,
            tp_retire_blk_tov: ring.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|_| os_err("setsockopt(PACKET_RX_RING)", name))?;

        let ring_len = ring.block_size as usize * ring.block_count as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket; length and flags are
        // what packet_mmap(7) requires. The result is checked against MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(os_err("mmap(PACKET_RX_RING)", name));
        }
        let tap = AfPacketTap {
            name: name.to_string(),
            ifindex,
            fd,
            ring: map as *mut u8,
            ring_len,
            block_size: ring.block_size as usize,
            block_count: ring.block_count as usize,
            next: 0,
            down: false,
        };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                tap.fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("bind(AF_PACKET)", name));
        }
        Ok(tap)
    }

    /// The status word of block `i`, read with acquire ordering because the kernel writes it.
    fn block_status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block `i` lies inside the mapping (i < block_count) and every block starts
        // with a `tpacket_block_desc` whose `hdr.bh1.block_status` is an aligned u32 at offset 8.
        unsafe { AtomicU32::from_ptr(self.ring.add(i * self.block_size + 8) as *mut u32) }
    }

    /// Hands every packet of the ready block `i` to `sink`, then returns the block to the kernel.
    fn drain_block(&mut self, i: usize, sink: &mut dyn FnMut(Delivery<'_>)) {
        let base = i * self.block_size;
        // SAFETY: the block is owned by user space while TP_STATUS_USER is set (checked by the
        // caller); its descriptor and the packet headers it chains are inside the block, whose
        // bounds we also check before each read.
        unsafe {
            let desc = &*(self.ring.add(base) as *const libc::tpacket_block_desc);
            let bh = &desc.hdr.bh1;
            let mut off = bh.offset_to_first_pkt as usize;
            for _ in 0..bh.num_pkts {
                if off + std::mem::size_of::<libc::tpacket3_hdr>() > self.block_size {
                    break;
                }
                let hdr = &*(self.ring.add(base + off) as *const libc::tpacket3_hdr);
                let start = off + hdr.tp_net as usize;
                let len = hdr.tp_snaplen as usize;
                // The sockaddr_ll follows the aligned header; its sll_pkttype is at offset 10.
                let pkttype_at = off + SLL_OFFSET + 10;
                if start + len <= self.block_size && pkttype_at < self.block_size {
                    let data = std::slice::from_raw_parts(self.ring.add(base + start), len);
                    let ts = hdr.tp_sec as u64 * 1_000_000_000 + hdr.tp_nsec as u64;
                    let outgoing = *self.ring.add(base + pkttype_at) == libc::PACKET_OUTGOING;
                    sink(Delivery::Packet { ts, outgoing, data });
                }
                if hdr.tp_next_offset == 0 {
                    break;
                }
                off += hdr.tp_next_offset as usize;
            }
        }
        self.block_status(i)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }

    /// Reads SO_ERROR after POLLERR and says whether the interface is gone for good.
    fn check_error(&mut self) -> Result<(), TapError> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` are valid for writes of the sizes given.
        unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            );
        }
        self.check_present()?;
        // ENETDOWN on a down interface: the kernel re-attaches the socket when it comes back up.
        self.down = true;
        Ok(())
    }

    fn check_present(&self) -> Result<(), TapError> {
        if ifindex(&self.name) != Some(self.ifindex) {
            return Err(TapError::Gone {
                iface: self.name.clone(),
            });
        }
        Ok(())
    }
}

impl PacketTap for AfPacketTap {
    fn next_batch(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(Delivery<'_>),
    ) -> Result<usize, TapError> {
        let mut blocks = 0;
        while blocks < self.block_count
            && self.block_status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
        {
            self.drain_block(self.next, sink);
            self.next = (self.next + 1) % self.block_count;
            blocks += 1;
        }
        if blocks > 0 {
            self.down = false;
            return Ok(blocks);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(TapError::Io {
                op: "poll",
                iface: self.name.clone(),
                source: e,
            });
        }
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            self.check_error()?;
        } else if self.down && rc == 0 {
            self.check_present()?;
        }
        Ok(0)
    }

    fn take_stats(&mut self) -> Result<TapStats, TapError> {
        // SAFETY: tpacket_stats_v3 is plain old data; all-zero is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given. The kernel resets its
        // counters on each read, so these are deltas.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut libc::tpacket_stats_v3 as *mut libc::c_void,
                &mut len,
            )
        };
        if rc != 0 {
            return Err(os_err("getsockopt(PACKET_STATISTICS)", &self.name));
        }
        Ok(TapStats {
            matched: st.tp_packets as u64,
            dropped: st.tp_drops as u64,
        })
    }

    fn kind(&self) -> TapKind {
        TapKind::AfPacket
    }
}

impl Drop for AfPacketTap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `open`; nothing borrows it any more.
        unsafe {
            libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
        }
    }
}
