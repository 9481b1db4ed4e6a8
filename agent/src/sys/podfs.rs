//! Files inside a pod's root (`/proc/<pid>/root/...`), read as a hostile pod would want them
//! misread: every path is resolved by the kernel inside the root (`openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`), so an absolute or `..` symlink cannot leave it
//! and a `/proc/self/...` magic link is refused; only a regular file is read (a FIFO, device or
//! directory is refused after `fstat`, before any read); the open never blocks (`O_NONBLOCK`)
//! and the read stops at a cap. Directories are listed and unix sockets connected to the same
//! way (see [`list_in_root`], [`connect_in_root`]).

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The most the agent reads of any one pod file. resolv.conf is a few hundred bytes; glibc
/// itself ignores what lies past a few KiB of search list.
pub const MAX_POD_FILE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PodFileError {
    #[error("cannot open {path} in the pod root {root}: {source}")]
    Open {
        root: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} in the pod root {root} is a {kind}, not a regular file; not read")]
    NotRegular {
        root: String,
        path: String,
        kind: &'static str,
    },
    #[error("{path} in the pod root {root} is larger than {max} bytes; not read")]
    TooLarge {
        root: String,
        path: String,
        max: usize,
    },
    #[error("reading {path} in the pod root {root}: {source}")]
    Read {
        root: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} in the pod root {root} is a {kind}, not a socket; not connected to")]
    NotSocket {
        root: String,
        path: String,
        kind: &'static str,
    },
    #[error("connecting to {path} in the pod root {root}: {source}")]
    Connect {
        root: String,
        path: String,
        source: std::io::Error,
    },
}

/// Opens `path` (relative to the pod's root) with `flags`, resolved by the kernel inside
/// `root`: no symlink leaves it, no magic link is followed.
fn open_in_root(root: &Path, path: &str, flags: OFlags) -> Result<OwnedFd, PodFileError> {
    let err_open = |source: std::io::Error| PodFileError::Open {
        root: root.display().to_string(),
        path: path.to_string(),
        source,
    };
    // The root itself is the agent's own `/proc/<pid>/root` link (or a test's directory):
    // opened as a path only, nothing is read through it but what openat2 resolves below.
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err_open(e.into()))?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        &dir,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| err_open(e.into()))
}

/// What a file is, for errors: None for a regular file.
fn kind_of(mode: u32) -> Option<&'static str> {
    match rustix::fs::FileType::from_raw_mode(mode) {
        rustix::fs::FileType::RegularFile => None,
        rustix::fs::FileType::Directory => Some("directory"),
        rustix::fs::FileType::Fifo => Some("FIFO"),
        rustix::fs::FileType::CharacterDevice => Some("character device"),
        rustix::fs::FileType::BlockDevice => Some("block device"),
        rustix::fs::FileType::Socket => Some("socket"),
        rustix::fs::FileType::Symlink => Some("symbolic link"),
        _ => Some("special file"),
    }
}

/// Names in the directory `path` of the pod root that start with `prefix`, in directory order:
/// at most `max_names` of them, and at most `max_scan` entries looked at (a pod's /tmp may hold
/// any number of files).
pub fn list_in_root(
    root: &Path,
    path: &str,
    prefix: &str,
    max_scan: usize,
    max_names: usize,
) -> Result<Vec<String>, PodFileError> {
    let fd = open_in_root(
        root,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
    )?;
    let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| PodFileError::Read {
        root: root.display().to_string(),
        path: path.to_string(),
        source: e.into(),
    })?;
    let mut out = Vec::new();
    for entry in dir.take(max_scan) {
        let Ok(entry) = entry else { break };
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name.starts_with(prefix) && name != "." && name != ".." {
            out.push(name.to_string());
            if out.len() >= max_names {
                break;
            }
        }
    }
    Ok(out)
}

/// Connects to the unix stream socket `path` of the pod root, within `timeout`. The socket's
/// inode is pinned first (`O_PATH | O_NOFOLLOW`, resolved inside the root, checked to be a
/// socket with `fstat`), then connected to through this process's `/proc/self/fd/N` link to
/// that very inode: a name swapped for a symlink after the check cannot send the connection out
/// of the pod. A listener whose queue is full fails at once (non-blocking connect), never waits.
pub fn connect_in_root(
    root: &Path,
    path: &str,
    timeout: Duration,
) -> Result<UnixStream, PodFileError> {
    let fd = open_in_root(root, path, OFlags::PATH | OFlags::NOFOLLOW)?;
    let err = |source: std::io::Error| PodFileError::Connect {
        root: root.display().to_string(),
        path: path.to_string(),
        source,
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return Err(PodFileError::NotSocket {
            root: root.display().to_string(),
            path: path.to_string(),
            kind: kind_of(st.st_mode).unwrap_or("regular file"),
        });
    }
    let pinned = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let sock =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(err)?;
    let addr = socket2::SockAddr::unix(&pinned).map_err(err)?;
    sock.connect_timeout(&addr, timeout).map_err(err)?;
    drop(fd);
    Ok(UnixStream::from(OwnedFd::from(sock)))
}

/// Reads `path` (relative to the pod's root; a leading `/` is the root itself) of the pod
/// whose root directory is `root`, at most `max` bytes. A file larger than `max` is an error,
/// not a truncated read: half a resolv.conf can name a search domain the pod never uses.
pub fn read_in_root(root: &Path, path: &str, max: usize) -> Result<Vec<u8>, PodFileError> {
    let fd = open_in_root(
        root,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )?;
    let st = rustix::fs::fstat(&fd).map_err(|e| PodFileError::Open {
        root: root.display().to_string(),
        path: path.to_string(),
        source: e.into(),
    })?;
    if let Some(kind) = kind_of(st.st_mode) {
        return Err(PodFileError::NotRegular {
            root: root.display().to_string(),
            path: path.to_string(),
            kind,
        });
    }
    let too_large = || PodFileError::TooLarge {
        root: root.display().to_string(),
        path: path.to_string(),
        max,
    };
    if st.st_size as u64 > max as u64 {
        return Err(too_large());
    }
    // One byte past the cap tells a file that grew after fstat from one that fits.
    let mut out = Vec::with_capacity((st.st_size as usize).min(max) + 1);
    std::fs::File::from(fd)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| PodFileError::Read {
            root: root.display().to_string(),
            path: path.to_string(),
            source,
        })?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A pod root with `etc/` and a host-side directory its symlinks aim at.
    fn roots() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let host = t.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        (t, root, host)
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (_t, root, host) = roots();
        // The host's file and a same-named one inside the pod root.
        std::fs::write(host.join("resolv.conf"), "search host.secret\n").unwrap();
        let inside = root.join(host.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("resolv.conf"), "search inside.pod\n").unwrap();
        symlink(host.join("resolv.conf"), root.join("etc/resolv.conf")).unwrap();
        let got = read_in_root(&root, "/etc/resolv.conf", MAX_POD_FILE).unwrap();
        assert_eq!(got, b"search inside.pod\n");
        // `..` cannot climb out either: it stops at the root.
        symlink("../../../../../../../..", root.join("etc/up")).unwrap();
        assert!(read_in_root(&root, "etc/up/etc/passwd", MAX_POD_FILE).is_err());
    }

    #[test]
    fn magic_links_are_refused() {
        let (_t, root, _host) = roots();
        symlink("/proc/self/root/etc/hostname", root.join("etc/resolv.conf")).unwrap();
        // Inside the root /proc does not exist: refused, whatever the host has.
        assert!(read_in_root(&root, "etc/resolv.conf", MAX_POD_FILE).is_err());
        // The pod root being the host's own root: /proc/self/root is a magic link.
        let e =
            read_in_root(Path::new("/"), "proc/self/root/etc/hostname", MAX_POD_FILE).unwrap_err();
        assert!(matches!(e, PodFileError::Open { .. }), "{e}");
    }

    #[test]
    fn only_regular_files_up_to_the_cap() {
        let (_t, root, _host) = roots();
        let e = read_in_root(&root, "etc", MAX_POD_FILE).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        std::fs::write(root.join("etc/big"), vec![b'x'; MAX_POD_FILE + 1]).unwrap();
        let e = read_in_root(&root, "etc/big", MAX_POD_FILE).unwrap_err();
        assert!(matches!(e, PodFileError::TooLarge { .. }), "{e}");
        std::fs::write(root.join("etc/fits"), vec![b'x'; MAX_POD_FILE]).unwrap();
        assert_eq!(
            read_in_root(&root, "etc/fits", MAX_POD_FILE).unwrap().len(),
            MAX_POD_FILE
        );
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let (_t, root, _host) = roots();
        let fifo = root.join("etc/resolv.conf");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_in_root(&root, "etc/resolv.conf", MAX_POD_FILE));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO with no writer must not block");
        let e = r.unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
    }

    #[test]
    fn sockets_are_connected_to_inside_the_root_only() {
        use std::os::unix::net::UnixListener;
        let (_t, root, host) = roots();
        let t = Duration::from_secs(1);
        let inside = UnixListener::bind(root.join("etc/app.sock")).unwrap();
        let outside = UnixListener::bind(host.join("host.sock")).unwrap();
        outside.set_nonblocking(true).unwrap();
        connect_in_root(&root, "/etc/app.sock", t).unwrap();
        inside.accept().unwrap();
        // A symlink to the host's socket: the last name is not followed, the others resolve
        // inside the root, so neither way reaches it.
        symlink(host.join("host.sock"), root.join("etc/link.sock")).unwrap();
        let e = connect_in_root(&root, "etc/link.sock", t).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        symlink(&host, root.join("etc/hostdir")).unwrap();
        assert!(connect_in_root(&root, "etc/hostdir/host.sock", t).is_err());
        assert!(
            outside.accept().is_err(),
            "nothing reached the host's socket"
        );
        std::fs::write(root.join("etc/plain"), "x").unwrap();
        let e = connect_in_root(&root, "etc/plain", t).unwrap_err();
        assert!(matches!(e, PodFileError::NotSocket { .. }), "{e}");
    }

    #[test]
    fn a_listener_that_never_accepts_fails_at_once_when_full() {
        let (_t, root, _host) = roots();
        let path = root.join("etc/full.sock");
        // Backlog 0: the queue is full after one pending connection, which nobody accepts.
        let l = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        l.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        l.listen(0).unwrap();
        let mut held = Vec::new();
        let start = std::time::Instant::now();
        let mut failed = false;
        for _ in 0..16 {
            match connect_in_root(&root, "etc/full.sock", Duration::from_millis(100)) {
                Ok(c) => held.push(c),
                Err(e) => {
                    assert!(matches!(e, PodFileError::Connect { .. }), "{e}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "a full queue refuses ({} connected)", held.len());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        drop(l);
    }

    #[test]
    fn directories_are_listed_inside_the_root_with_caps() {
        let (_t, root, host) = roots();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        for i in 0..50 {
            std::fs::create_dir(root.join(format!("tmp/passenger.{i}"))).unwrap();
            std::fs::write(root.join(format!("tmp/other.{i}")), "").unwrap();
        }
        let mut all = list_in_root(&root, "/tmp", "passenger.", 1000, 1000).unwrap();
        all.sort();
        assert_eq!(all.len(), 50);
        assert!(all.iter().all(|n| n.starts_with("passenger.")));
        assert_eq!(
            list_in_root(&root, "/tmp", "passenger.", 1000, 7)
                .unwrap()
                .len(),
            7
        );
        assert!(
            list_in_root(&root, "/tmp", "passenger.", 10, 1000)
                .unwrap()
                .len()
                <= 10
        );
        // A registry that is a symlink to the host lists the root's own directory of that name.
        std::fs::create_dir(host.join("passenger.host")).unwrap();
        symlink(&host, root.join("reg")).unwrap();
        assert!(list_in_root(&root, "reg", "passenger.", 1000, 1000).is_err());
        let e = list_in_root(&root, "tmp/other.1", "", 10, 10).unwrap_err();
        assert!(matches!(e, PodFileError::Open { .. }), "{e}");
    }
}
