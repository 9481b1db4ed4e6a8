//! Network namespaces created by a test and deleted when dropped.

use crate::proc::run;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on a thread of its own inside the namespace named `name` (setns moves only that
/// thread; the caller's stay where they are) and returns what `f` returned.
pub fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path)?;
        // SAFETY: setns(2) moves only this thread into the namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        anyhow::ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a thread in namespace {name} panicked"))?
}

/// A named network namespace (`ip netns`), deleted on drop with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `hr-<role>-<pid>-<n>`; unique per process and call.
    pub fn new(role: &str) -> anyhow::Result<Netns> {
        let name = format!(
            "hr-{role}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace (`ip netns exec NAME program args…`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(|_| ())
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, kv: &str) -> anyhow::Result<()> {
        run(self.command("sysctl").args(["-qw", kv])).map(|_| ())
    }

    /// Kills every process still running in the namespace.
    pub fn kill_all(&self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}
