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

    /// The text of `/proc/PID/cgroup`.
    pub fn cgroup(&self, pid: i32) -> io::Result<String> {
        std::fs::read_to_string(self.pid_path(pid).join("cgroup"))
    }
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

    #[test]
    fn reads_link_targets_and_stat() {
        assert_eq!(bracketed("socket:[12345]", "socket"), Some(12345));
        assert_eq!(bracketed("net:[4026531840]", "net"), Some(4026531840));
        assert_eq!(bracketed("pipe:[1]", "socket"), None);
        assert_eq!(bracketed("socket:[x]", "socket"), None);
        assert_eq!(parse_stat_ppid("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (gunicorn) S 1 42"), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn the_live_proc_reads_itself() {
        let p = ProcRoot::new("/proc");
        let me = std::process::id() as i32;
        assert!(p.pids().unwrap().contains(&me));
        assert!(p.netns(me).unwrap() > 0);
        assert!(p.ppid(me).unwrap() > 0);
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
