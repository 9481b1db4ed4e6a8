//! TCP sockets of one network namespace from the kernel's `NETLINK_SOCK_DIAG` (inet_diag):
//! listening sockets with their accept queue (`idiag_rqueue`) and backlog limit
//! (`idiag_wqueue`), and connected sockets with their inode.
//!
//! A netlink socket answers for the namespace it was created in, so one is opened per namespace
//! from a short-lived thread that entered it with setns(2); the agent's own threads never change
//! namespace. Sockets are kept per namespace and dropped when its processes are gone.

use super::unixsock::UnixDump;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What the worker source needs to know about a TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockState {
    Listen,
    /// ESTABLISHED, or CLOSE_WAIT (the peer gave up, e.g. a probe that timed out, while the
    /// worker still holds the connection and works on it).
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sock {
    pub state: SockState,
    pub local: SocketAddr,
    /// 0 for a connection still in a listener's accept queue (no process holds it yet).
    pub inode: u64,
    /// LISTEN: connections waiting in the accept queue.
    pub rqueue: u32,
    /// LISTEN: the backlog limit.
    pub wqueue: u32,
}

/// A source of socket dumps, one network namespace at a time (a seam for tests).
pub trait Diag: Send {
    /// Listening TCP sockets of the namespace `netns` (its inode); `ns_path` is a file that
    /// refers to it, such as `/proc/PID/ns/net` of a process inside. The kernel walks only its
    /// small listening hash.
    fn listeners(&mut self, netns: u64, ns_path: &Path) -> io::Result<Vec<Sock>>;
    /// Connected TCP sockets (ESTABLISHED, CLOSE_WAIT) of the families asked for. Each family's
    /// dump walks the whole established hash (it is global, so every namespace's dump walks
    /// all of it): the main cost of a sample, skipped when nothing can have changed.
    fn connected(
        &mut self,
        netns: u64,
        ns_path: &Path,
        v4: bool,
        v6: bool,
    ) -> io::Result<Vec<Sock>>;
    /// Forgets namespaces not in `live`.
    fn retain(&mut self, live: &HashSet<u64>);
    /// The backlog limit of listener `inode`, held by `holder`, for a source whose listener
    /// dumps leave it 0 (see [`super::procnet`]); sock_diag has it in every dump.
    fn backlog(&mut self, _netns: u64, _inode: u64, _holder: i32) -> Option<u32> {
        None
    }
    /// Named unix stream sockets of the namespace: listeners with their accept queue, and
    /// connections accepted on them (see [`super::unixsock`]). A source without them has none.
    fn unix(&mut self, _netns: u64, _ns_path: &Path) -> io::Result<UnixDump> {
        Ok(UnixDump::default())
    }
}

/// The real thing: one netlink socket per namespace.
#[derive(Default)]
pub struct NetlinkDiag {
    sockets: HashMap<u64, Socket>,
}

impl NetlinkDiag {
    /// Runs `f` on the namespace's socket (opened on first use); a socket in a bad state (an
    /// interrupted dump) is reopened next time.
    fn with_socket(
        &mut self,
        netns: u64,
        ns_path: &Path,
        f: impl FnOnce(&Socket, &mut Vec<Sock>) -> io::Result<()>,
    ) -> io::Result<Vec<Sock>> {
        let s = match self.sockets.entry(netns) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(open_in(netns, ns_path)?),
        };
        let mut out = Vec::new();
        let r = f(s, &mut out);
        if r.is_err() {
            self.sockets.remove(&netns);
        }
        r.map(|_| out)
    }
}

impl Diag for NetlinkDiag {
    fn listeners(&mut self, netns: u64, ns_path: &Path) -> io::Result<Vec<Sock>> {
        self.with_socket(netns, ns_path, |s, out| {
            dump_family(s, AF_INET, StateFlags::LISTEN, out)?;
            dump_family(s, AF_INET6, StateFlags::LISTEN, out)
        })
    }

    fn connected(
        &mut self,
        netns: u64,
        ns_path: &Path,
        v4: bool,
        v6: bool,
    ) -> io::Result<Vec<Sock>> {
        let states = StateFlags::ESTABLISHED | StateFlags::CLOSE_WAIT;
        self.with_socket(netns, ns_path, |s, out| {
            if v4 {
                dump_family(s, AF_INET, states.clone(), out)?;
            }
            if v6 {
                dump_family(s, AF_INET6, states, out)?;
            }
            Ok(())
        })
    }

    fn retain(&mut self, live: &HashSet<u64>) {
        self.sockets.retain(|ns, _| live.contains(ns));
    }

    fn unix(&mut self, netns: u64, ns_path: &Path) -> io::Result<UnixDump> {
        let mut d = UnixDump::default();
        self.with_socket(netns, ns_path, |s, _| super::unixsock::dump(s, &mut d))?;
        Ok(d)
    }
}

/// The socket source a sampler uses: sock_diag from inside each namespace when this process
/// may `setns(2)` (CAP_SYS_ADMIN), else the `/proc/<pid>/net` tables (no namespace entered).
pub enum Sockets {
    SockDiag(NetlinkDiag),
    ProcNet(super::procnet::ProcNetDiag),
}

impl Sockets {
    /// sock_diag with CAP_SYS_ADMIN (cheaper: the kernel walks only the listening hash for
    /// listeners), else `/proc/<pid>/net` under `proc_root`.
    pub fn for_this_process(proc_root: &Path) -> Sockets {
        if super::procfs::has_capability(21) {
            Sockets::SockDiag(NetlinkDiag::default())
        } else {
            tracing::info!(message = "No CAP_SYS_ADMIN: reading pods' sockets from /proc/<pid>/net instead of sock_diag.");
            Sockets::ProcNet(super::procnet::ProcNetDiag::new(proc_root))
        }
    }

    fn diag(&mut self) -> &mut dyn Diag {
        match self {
            Sockets::SockDiag(d) => d,
            Sockets::ProcNet(d) => d,
        }
    }
}

impl Diag for Sockets {
    fn listeners(&mut self, netns: u64, ns_path: &Path) -> io::Result<Vec<Sock>> {
        self.diag().listeners(netns, ns_path)
    }

    fn connected(
        &mut self,
        netns: u64,
        ns_path: &Path,
        v4: bool,
        v6: bool,
    ) -> io::Result<Vec<Sock>> {
        self.diag().connected(netns, ns_path, v4, v6)
    }

    fn retain(&mut self, live: &HashSet<u64>) {
        self.diag().retain(live)
    }

    fn backlog(&mut self, netns: u64, inode: u64, holder: i32) -> Option<u32> {
        self.diag().backlog(netns, inode, holder)
    }

    fn unix(&mut self, netns: u64, ns_path: &Path) -> io::Result<UnixDump> {
        self.diag().unix(netns, ns_path)
    }
}

/// Opens a sock_diag socket inside the namespace `ns_path` refers to, from a thread of its own.
fn open_in(netns: u64, ns_path: &Path) -> io::Result<Socket> {
    let f = File::open(ns_path)?;
    // The pid may have been reused by a process elsewhere since the namespace was read.
    if f.metadata()?.ino() != netns {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the process moved or exited; namespace gone",
        ));
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

const TCP_LISTEN: u8 = 10;

fn dump_family(s: &Socket, family: u8, states: StateFlags, out: &mut Vec<Sock>) -> io::Result<()> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(
        hdr,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
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
        if parse_batch(&rx[..n], out)? {
            return Ok(());
        }
    }
}

/// One `recv`'s worth of sock_diag messages into `out`; true at the dump's end (NLMSG_DONE).
/// Whatever the bytes, it returns: a message it cannot read is an error, a zero or oversized
/// length ends the batch.
fn parse_batch(buf: &[u8], out: &mut Vec<Sock>) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[off..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                let h = &r.header;
                out.push(Sock {
                    state: if h.state == TCP_LISTEN {
                        SockState::Listen
                    } else {
                        SockState::Connected
                    },
                    local: SocketAddr::new(h.socket_id.source_address, h.socket_id.source_port),
                    inode: h.inode as u64,
                    rqueue: h.recv_queue,
                    wqueue: h.send_queue,
                });
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => return Err(e.to_io()),
            _ => {}
        }
        if len == 0 {
            break;
        }
        off = off.saturating_add(len);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Arbitrary bytes as a sock_diag batch: no panic, no endless loop, and never more
        /// sockets than 72-byte messages fit in it (an inet_diag_msg is 72 bytes with its header).
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let mut out = Vec::new();
            let _ = parse_batch(&b, &mut out);
            proptest::prop_assert!(out.len() <= b.len() / 72);
        }

        /// A real response (one listener) with random trailing bytes still yields the listener.
        #[test]
        fn a_real_message_then_garbage(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let mut b = listener_message();
            b.extend(tail);
            let mut out = Vec::new();
            let _ = parse_batch(&b, &mut out);
            proptest::prop_assert_eq!(out.first().map(|s| (s.local.port(), s.inode, s.rqueue)), Some((8080, 4242, 3)));
        }
    }

    /// An inet_diag response for a TCP listener on 0.0.0.0:8080, inode 4242, 3 queued, as the
    /// kernel sends it (built with the same crate's serializer).
    fn listener_message() -> Vec<u8> {
        use netlink_packet_sock_diag::inet::{InetResponse, InetResponseHeader};
        let mut id = SocketId::new_v4();
        id.source_port = 8080;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = netlink_packet_core::NLM_F_MULTIPART;
        let mut msg = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetResponse(Box::new(InetResponse {
                header: InetResponseHeader {
                    family: AF_INET,
                    state: TCP_LISTEN,
                    timer: None,
                    socket_id: id,
                    recv_queue: 3,
                    send_queue: 16,
                    uid: 0,
                    inode: 4242,
                },
                nlas: Default::default(),
            }))
            .into(),
        );
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf[..]);
        buf
    }

    #[test]
    fn own_namespace_shows_a_listener_with_queue_and_backlog() {
        if !headroom_testbed_free_root() {
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Two connections complete the handshake and wait: nobody accepts.
        let _c1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _c2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let ino = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let mut d = NetlinkDiag::default();
        let path = Path::new("/proc/self/ns/net");
        let mut socks = d.listeners(ino, path).unwrap();
        assert!(socks.iter().all(|s| s.state == SockState::Listen));
        socks.extend(d.connected(ino, path, true, false).unwrap());
        let me = socks
            .iter()
            .find(|s| s.state == SockState::Listen && s.local.port() == port)
            .expect("our listener");
        assert_eq!(me.rqueue, 2);
        // std's TcpListener asks for a backlog of 128 (capped by net.core.somaxconn).
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(me.wqueue, 128.min(somaxconn));
        let queued = socks
            .iter()
            .filter(|s| s.state == SockState::Connected && s.local.port() == port)
            .collect::<Vec<_>>();
        assert_eq!(queued.len(), 2);
        assert!(
            queued.iter().all(|s| s.inode == 0),
            "not accepted: no inode"
        );
    }

    /// setns needs CAP_SYS_ADMIN even into one's own namespace.
    fn headroom_testbed_free_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP own_namespace_shows_a_listener: needs root (setns)");
            return false;
        }
        true
    }
}
