//! Unix-domain stream sockets of one network namespace (nginx → unicorn or php-fpm over a socket
//! on a shared emptyDir): listeners with their accept queue, and accepted connections, which
//! carry their listener's name (the kernel copies the listener's address to the socket it
//! creates for each connection), so a worker holding one is busy on that listener.
//!
//! Two readers, as for TCP:
//! - sock_diag (`unix_diag`, with CAP_SYS_ADMIN to enter the namespace): `UDIAG_SHOW_NAME` and
//!   `UDIAG_SHOW_RQLEN`, which for a listener gives the accept queue and the backlog limit;
//! - `/proc/<pid>/net/unix` (any reader, no namespace entered): names, inodes and states but
//!   neither queue nor limit. The queue is counted instead: a connection waiting in a
//!   listener's queue is a socket with the listener's name, no inode yet (nobody accepted it)
//!   and state `SS_CONNECTING` (02). The backlog limit has no unprivileged reader for a unix
//!   socket (no TCP_INFO): it is 0, unknown, on this path.
//!
//! Names are bytes as `/proc/net/unix` prints them: a path as is, an abstract name as `@`
//! followed by its bytes with NULs as `@`; both readers give the same bytes for one socket.

use super::sock::{UnixDump, UnixSock, MAX_ROWS};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    constants::{SOCK_SEQPACKET, SOCK_STREAM, TCP_ESTABLISHED, TCP_LISTEN},
    unix::{
        nlas::{Nla, UnixDiagName},
        ShowFlags, StateFlags, UnixRequest,
    },
    SockDiagMessage,
};
use netlink_sys::Socket;
use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::Path;

fn name_bytes(n: &UnixDiagName) -> Box<[u8]> {
    use std::os::unix::ffi::OsStrExt;
    match n {
        UnixDiagName::Pathname(p) => p.as_bytes().into(),
        UnixDiagName::Abstract(a) => std::iter::once(b'@')
            .chain(a.iter().map(|&b| if b == 0 { b'@' } else { b }))
            .collect(),
    }
}

/// Listening and connected unix stream sockets through a sock_diag socket opened in the
/// namespace.
pub fn dump(s: &Socket, out: &mut UnixDump) -> io::Result<()> {
    let request = SockDiagMessage::UnixRequest(UnixRequest {
        state_flags: StateFlags::LISTEN | StateFlags::ESTABLISHED,
        inode: 0,
        show_flags: ShowFlags::NAME | ShowFlags::RQLEN,
        cookie: [0xff; 8],
    });
    let mut rows = 0usize;
    super::netlink::dump(s, request, |batch| parse_batch(batch, out, &mut rows))
}

/// One `recv`'s worth of unix_diag messages; true at the dump's end. A message the decoder
/// refuses is skipped by its header's length and counted; past [`MAX_ROWS`] messages are read
/// but not kept.
fn parse_batch(buf: &[u8], out: &mut UnixDump, rows: &mut usize) -> io::Result<bool> {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        match NetlinkMessage::<SockDiagMessage>::deserialize(&buf[off..off + len]) {
            Ok(msg) => match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => {
                    *rows += 1;
                    let h = &r.header;
                    let stream = h.kind == SOCK_STREAM || h.kind == SOCK_SEQPACKET;
                    let name = r.name().map(name_bytes);
                    if let (true, Some(name), true) = (stream, name, *rows <= MAX_ROWS) {
                        let listen = h.state == TCP_LISTEN;
                        if listen || (h.state == TCP_ESTABLISHED && h.inode != 0) {
                            let (rq, wq) = r
                                .nlas
                                .iter()
                                .find_map(|n| match n {
                                    Nla::ReceiveQueueLength(a, b) => Some((*a, *b)),
                                    _ => None,
                                })
                                .unwrap_or((0, 0));
                            out.socks.push(UnixSock {
                                listen,
                                inode: h.inode as u64,
                                name,
                                rqueue: if listen { rq } else { 0 },
                                wqueue: if listen { wq } else { 0 },
                            });
                        }
                    }
                }
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                _ => {}
            },
            Err(_) => out.skipped += 1,
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

const SO_ACCEPTCON: u32 = 1 << 16;
const SS_CONNECTING: u8 = 2;
const SS_CONNECTED: u8 = 3;

/// One row of `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode [Path]`, the path
/// the rest of the line after one space (it may hold spaces). None for the header and for
/// rows that do not parse. Returns (flags, type, state, inode, name).
pub fn parse_row(line: &[u8]) -> Option<(u32, u16, u8, u64, &[u8])> {
    let mut fields: [&[u8]; 7] = [&[]; 7];
    let mut rest = line;
    for f in &mut fields {
        let start = rest.iter().position(|b| *b != b' ')?;
        rest = &rest[start..];
        let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    if !fields[0].ends_with(b":") {
        return None;
    }
    let flags = hex(fields[3])?;
    let kind = u16::try_from(hex(fields[4])?).ok()?;
    let state = u8::try_from(hex(fields[5])?).ok()?;
    let inode = std::str::from_utf8(fields[6]).ok()?.parse().ok()?;
    let name = rest.strip_prefix(b" ").unwrap_or(rest);
    Some((flags, kind, state, inode, name))
}

/// Unix stream sockets from a `/proc/<pid>/net/unix` table: listeners (their queue counted
/// from the connections waiting in it, backlog 0: unknown) and accepted connections. The
/// kernel writes a path's bytes as they are, newlines included: a line that is no row
/// continues the previous row's path (a pod names its sockets as it likes).
pub fn read_table(r: impl BufRead) -> io::Result<UnixDump> {
    let mut out = UnixDump::default();
    let mut waiting: HashMap<Box<[u8]>, u32> = HashMap::new();
    let mut row: Option<(u32, u16, u8, u64, Vec<u8>)> = None;
    let mut take = |row: Option<(u32, u16, u8, u64, Vec<u8>)>, out: &mut UnixDump| {
        let Some((flags, kind, state, inode, name)) = row else {
            return;
        };
        let stream = kind == SOCK_STREAM as u16 || kind == SOCK_SEQPACKET as u16;
        if !stream || name.is_empty() {
            return;
        }
        if flags & SO_ACCEPTCON != 0 && inode != 0 {
            out.socks.push(UnixSock {
                listen: true,
                inode,
                name: name.into(),
                rqueue: 0,
                wqueue: 0,
            });
        } else if state == SS_CONNECTED && inode != 0 {
            out.socks.push(UnixSock {
                listen: false,
                inode,
                name: name.into(),
                rqueue: 0,
                wqueue: 0,
            });
        } else if state == SS_CONNECTING && inode == 0 {
            // Bounded by the listeners' names only when counted: a name nobody listens on
            // still costs one entry, and there are at most MAX_ROWS rows.
            *waiting.entry(name.into()).or_default() += 1;
        }
    };
    for (n, line) in r.split(b'\n').skip(1).enumerate() {
        if n >= MAX_ROWS {
            tracing::debug!(message = "Unix socket table cut short.", rows = MAX_ROWS);
            break;
        }
        let line = line?;
        match (parse_row(&line), &mut row) {
            (Some((flags, kind, state, inode, name)), _) => {
                take(row.take(), &mut out);
                row = Some((flags, kind, state, inode, name.to_vec()));
            }
            // A path with a newline in it; bounded like a path (sun_path is 108 bytes).
            (None, Some(r)) if r.4.len() + 1 + line.len() <= MAX_PATH => {
                r.4.push(b'\n');
                r.4.extend_from_slice(&line);
            }
            (None, _) => out.skipped += 1,
        }
    }
    take(row.take(), &mut out);
    for s in out.socks.iter_mut().filter(|s| s.listen) {
        s.rqueue = waiting.get(&s.name).copied().unwrap_or(0);
    }
    Ok(out)
}

/// Longest socket path (`sun_path`): what a continued row may grow to.
const MAX_PATH: usize = 108;

/// [`read_table`] of `<proc>/<pid>/net/unix` for `net_dir` = `<proc>/<pid>/net`.
pub fn read_proc(net_dir: &Path) -> io::Result<UnixDump> {
    let f = std::fs::File::open(net_dir.join("unix"))?;
    read_table(io::BufReader::new(f))
}

#[cfg(test)]
mod tests {
    use super::super::sock::display_name;
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn rows_parse_as_the_kernel_writes_them() {
        let hdr = b"Num       RefCount Protocol Flags    Type St Inode Path";
        assert!(parse_row(hdr).is_none());
        let l =
            b"0000000000000000: 00000002 00000000 00010000 0001 01 123456 /run/app/unicorn.sock";
        assert_eq!(
            parse_row(l),
            Some((0x10000, 1, 1, 123456, &b"/run/app/unicorn.sock"[..]))
        );
        // A short inode is padded; a path may hold spaces; an unbound socket has no path.
        let l = b"0000000000000000: 00000003 00000000 00000000 0001 03    77 /tmp/a b";
        assert_eq!(parse_row(l), Some((0, 1, 3, 77, &b"/tmp/a b"[..])));
        let l = b"0000000000000000: 00000003 00000000 00000000 0001 03 78";
        assert_eq!(parse_row(l), Some((0, 1, 3, 78, &b""[..])));
    }

    #[test]
    fn a_path_with_newlines_is_one_row() {
        // The kernel prints sun_path's bytes raw: "/s/odd\n\xff x" spans two lines, and its
        // waiting connection's row too.
        let mut t = b"Num       RefCount Protocol Flags    Type St Inode Path\n".to_vec();
        for row in [
            &b"0000000000000000: 00000002 00000000 00010000 0001 01 200 /s/odd\n\xff x\n"[..],
            b"0000000000000000: 00000002 00000000 00000000 0001 02     0 /s/odd\n\xff x\n",
            b"0000000000000000: 00000003 00000000 00000000 0001 03 201 /s/odd\n\xff x\n",
        ] {
            t.extend_from_slice(row);
        }
        // A continuation never grows a name past sun_path's 108 bytes.
        t.extend_from_slice(b"0000000000000000: 00000002 00000000 00010000 0001 01 202 /s/long\n");
        for _ in 0..50 {
            t.extend_from_slice(b"0123456789\n");
        }
        let d = read_table(&t[..]).unwrap();
        let odd: &[u8] = b"/s/odd\n\xff x";
        let l: Vec<_> = d.socks.iter().filter(|s| s.listen).collect();
        assert_eq!(l.len(), 2, "{:?}", d.socks);
        assert_eq!((&*l[0].name, l[0].inode, l[0].rqueue), (odd, 200, 1));
        assert!(d
            .socks
            .iter()
            .any(|s| !s.listen && s.inode == 201 && &*s.name == odd));
        assert!(l[1].name.len() <= MAX_PATH, "{}", l[1].name.len());
        assert!(d.skipped > 0, "the lines past 108 bytes are counted skips");
    }

    #[test]
    fn the_queue_is_counted_from_waiting_connections() {
        let t = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            garbage\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 100 /s/app.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 101 /s/app.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 02     0 /s/app.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 02     0 /s/app.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 102\n\
            0000000000000000: 00000002 00000000 00010000 0002 01 103 /s/dgram\n";
        let d = read_table(t.as_bytes()).unwrap();
        assert_eq!(d.skipped, 1);
        let l: Vec<_> = d.socks.iter().filter(|s| s.listen).collect();
        assert_eq!(l.len(), 1, "the datagram socket is no listener");
        assert_eq!((l[0].inode, l[0].rqueue, l[0].wqueue), (100, 2, 0));
        let c: Vec<u64> = d
            .socks
            .iter()
            .filter(|s| !s.listen)
            .map(|s| s.inode)
            .collect();
        assert_eq!(c, vec![101], "the unnamed client side is not kept");
    }

    /// This process's own listener in its own table: two connections accepted by nobody are
    /// its queue, one accepted carries the listener's path and the inode its fd links to.
    #[test]
    fn own_listener_its_queue_and_an_accepted_connection() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd\nname.sock");
        let l = UnixListener::bind(&path).unwrap();
        let _c1 = UnixStream::connect(&path).unwrap();
        let (accepted, _) = l.accept().unwrap();
        let _c2 = UnixStream::connect(&path).unwrap();
        let _c3 = UnixStream::connect(&path).unwrap();
        let ino = |fd: i32| {
            let t = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            super::super::procfs::bracketed(&t.to_string_lossy(), "socket").unwrap()
        };
        let d = read_proc(Path::new("/proc/self/net")).unwrap();
        // The newline in the path splits its rows: the name is what precedes it, the same
        // for the listener, the accepted socket and the waiting ones, so they still match.
        let me = d
            .socks
            .iter()
            .find(|s| s.inode == ino(l.as_raw_fd()))
            .expect("own listener");
        assert!(me.listen);
        assert_eq!(me.rqueue, 2);
        let acc = d
            .socks
            .iter()
            .find(|s| s.inode == ino(accepted.as_raw_fd()))
            .expect("accepted connection");
        assert_eq!(acc.name, me.name);
        assert!(!acc.listen);
        assert!(display_name(b"/a\nb\xff").contains("\\n"));
        assert_eq!(display_name(b"/run/app.sock"), "/run/app.sock");
    }

    proptest::proptest! {
        #[test]
        fn any_table_reads_without_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = read_table(&b[..]);
        }

        #[test]
        fn any_bytes_as_a_diag_batch(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let mut out = UnixDump::default();
            let mut rows = 0;
            let _ = parse_batch(&b, &mut out, &mut rows);
            proptest::prop_assert!(out.socks.len() <= b.len() / 16);
        }
    }
}
