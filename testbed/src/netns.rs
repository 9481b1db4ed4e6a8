//! Network namespaces created by a test and deleted when dropped.

use crate::proc::run;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

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
