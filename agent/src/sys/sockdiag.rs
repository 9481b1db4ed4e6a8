//! TCP sockets of one network namespace from the kernel's `NETLINK_SOCK_DIAG` (inet_diag):
//! listening sockets with their accept queue (`idiag_rqueue`) and backlog limit
//! (`idiag_wqueue`), and connected sockets with their inode.
//!
//! A netlink socket answers for the namespace it was created in, so one is opened per namespace
//! from a short-lived thread that entered it with setns(2); the agent's own threads never change
//! namespace. Sockets are kept per namespace and dropped when its processes are gone.

use super::netlink::open_in;
use super::sock::{Diag, Sock, SockState, UnixDump};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::Socket;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::Path;

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

const TCP_LISTEN: u8 = 10;

fn dump_family(s: &Socket, family: u8, states: StateFlags, out: &mut Vec<Sock>) -> io::Result<()> {
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id: if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        },
    });
    super::netlink::dump(s, request, |batch| parse_batch(batch, out))
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
    use netlink_packet_core::NetlinkHeader;
    use std::os::unix::fs::MetadataExt;

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
        // setns needs CAP_SYS_ADMIN even into one's own namespace.
        headroom_testbed::require_or_return!(
            "own_namespace_shows_a_listener",
            &[headroom_testbed::Need::Root]
        );
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
}
