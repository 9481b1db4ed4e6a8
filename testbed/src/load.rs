//! A paced HTTP load loop run from inside a network namespace the test made: bounded in
//! requests and time, stopping by itself. Ground truth for accepted-connection rates: the
//! moment each request's connection was made and whether it was answered 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// A new connection per request (HTTP/1.0, closed by the server): connections = requests.
    PerRequest,
    /// Every request on one HTTP/1.1 keep-alive connection, opened once.
    KeepAlive,
}

/// What a load loop did.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// When each connection was made (wall clock, to compare with report windows).
    pub connects: Vec<SystemTime>,
    /// When each request was answered 200.
    pub answered: Vec<SystemTime>,
    /// Requests not answered 200 (refused, reset, another status).
    pub failed: u64,
}

impl Sent {
    /// Connections made in `[from, to)`.
    pub fn connects_between(&self, from: SystemTime, to: SystemTime) -> usize {
        self.connects
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }

    /// Requests answered in `[from, to)`.
    pub fn answered_between(&self, from: SystemTime, to: SystemTime) -> usize {
        self.answered
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }
}

/// A running load loop; [`Load::stop`] (or the bounds) ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Sent>>>,
}

/// Most requests a load loop may send, whatever it is asked.
pub const MAX_REQUESTS: usize = 20_000;

/// Most time a load loop may run, whatever it is asked.
pub const MAX_TIME: Duration = Duration::from_secs(300);

impl Load {
    /// `rate` requests per second of `GET path` to `addr`, sent from inside the named network
    /// namespace (`ip netns` name; None: this one), one in each slot of 1/`rate` seconds at a
    /// random point of its first 90 % (so a sampler's fixed period cannot stay in step with
    /// it; a request running late is not made up for by a burst), for at most `max` requests
    /// and `limit`.
    /// `addr` must be in 127.0.0.0/8 or inside a namespace the test made.
    pub fn start(
        netns: Option<&str>,
        addr: SocketAddr,
        path: &str,
        rate: f64,
        conn: Conn,
        max: usize,
        limit: Duration,
    ) -> anyhow::Result<Load> {
        anyhow::ensure!(rate > 0.0 && rate <= 1000.0, "rate {rate} out of (0, 1000]");
        let ns = netns
            .map(|n| std::fs::File::open(format!("/run/netns/{n}")))
            .transpose()?;
        let (max, limit) = (max.min(MAX_REQUESTS), limit.min(MAX_TIME));
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let path = path.to_string();
        let thread = std::thread::Builder::new()
            .name("hr-load".into())
            .spawn(move || {
                if let Some(f) = ns {
                    use std::os::fd::AsRawFd;
                    // SAFETY: setns(2) on a descriptor we own; only this thread changes namespace.
                    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                    anyhow::ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
                }
                run(addr, &path, rate, conn, max, limit, &halt)
            })?;
        Ok(Load {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the loop and returns what it sent.
    pub fn stop(mut self) -> anyhow::Result<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn run(
    addr: SocketAddr,
    path: &str,
    rate: f64,
    conn: Conn,
    max: usize,
    limit: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<Sent> {
    let mut sent = Sent::default();
    let start = Instant::now();
    let step = 1.0 / rate;
    let mut kept: Option<BufReader<TcpStream>> = None;
    // xorshift64, seeded from the clock: where in its slot each request goes.
    let mut x = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    for i in 0..max {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let within = (x % 900) as f64 / 1000.0;
        let due = start + Duration::from_secs_f64(step * (i as f64 + within));
        if stop.load(Ordering::SeqCst) || due - start >= limit {
            break;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let ok = match conn {
            Conn::PerRequest => connect(addr).and_then(|mut s| {
                sent.connects.push(SystemTime::now());
                write!(s, "GET {path} HTTP/1.0\r\nHost: load\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body.starts_with("HTTP/1.")
                    && body
                        .get(8..)
                        .is_some_and(|r| r.trim_start().starts_with("200")))
            }),
            Conn::KeepAlive => {
                if kept.is_none() {
                    kept = Some(BufReader::new(connect(addr)?));
                    sent.connects.push(SystemTime::now());
                }
                let r = kept.as_mut().expect("connected above");
                keep_alive_request(r, path)
            }
        };
        match ok {
            Ok(true) => sent.answered.push(SystemTime::now()),
            _ => sent.failed += 1,
        }
    }
    Ok(sent)
}

/// One request on a kept connection: the status line, headers, and a Content-Length body.
fn keep_alive_request(r: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<bool> {
    write!(
        r.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: load\r\nConnection: keep-alive\r\n\r\n"
    )?;
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0).min(1 << 20);
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(status.split_whitespace().nth(1) == Some("200"))
}
