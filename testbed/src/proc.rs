//! Child processes that are stopped when the test lets go of them, even on panic.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running child; SIGTERM on drop, then SIGKILL after a grace period.
pub struct Guard {
    pub child: Option<Child>,
    pub name: String,
}

impl Guard {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Guard> {
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        Ok(Guard {
            child: Some(child),
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Sends SIGTERM and collects the output (stdout/stderr must have been piped to be seen).
    pub fn stop(mut self) -> anyhow::Result<Output> {
        self.signal(libc::SIGTERM);
        let child = self.child.take().expect("child present until stopped");
        wait_output(child, Duration::from_secs(10))
    }

    /// Waits for the child to exit by itself, at most `timeout`.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<Output> {
        let child = self.child.take().expect("child present until stopped");
        wait_output(child, timeout)
    }
}

fn wait_output(mut child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            anyhow::bail!(
                "process did not exit within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: see `signal`.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command to completion; error with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
