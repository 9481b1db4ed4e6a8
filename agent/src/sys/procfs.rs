//! The few facts the worker source reads from /proc, through a root that tests point at a
//! fixture tree. Every read may fail (the process exited, the directory is unreadable): callers
//! skip that process, never panic.

use std::io;
use std::path::{Path, PathBuf};

/// Where /proc is: `/proc`, or the host's /proc mounted elsewhere, or a test fixture.
#[derive(Debug, Clone)]
pub struct ProcRoot(pub PathBuf);

/// Parses the number in a link target such as `socket:[123]` or `net:[4026531840]`.
pub fn bracketed(target: &str, kind: &str) -> Option<u64> {
    target
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProcRoot(path.into())
    }

    fn pid_path(&self, pid: i32) -> PathBuf {
        self.0.join(pid.to_string())
    }

    /// Every process id (thread-group leaders: /proc lists no other threads at its top).
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.0)? {
            let Ok(e) = e else { continue };
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                out.push(pid);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every process id with the inode of its /proc directory, from one directory listing (no
    /// call per process). A pid whose inode changed may be a new process under a reused pid:
    /// compare [`ProcRoot::stat`]'s start time.
    pub fn pids_with_ino(&self) -> io::Result<Vec<(i32, u64)>> {
        use std::os::unix::fs::DirEntryExt;
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.0)? {
            let Ok(e) = e else { continue };
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                out.push((pid, e.ino()));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The inode of the process's /proc directory (one lstat): changes when the pid is reused.
    pub fn ino(&self, pid: i32) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::symlink_metadata(self.pid_path(pid))?.ino())
    }

    /// Parent and start time, from `stat`.
    pub fn stat(&self, pid: i32) -> io::Result<Stat> {
        let s = read_bounded(&self.pid_path(pid).join("stat"))?;
        parse_stat(&s).ok_or_else(|| bad(Path::new("stat")))
    }

    /// The TCP `PassiveOpens` counter of the process's network namespace (`net/snmp`): how many
    /// connections its listeners have completed, ever.
    pub fn tcp_passive_opens(&self, pid: i32) -> io::Result<u64> {
        let s = read_bounded(&self.pid_path(pid).join("net/snmp"))?;
        parse_snmp(&s, "Tcp", "PassiveOpens").ok_or_else(|| bad(Path::new("net/snmp")))
    }

    /// Whether this root's pids are this process's own (its `self` link names us): only then
    /// can a pid from it be opened with pidfd_open(2).
    pub fn is_own(&self) -> bool {
        std::fs::read_link(self.0.join("self"))
            .ok()
            .and_then(|t| t.to_str()?.parse::<u32>().ok())
            == Some(std::process::id())
    }

    /// The path of the process's network namespace (open it to enter the namespace).
    pub fn netns_path(&self, pid: i32) -> PathBuf {
        self.pid_path(pid).join("ns/net")
    }

    /// The inode of the process's network namespace (`net:[N]`), which identifies it.
    pub fn netns(&self, pid: i32) -> io::Result<u64> {
        let t = std::fs::read_link(self.netns_path(pid))?;
        bracketed(&t.to_string_lossy(), "net").ok_or_else(|| bad(&t))
    }

    /// Inodes of the sockets the process holds open (`fd/N -> socket:[inode]`).
    pub fn socket_inodes(&self, pid: i32) -> io::Result<Vec<u64>> {
        let dir = self.pid_path(pid).join("fd");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let Ok(e) = e else { continue };
            // A descriptor closed between readdir and readlink is simply gone.
            if let Ok(t) = std::fs::read_link(e.path()) {
                if let Some(i) = bracketed(&t.to_string_lossy(), "socket") {
                    out.push(i);
                }
            }
        }
        Ok(out)
    }

    /// Parent process id, from `stat` (the field after the command, which may hold spaces and
    /// parentheses).
    pub fn ppid(&self, pid: i32) -> io::Result<i32> {
        let s = std::fs::read_to_string(self.pid_path(pid).join("stat"))?;
        parse_stat_ppid(&s).ok_or_else(|| bad(Path::new("stat")))
    }

    /// The command name (`comm`).
    pub fn comm(&self, pid: i32) -> io::Result<String> {
        Ok(std::fs::read_to_string(self.pid_path(pid).join("comm"))?
            .trim_end()
            .to_string())
    }

    /// The command line's arguments (`cmdline`, NUL-separated), at most [`MAX_CMDLINE`] bytes
    /// read: a process may set an argument list of any length.
    pub fn cmdline(&self, pid: i32) -> io::Result<Vec<String>> {
        use std::io::Read;
        let mut b = Vec::new();
        std::fs::File::open(self.pid_path(pid).join("cmdline"))?
            .take(MAX_CMDLINE as u64)
            .read_to_end(&mut b)?;
        Ok(b.split(|c| *c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect())
    }

    /// The names (`comm`) of the process's threads, at most `max` of them read.
    pub fn thread_names(&self, pid: i32, max: usize) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.pid_path(pid).join("task"))?.take(max) {
            let Ok(e) = e else { continue };
            // A thread that ended between readdir and read is simply gone.
            if let Ok(c) = std::fs::read_to_string(e.path().join("comm")) {
                out.push(c.trim_end().to_string());
            }
        }
        Ok(out)
    }

    /// The process's root directory as this process reaches it (`/proc/PID/root`): a path to
    /// read through `sys::podfs` only, never directly (links inside resolve on the host).
    pub fn root(&self, pid: i32) -> PathBuf {
        self.pid_path(pid).join("root")
    }

    /// The value of `name` in the process's initial environment (`environ`, at most
    /// `MAX_READ` bytes read); None when unset or empty.
    pub fn env_var(&self, pid: i32, name: &str) -> io::Result<Option<String>> {
        use std::io::Read;
        let mut b = Vec::new();
        std::fs::File::open(self.pid_path(pid).join("environ"))?
            .take(MAX_READ)
            .read_to_end(&mut b)?;
        let key = format!("{name}=");
        Ok(b.split(|c| *c == 0)
            .find_map(|kv| kv.strip_prefix(key.as_bytes()))
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned()))
    }

    /// The pid as the process's own pid namespace numbers it: the last `NSpid` figure of
    /// `status` (its pid here where the kernel shows no NSpid).
    pub fn ns_pid(&self, pid: i32) -> io::Result<i32> {
        let path = self.pid_path(pid).join("status");
        let text = read_bounded(&path)?;
        match text.lines().find_map(|l| l.strip_prefix("NSpid:")) {
            Some(v) => v
                .split_whitespace()
                .last()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad(&path)),
            None => Ok(pid),
        }
    }

    /// The inode of the process's mount namespace (`mnt:[N]`): processes sharing it see the
    /// same mounts.
    pub fn mntns(&self, pid: i32) -> io::Result<u64> {
        let t = std::fs::read_link(self.pid_path(pid).join("ns/mnt"))?;
        bracketed(&t.to_string_lossy(), "mnt").ok_or_else(|| bad(&t))
    }

    /// At most `max` bytes of `/proc/PID/mountstats` (the mounts of its mount namespace),
    /// opened without following a link.
    pub fn mountstats(&self, pid: i32, max: usize) -> io::Result<String> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Read;
        let fd = rustix::fs::open(
            self.pid_path(pid).join("mountstats"),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut b = Vec::new();
        std::fs::File::from(fd)
            .take(max as u64)
            .read_to_end(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// The text of `/proc/PID/cgroup`.
    pub fn cgroup(&self, pid: i32) -> io::Result<String> {
        std::fs::read_to_string(self.pid_path(pid).join("cgroup"))
    }
}

/// Most bytes of a command line read.
pub const MAX_CMDLINE: usize = 8192;

/// Whether this process holds capability `bit` (CapEff in /proc/self/status; capability.h
/// numbers: CAP_NET_RAW 13, CAP_SYS_ADMIN 21). Unreadable: assumed held (the call that needs it
/// then says what is missing).
pub fn has_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .map_or(true, |caps| caps & (1 << bit) != 0)
}

/// A pidfd for `pid` (pidfd_open(2)): it refers to that process, never to a later one that
/// reuses the pid, and is readable once the process has exited.
pub fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Which of the pidfds' processes have exited, from one poll(2) that does not wait.
pub fn exited(fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    use std::os::fd::AsRawFd;
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live array of `p.len()` pollfds; a timeout of 0 never blocks.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(p.iter().map(|p| p.revents != 0).collect())
}

/// What the worker source needs from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: i32,
    /// Clock ticks after boot when the process started: with the pid, it names one process.
    pub start: u64,
}

/// Most bytes read of a /proc text file: `stat` and `net/snmp` are a few hundred.
const MAX_READ: u64 = 64 * 1024;

/// Lossy UTF-8: a process may name itself with any bytes (`prctl(PR_SET_NAME)`), and a strict
/// read would skip it, hiding its listeners.
fn read_bounded(p: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut b = Vec::new();
    std::fs::File::open(p)?.take(MAX_READ).read_to_end(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// `pid (comm) state ppid … starttime …` (starttime is field 22).
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let ppid = f.nth(1)?.parse().ok()?;
    let start = f.nth(17)?.parse().ok()?;
    Some(Stat { ppid, start })
}

/// A counter of `net/snmp`: a header line `Tcp: Name…` followed by `Tcp: values…`.
pub fn parse_snmp(text: &str, proto: &str, name: &str) -> Option<u64> {
    let mut lines = text
        .lines()
        .filter(|l| l.strip_prefix(proto).is_some_and(|r| r.starts_with(':')));
    let (head, vals) = (lines.next()?, lines.next()?);
    let i = head.split_whitespace().position(|h| h == name)?;
    vals.split_whitespace().nth(i)?.parse().ok()
}

/// `pid (comm) state ppid …` → ppid.
pub fn parse_stat_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn bad(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected content: {}", p.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: no panic. A real `stat` line, whatever its comm (up to 15 bytes of anything
        /// a process can name itself, parentheses and spaces included), gives its ppid and
        /// start time exactly.
        #[test]
        fn stat_lines_parse_whatever_the_comm(
            junk in ".{0,300}",
            comm in prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..15),
            pid in 1i32..4_194_304, ppid in 0i32..4_194_304, start in any::<u64>(),
        ) {
            let _ = (parse_stat(&junk), parse_stat_ppid(&junk));
            let comm = String::from_utf8_lossy(&comm);
            let line = format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 1 0 {start} 999 1 18446744073709551615\n");
            prop_assert_eq!(parse_stat(&line), Some(Stat { ppid, start }));
            prop_assert_eq!(parse_stat_ppid(&line), Some(ppid));
        }

        /// Any text: no panic; a real `net/snmp` with the counter at any column gives it.
        #[test]
        fn snmp_parses_any_text_and_finds_any_column(junk in ".{0,400}", before in 0usize..20, v in any::<u64>()) {
            let _ = parse_snmp(&junk, "Tcp", "PassiveOpens");
            let heads: Vec<String> = (0..before).map(|i| format!("C{i}")).collect();
            let vals: Vec<String> = (0..before).map(|i| i.to_string()).collect();
            let text = format!("Ip: Forwarding\nIp: 1\nTcp: {} PassiveOpens\nTcp: {} {v}\n", heads.join(" "), vals.join(" "));
            prop_assert_eq!(parse_snmp(&text, "Tcp", "PassiveOpens"), Some(v));
        }

        #[test]
        fn link_targets_parse_any_text(t in ".{0,64}") {
            let _ = bracketed(&t, "socket");
        }
    }

    /// A process named with bytes that are not UTF-8 is still read, not skipped.
    #[test]
    fn a_stat_file_that_is_not_utf8_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stat");
        let line =
            b"7 (\xff\xfe) S 1 7 7 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 1 0 12345 999 1 1\n".to_vec();
        std::fs::write(&p, &line).unwrap();
        let text = read_bounded(&p).unwrap();
        assert_eq!(
            parse_stat(&text),
            Some(Stat {
                ppid: 1,
                start: 12345
            })
        );
    }

    #[test]
    fn reads_link_targets_and_stat() {
        assert_eq!(bracketed("socket:[12345]", "socket"), Some(12345));
        assert_eq!(bracketed("net:[4026531840]", "net"), Some(4026531840));
        assert_eq!(bracketed("pipe:[1]", "socket"), None);
        assert_eq!(bracketed("socket:[x]", "socket"), None);
        assert_eq!(parse_stat_ppid("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (gunicorn) S 1 42"), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
        let st = "7 (a (b) c) S 1 7 7 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 1 0 12345 999 1 18446744073709551615";
        assert_eq!(
            parse_stat(st),
            Some(Stat {
                ppid: 1,
                start: 12345
            })
        );
        assert_eq!(parse_stat("7 (a) S 1 7"), None, "truncated");
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin ActiveOpens PassiveOpens\nTcp: 1 200 10 42\nUdp: InDatagrams\nUdp: 5\n";
        assert_eq!(parse_snmp(snmp, "Tcp", "PassiveOpens"), Some(42));
        assert_eq!(parse_snmp(snmp, "Tcp", "Nope"), None);
        assert_eq!(
            parse_snmp("Tcp: PassiveOpens\n", "Tcp", "PassiveOpens"),
            None
        );
    }

    #[test]
    fn the_live_proc_reads_itself() {
        let p = ProcRoot::new("/proc");
        let me = std::process::id() as i32;
        assert!(p.pids().unwrap().contains(&me));
        assert!(p.netns(me).unwrap() > 0);
        assert!(p.ppid(me).unwrap() > 0);
        let st = p.stat(me).unwrap();
        assert_eq!(st.ppid, p.ppid(me).unwrap());
        assert!(st.start > 0);
        let (_, ino) = *p
            .pids_with_ino()
            .unwrap()
            .iter()
            .find(|(q, _)| *q == me)
            .unwrap();
        assert_eq!(ino, p.ino(me).unwrap());
        let before = p.tcp_passive_opens(me).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _a = l.accept().unwrap();
        assert!(p.tcp_passive_opens(me).unwrap() > before);
        assert!(p.is_own());
        assert!(!ProcRoot::new("/nonexistent").is_own());
        // A pidfd is readable once its process exited, not before.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        use std::os::fd::AsFd;
        assert_eq!(exited(&[fd.as_fd()]).unwrap(), [false]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(exited(&[fd.as_fd()]).unwrap(), [true]);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            l.as_raw_fd()
        }))
        .unwrap()
        .ino();
        assert!(p.socket_inodes(me).unwrap().contains(&ino));
    }
}
