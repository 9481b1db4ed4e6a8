//! The socket figures the listener source reads, whichever reader gives them (sock_diag in
//! [`super::sockdiag`] and [`super::unixsock`], or the `/proc/<pid>/net` tables in
//! [`super::procnet`]), and the [`Diag`] seam between those readers and the source.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// Most rows read from one table: a pod can open sockets in its own namespace at will; past
/// this the rest of the table is not read (and a debug line says so).
pub const MAX_ROWS: usize = 100_000;

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

/// A unix stream (or seqpacket) socket that has a name: a listener, or a connection accepted
/// on one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSock {
    pub listen: bool,
    pub inode: u64,
    pub name: Box<[u8]>,
    /// LISTEN: connections waiting in the accept queue.
    pub rqueue: u32,
    /// LISTEN: the backlog limit; 0 where unknown (the `/proc` reader).
    pub wqueue: u32,
}

/// One dump of a namespace's unix sockets, and what it could not read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnixDump {
    pub socks: Vec<UnixSock>,
    /// Messages or rows skipped as unreadable (a name the decoder refused, a malformed row).
    pub skipped: u64,
}

/// How a path is shown in the report: as is when it is printable UTF-8, else with every byte
/// outside printable ASCII escaped (`\n`, `\xff`), so a hostile name cannot forge lines or
/// labels.
pub fn display_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => name.escape_ascii().to_string(),
    }
}
