//! TCP sockets of a pod's network namespace without entering it: `/proc/<pid>/net/tcp` and
//! `tcp6` show the namespace of `<pid>` to any reader, so no `setns(2)` and no CAP_SYS_ADMIN.
//! A LISTEN row's `rx_queue` is the accept queue (`sk_ack_backlog`); the backlog limit is not in
//! the table, so it is read once per listener from a duplicate of a holder's descriptor
//! (`pidfd_getfd(2)`, CAP_SYS_PTRACE, which reading other processes' fds needs anyway) with
//! `getsockopt(TCP_INFO)`, whose `tcpi_sacked` is `sk_max_ack_backlog` on a listener, and the
//! duplicate closed at once. The cost against sock_diag: the kernel formats every socket of the
//! namespace as text (about 150 bytes each) where sock_diag walks only the listening hash for
//! the listeners; connected tables are read only when sock_diag's would be.

use super::sock::{Diag, Sock, SockState, UnixDump, MAX_ROWS};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_CLOSE_WAIT: u8 = 0x08;
const TCP_LISTEN: u8 = 0x0A;

/// One row of `/proc/net/tcp{,6}`: `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid
/// timeout inode …`, addresses as the kernel's 32-bit words in hex, in host byte order.
pub fn parse_row(line: &str, v6: bool) -> Option<(u8, Sock)> {
    let mut f = line.split_whitespace();
    let _sl = f.next()?;
    let local = f.next()?;
    let _remote = f.next()?;
    let state = u8::from_str_radix(f.next()?, 16).ok()?;
    let (tx, rx) = f.next()?.split_once(':')?;
    let (tx, rx) = (
        u32::from_str_radix(tx, 16).ok()?,
        u32::from_str_radix(rx, 16).ok()?,
    );
    let inode = f.nth(4)?.parse().ok()?;
    let (addr, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<u32> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        // The kernel prints each 32-bit word as it is in memory, read as a host integer.
        Some(u32::from_be_bytes(w.to_ne_bytes()))
    };
    let ip = match (v6, addr.len()) {
        (false, 8) => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        (true, 32) => {
            let w = [word(0)?, word(1)?, word(2)?, word(3)?];
            let mut b = [0u8; 16];
            for (i, w) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    let sock_state = if state == TCP_LISTEN {
        SockState::Listen
    } else {
        SockState::Connected
    };
    Some((
        state,
        Sock {
            state: sock_state,
            local: SocketAddr::new(ip, port),
            inode,
            rqueue: rx,
            wqueue: tx,
        },
    ))
}

/// The rows of `path` whose state `want` takes, at most [`MAX_ROWS`] read.
fn read_table(
    path: &Path,
    v6: bool,
    want: impl Fn(u8) -> bool,
    out: &mut Vec<Sock>,
) -> io::Result<()> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        // A kernel without IPv6 has no tcp6 table.
        Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let r = io::BufReader::new(f);
    let mut n = 0;
    for line in r.split(b'\n').skip(1) {
        n += 1;
        if n > MAX_ROWS {
            tracing::debug!(message = "Socket table cut short.", path = %path.display(), rows = MAX_ROWS);
            break;
        }
        let line = line?;
        let Some((state, mut s)) = parse_row(&String::from_utf8_lossy(&line), v6) else {
            continue;
        };
        if want(state) {
            if state == TCP_LISTEN {
                // tx_queue is 0 on a listener: the backlog comes from TCP_INFO.
                s.wqueue = 0;
            }
            out.push(s);
        }
    }
    Ok(())
}

/// The backlog limit of the listening socket `fd` of process `pid`: a duplicate through
/// pidfd_getfd(2), TCP_INFO's `tcpi_sacked` (`sk_max_ack_backlog` while listening), closed
/// before returning. None when the descriptor is not a TCP listener.
pub fn listen_backlog(pid: i32, fd: i32) -> io::Result<Option<u32>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let pidfd = super::procfs::pidfd_open(pid)?;
    // SAFETY: pidfd_getfd takes a pidfd we hold, a descriptor number and flags 0, and returns
    // a new descriptor or -1.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it. Dropped below.
    let dup = unsafe { OwnedFd::from_raw_fd(dup as i32) };
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            dup.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // Not a TCP socket (the fd was reused for something else).
        return match e.raw_os_error() {
            Some(libc::ENOPROTOOPT) | Some(libc::ENOTSOCK) | Some(libc::EOPNOTSUPP) => Ok(None),
            _ => Err(e),
        };
    }
    Ok((info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_sacked))
}

/// The descriptor number under which `pid` holds socket `inode` (`fd/N -> socket:[inode]`).
fn fd_of(proc_root: &Path, pid: i32, inode: u64) -> Option<i32> {
    let dir = proc_root.join(pid.to_string()).join("fd");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let t = std::fs::read_link(e.path()).ok()?;
        (super::procfs::bracketed(&t.to_string_lossy(), "socket") == Some(inode))
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// [`Diag`] from `/proc/<pid>/net/tcp{,6}`: no namespace entered, no CAP_SYS_ADMIN.
#[derive(Debug)]
pub struct ProcNetDiag {
    proc_root: PathBuf,
    /// Whether the proc root numbers processes as this process's pid namespace does: only then
    /// may a pid read there be given to pidfd_open(2). In a container without hostPID the
    /// host's pids name other processes (or none) in the agent's own namespace, and a backlog
    /// read through them would be some other socket's: the backlog is then unknown (0).
    own_pids: bool,
    /// Backlog limits by (namespace, listener inode): read once each (None: could not be read).
    backlogs: HashMap<(u64, u64), Option<u32>>,
}

impl ProcNetDiag {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        let own_pids = super::procfs::ProcRoot::new(&proc_root).is_own();
        if !own_pids {
            tracing::info!(
                message = "The proc root is not this process's pid namespace (a container without hostPID): listeners' backlog limits are not read (0: unknown).",
                proc_root = %proc_root.display()
            );
        }
        ProcNetDiag {
            proc_root,
            own_pids,
            backlogs: HashMap::new(),
        }
    }

    /// `<proc>/<pid>/net` for `ns_path` = `<proc>/<pid>/ns/net`.
    fn net_dir(ns_path: &Path) -> io::Result<PathBuf> {
        ns_path
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("net"))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not /proc/PID/ns/net"))
    }
}

impl Diag for ProcNetDiag {
    fn listeners(&mut self, netns: u64, ns_path: &Path) -> io::Result<Vec<Sock>> {
        let dir = Self::net_dir(ns_path)?;
        let mut out = Vec::new();
        read_table(&dir.join("tcp"), false, |s| s == TCP_LISTEN, &mut out)?;
        read_table(&dir.join("tcp6"), true, |s| s == TCP_LISTEN, &mut out)?;
        for s in &mut out {
            if let Some(Some(b)) = self.backlogs.get(&(netns, s.inode)) {
                s.wqueue = *b;
            }
        }
        Ok(out)
    }

    fn connected(
        &mut self,
        _netns: u64,
        ns_path: &Path,
        v4: bool,
        v6: bool,
    ) -> io::Result<Vec<Sock>> {
        let dir = Self::net_dir(ns_path)?;
        let want = |s| s == TCP_ESTABLISHED || s == TCP_CLOSE_WAIT;
        let mut out = Vec::new();
        if v4 {
            read_table(&dir.join("tcp"), false, want, &mut out)?;
        }
        if v6 {
            read_table(&dir.join("tcp6"), true, want, &mut out)?;
        }
        Ok(out)
    }

    fn backlog(&mut self, netns: u64, inode: u64, holder: i32) -> Option<u32> {
        if !self.own_pids {
            return None;
        }
        if let Some(b) = self.backlogs.get(&(netns, inode)) {
            return *b;
        }
        let b = fd_of(&self.proc_root, holder, inode).and_then(|fd| {
            listen_backlog(holder, fd)
                .map_err(|error| {
                    tracing::debug!(message = "Cannot read a listener's backlog (pidfd_getfd needs CAP_SYS_PTRACE).", pid = holder, %error);
                })
                .ok()
                .flatten()
        });
        self.backlogs.insert((netns, inode), b);
        b
    }

    fn retain(&mut self, live: &HashSet<u64>) {
        self.backlogs.retain(|(ns, _), _| live.contains(ns));
    }

    fn unix(&mut self, _netns: u64, ns_path: &Path) -> io::Result<UnixDump> {
        super::unixsock::read_proc(&Self::net_dir(ns_path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_as_the_kernel_writes_them() {
        // From a real /proc/net/tcp (x86_64): 127.0.0.1:8080 listening, 3 in the accept queue.
        let l = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let (st, s) = parse_row(l, false).unwrap();
        assert_eq!(st, TCP_LISTEN);
        assert_eq!(s.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((s.inode, s.rqueue, s.state), (4242, 3, SockState::Listen));
        // ::1 port 443 established, from /proc/net/tcp6.
        let l6 = "   1: 00000000000000000000000001000000:01BB 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1";
        let (st, s) = parse_row(l6, true).unwrap();
        assert_eq!(st, TCP_ESTABLISHED);
        assert_eq!(s.local, "[::1]:443".parse().unwrap());
        assert_eq!(s.inode, 777);
        assert!(parse_row("  sl  local_address rem_address   st tx_queue", false).is_none());
        assert!(parse_row(l, true).is_none(), "a v4 address in the v6 table");
    }

    /// This process's own listener, read from its own table and TCP_INFO, against what it
    /// set: the address, the inode its fd links to, two connections queued, backlog 7.
    #[test]
    fn own_listener_its_queue_and_backlog() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // std listens with backlog 128; listen(2) again sets the backlog to 7.
        // SAFETY: listen on a socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 7) }, 0);
        let addr = l.local_addr().unwrap();
        let _c1 = std::net::TcpStream::connect(addr).unwrap();
        let _c2 = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let me = std::process::id() as i32;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        let inode = super::super::procfs::bracketed(&link.to_string_lossy(), "socket").unwrap();
        let mut d = ProcNetDiag::new("/proc");
        let ns_path = PathBuf::from(format!("/proc/{me}/ns/net"));
        let netns = 1;
        let ls = d.listeners(netns, &ns_path).unwrap();
        let s = ls
            .iter()
            .find(|s| s.inode == inode)
            .expect("own listener listed");
        assert_eq!((s.local, s.rqueue, s.wqueue), (addr, 2, 0));
        assert_eq!(fd_of(Path::new("/proc"), me, inode), Some(l.as_raw_fd()));
        // pidfd_getfd on oneself needs no privilege beyond being oneself.
        assert_eq!(d.backlog(netns, inode, me), Some(7));
        let ls = d.listeners(netns, &ns_path).unwrap();
        assert_eq!(
            ls.iter().find(|s| s.inode == inode).unwrap().wqueue,
            7,
            "cached"
        );
        let conns = d.connected(netns, &ns_path, true, false).unwrap();
        assert!(
            conns
                .iter()
                .filter(|c| c.local.port() != addr.port())
                .count()
                >= 2,
            "{conns:?}"
        );
        // The duplicate was closed: the listener still accepts as before.
        l.set_nonblocking(true).unwrap();
        let mut got = 0;
        while l.accept().is_ok() {
            got += 1;
        }
        assert_eq!(got, 2);
    }

    proptest::proptest! {
        #[test]
        fn any_row_text_parses_without_panic(t in ".{0,200}", v6 in proptest::bool::ANY) {
            let _ = parse_row(&t, v6);
        }
    }
}
