//! A sock_diag netlink socket inside a network namespace, and the request/response loop of one
//! dump, shared by the inet ([`super::sockdiag`]) and unix ([`super::unixsock`]) readers.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Opens a sock_diag socket inside the namespace `ns_path` refers to, from a thread of its own.
pub fn open_in(netns: u64, ns_path: &Path) -> io::Result<Socket> {
    let f = File::open(ns_path)?;
    // The pid may have been reused by a process elsewhere since the namespace was read.
    if f.metadata()?.ino() != netns {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the process moved or exited; namespace gone",
        ));
    }
    if own_netns() == Some(netns) {
        // This process's own namespace (a sidecar's pod): no setns, no CAP_SYS_ADMIN.
        return open_here();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) with a descriptor we hold open for the call; it changes only
                // this short-lived thread's network namespace, which ends with the thread.
                let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut s = Socket::new(NETLINK_SOCK_DIAG)?;
                s.bind_auto()?;
                s.connect(&NlAddr::new(0, 0))?;
                set_recv_timeout(&s)?;
                Ok(s)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sock_diag thread panicked")))
    })
}

/// The network namespace this thread is in (the real /proc, whatever the proc root).
fn own_netns() -> Option<u64> {
    let t = std::fs::read_link("/proc/thread-self/ns/net").ok()?;
    super::procfs::bracketed(&t.to_string_lossy(), "net")
}

fn open_here() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_SOCK_DIAG)?;
    s.bind_auto()?;
    s.connect(&NlAddr::new(0, 0))?;
    set_recv_timeout(&s)?;
    Ok(s)
}

fn set_recv_timeout(s: &Socket) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt(2) reads `size_of::<timeval>()` bytes from a live local value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one dump request and hands each `recv`'s worth of answer to `batch` until it says the
/// dump ended (true) or fails.
pub fn dump(
    s: &Socket,
    request: SockDiagMessage,
    mut batch: impl FnMut(&[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(hdr, request.into());
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf[..]);
    s.send(&buf, 0)?;
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = s.recv(&mut &mut rx[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag closed",
            ));
        }
        if batch(&rx[..n])? {
            return Ok(());
        }
    }
}
