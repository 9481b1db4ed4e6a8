//! Child processes that are stopped when the test lets go of them, even on panic.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
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

    /// Reads the child's piped stderr until a line containing `marker` (panics if the child
    /// exits first, with what it wrote), then keeps reading on a thread so the child never
    /// blocks on a full pipe. Every line goes to the returned log and, with `echo`, to the
    /// test's stderr behind that prefix.
    pub fn stderr_until(&mut self, marker: &str, echo: Option<&'static str>) -> Arc<Mutex<String>> {
        let stderr = self.child.as_mut().and_then(|c| c.stderr.take());
        let mut r = BufReader::new(stderr.expect("stderr piped and not yet taken"));
        let log = Arc::new(Mutex::new(String::new()));
        let keep = move |log: &Mutex<String>, line: &str| {
            if let Some(p) = echo {
                eprint!("{p}: {line}");
            }
            log.lock().unwrap().push_str(line);
        };
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).unwrap_or(0);
            keep(&log, &line);
            assert!(
                n > 0,
                "{} exited before {marker:?}: {}",
                self.name,
                log.lock().unwrap()
            );
            if line.contains(marker) {
                break;
            }
        }
        let l = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                keep(&l, &line);
                line.clear();
            }
        });
        log
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

/// Reads a child's pipe on a thread into a buffer, so the child never blocks on a full pipe
/// (a `once` report of 5 000 listeners is far more than the pipe's 64 KiB).
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drain {
    fn start(pipe: Option<impl std::io::Read + Send + 'static>) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        if let Some(mut pipe) = pipe {
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 16 * 1024];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(());
            });
        }
        Drain { buf, done }
    }

    /// What was read, once the pipe closed or after `grace` (a grandchild may hold it open).
    fn take(self, grace: Duration) -> Vec<u8> {
        let _ = self.done.recv_timeout(grace);
        std::mem::take(&mut *self.buf.lock().unwrap())
    }
}

fn wait_output(mut child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    let stdout = Drain::start(child.stdout.take());
    let stderr = Drain::start(child.stderr.take());
    let grace = Duration::from_secs(2);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Output {
                status,
                stdout: stdout.take(grace),
                stderr: stderr.take(grace),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "process did not exit within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&stderr.take(grace))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that writes far more than a pipe holds before exiting (as `once` does with a
    /// report of thousands of listeners) is read while it runs, so it exits and all of it
    /// arrives; the old wait polled for the exit without reading and the child blocked.
    #[test]
    fn a_child_writing_more_than_a_pipe_holds_exits_and_is_read_whole() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 1048576 /dev/zero; echo done >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = Guard::spawn("writer", &mut cmd)
            .unwrap()
            .wait(Duration::from_secs(10))
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1_048_576);
        assert_eq!(out.stderr, b"done\n");
    }
}
