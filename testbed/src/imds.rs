//! A fake EC2 Instance Metadata Service that speaks IMDSv2 as the real one does (IMDSv2
//! required): `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1..=21600,
//! else 400) returns a token; GETs without a valid, unexpired token get 401; the real path layout
//! under `/latest/meta-data/` with plain-text, newline-separated payloads; 404 for unknown paths.
//!
//! A small HTTP/1.1 server (keep-alive) on a thread, bound to 127.0.0.1 or to an address inside
//! a network namespace. [`FakeImds::stop`] closes the listener and every open connection (IMDS
//! down); [`FakeImds::start`] again brings it back.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One ENI as IMDS lists it.
#[derive(Debug, Clone)]
pub struct FakeEni {
    pub mac: String,
    pub interface_id: String,
    pub device_number: u32,
    pub subnet_cidr: String,
    /// Primary first, as IMDS lists them.
    pub vpc_cidrs: Vec<String>,
    pub local_ipv4s: Vec<String>,
}

/// The instance the fake describes.
#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub enis: Vec<FakeEni>,
}

impl Instance {
    /// Every path under /latest/meta-data/ and its body, as the real service lays them out.
    pub fn paths(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let az = &self.availability_zone;
        p.insert("instance-id".into(), self.instance_id.clone());
        p.insert("instance-type".into(), self.instance_type.clone());
        p.insert("placement/availability-zone".into(), az.clone());
        p.insert(
            "placement/region".into(),
            az.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .into(),
        );
        p.insert("placement/".into(), "availability-zone\nregion".into());
        let primary = self.enis.iter().min_by_key(|e| e.device_number);
        if let Some(e) = primary {
            p.insert("mac".into(), e.mac.clone());
            if let Some(ip) = e.local_ipv4s.first() {
                p.insert("local-ipv4".into(), ip.clone());
            }
        }
        let macs: Vec<String> = self.enis.iter().map(|e| format!("{}/", e.mac)).collect();
        p.insert("network/".into(), "interfaces/".into());
        p.insert("network/interfaces/".into(), "macs/".into());
        p.insert("network/interfaces/macs/".into(), macs.join("\n"));
        for e in &self.enis {
            let b = format!("network/interfaces/macs/{}/", e.mac);
            let fields = [
                ("device-number", e.device_number.to_string()),
                ("interface-id", e.interface_id.clone()),
                ("local-ipv4s", e.local_ipv4s.join("\n")),
                ("mac", e.mac.clone()),
                ("owner-id", "111122223333".into()),
                ("security-group-ids", "sg-0123456789abcdef0".into()),
                ("subnet-id", "subnet-0123456789abcdef0".into()),
                ("subnet-ipv4-cidr-block", e.subnet_cidr.clone()),
                (
                    "vpc-ipv4-cidr-block",
                    e.vpc_cidrs.first().cloned().unwrap_or_default(),
                ),
                ("vpc-ipv4-cidr-blocks", e.vpc_cidrs.join("\n")),
                ("vpc-id", "vpc-0123456789abcdef0".into()),
            ];
            let listing: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            p.insert(b.clone(), listing.join("\n"));
            for (k, v) in fields {
                p.insert(format!("{b}{k}"), v);
            }
        }
        p.insert(
            String::new(),
            "instance-id\ninstance-type\nlocal-ipv4\nmac\nnetwork/\nplacement/".into(),
        );
        p
    }
}

/// What the fake has seen, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub token_puts: u64,
    pub gets: u64,
    pub unauthorized: u64,
    pub bad_requests: u64,
    pub connections: u64,
}

struct Shared {
    paths: Mutex<BTreeMap<String, String>>,
    /// Paths answered with a fixed status instead (e.g. 403, 404).
    statuses: Mutex<BTreeMap<String, u16>>,
    tokens: Mutex<BTreeMap<String, Instant>>,
    counts: Mutex<Counts>,
    seq: AtomicU64,
}

/// The fake service; stops on drop.
pub struct FakeImds {
    pub addr: SocketAddr,
    netns: Option<String>,
    shared: Arc<Shared>,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: JoinHandle<()>,
}

impl FakeImds {
    /// Serves `instance` on `addr` (port 0: any free port), inside network namespace `netns`
    /// (by `ip netns` name) when given.
    pub fn new(instance: &Instance, addr: SocketAddr, netns: Option<&str>) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            paths: Mutex::new(instance.paths()),
            statuses: Mutex::default(),
            tokens: Mutex::default(),
            counts: Mutex::default(),
            seq: AtomicU64::new(1),
        });
        let mut f = FakeImds {
            addr,
            netns: netns.map(String::from),
            shared,
            running: None,
        };
        f.start()?;
        Ok(f)
    }

    /// The endpoint to give the agent (`http://ADDR`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving (again). Tokens issued before survive, as on a real instance.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (addr, netns) = (self.addr, self.netns.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, c, sh) = (stop.clone(), conns.clone(), self.shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-imds".into())
            .spawn(move || {
                let bound = (|| -> anyhow::Result<TcpListener> {
                    if let Some(ns) = &netns {
                        enter_netns(ns)?;
                    }
                    let l = TcpListener::bind(addr)?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                })();
                let listener = match bound {
                    Ok(l) => {
                        let _ = tx.send(Ok(l.local_addr().expect("bound socket has an address")));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                accept_loop(listener, sh, s, c);
            })?;
        self.addr = rx.recv_timeout(Duration::from_secs(5))??;
        self.running = Some(Running {
            stop,
            conns,
            thread,
        });
        Ok(())
    }

    /// Stops serving: closes the listener and every open connection (IMDS down).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop.store(true, Ordering::SeqCst);
            for c in r.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
            let _ = r.thread.join();
        }
    }

    /// Replaces one path's body (malformed payloads), or adds it.
    pub fn set_path(&self, path: &str, body: &str) {
        self.shared
            .paths
            .lock()
            .unwrap()
            .insert(path.into(), body.into());
    }

    /// Answers `path` with `status` (e.g. 403, 404); `None` restores it.
    pub fn set_status(&self, path: &str, status: Option<u16>) {
        let mut s = self.shared.statuses.lock().unwrap();
        match status {
            Some(c) => s.insert(path.into(), c),
            None => s.remove(path),
        };
    }

    /// Forgets every token, as if they all expired.
    pub fn expire_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }

    pub fn counts(&self) -> Counts {
        self.shared.counts.lock().unwrap().clone()
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves the calling thread into a named network namespace.
fn enter_netns(name: &str) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns(2) on a namespace descriptor we hold; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    anyhow::ensure!(
        rc == 0,
        "setns into {name}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                shared.counts.lock().unwrap().connections += 1;
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                if let Ok(c) = s.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let sh = shared.clone();
                workers.push(std::thread::spawn(move || serve_conn(s, &sh)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(listener);
    for c in conns.lock().unwrap().iter() {
        let _ = c.shutdown(Shutdown::Both);
    }
    for w in workers {
        let _ = w.join();
    }
}

fn serve_conn(s: TcpStream, shared: &Shared) {
    let Ok(w) = s.try_clone() else { return };
    let mut w = w;
    let mut r = BufReader::new(s);
    // IMDS requests carry no body worth reading past 64 KiB.
    while let Some(req) = crate::http::read_request(&mut r, 1 << 16) {
        let (status, body, extra) = answer(&req, shared);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Server: EC2ws\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            break;
        }
    }
    // The accept loop keeps a clone to close it on stop; close it here too, so the peer sees EOF.
    let _ = w.shutdown(Shutdown::Both);
}

fn answer(req: &crate::http::Request, shared: &Shared) -> (u16, String, String) {
    let status_override = shared.statuses.lock().unwrap().get(&req.path).copied();
    if let Some(st) = status_override {
        return (st, String::new(), String::new());
    }
    if req.path == "/latest/api/token" {
        if req.method != "PUT" {
            return (405, String::new(), String::new());
        }
        // The real service refuses token requests that went through a proxy.
        if req.headers.contains_key("x-forwarded-for") {
            return (403, String::new(), String::new());
        }
        let ttl = req
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|t| (1..=21600).contains(t));
        let Some(ttl) = ttl else {
            shared.counts.lock().unwrap().bad_requests += 1;
            return (400, String::new(), String::new());
        };
        let n = shared.seq.fetch_add(1, Ordering::SeqCst);
        let token = format!("AQAEAFake{n:08}Token{:x}==", n.wrapping_mul(2654435761));
        shared
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        shared.counts.lock().unwrap().token_puts += 1;
        return (
            200,
            token,
            format!("X-Aws-Ec2-Metadata-Token-Ttl-Seconds: {ttl}\r\n"),
        );
    }
    if req.method != "GET" && req.method != "HEAD" {
        return (405, String::new(), String::new());
    }
    shared.counts.lock().unwrap().gets += 1;
    let valid = req
        .headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|t| shared.tokens.lock().unwrap().get(t).copied())
        .is_some_and(|until| Instant::now() < until);
    if !valid {
        shared.counts.lock().unwrap().unauthorized += 1;
        return (401, String::new(), String::new());
    }
    let Some(p) = req.path.strip_prefix("/latest/meta-data/") else {
        return (404, String::new(), String::new());
    };
    match shared.paths.lock().unwrap().get(p) {
        Some(b) => (200, b.clone(), String::new()),
        None => (404, String::new(), String::new()),
    }
}

/// A two-ENI instance in a /16 VPC with a secondary CIDR, for `macs[i]` on eni{i}.
pub fn two_eni_instance(macs: &[String]) -> Instance {
    Instance {
        instance_id: "i-0123456789abcdef0".into(),
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1a".into(),
        enis: macs
            .iter()
            .enumerate()
            .map(|(i, m)| FakeEni {
                mac: m.to_ascii_lowercase(),
                interface_id: format!("eni-0{i}{i}{i}aaaabbbbcccc{i}"),
                device_number: i as u32,
                subnet_cidr: format!("10.0.{i}.0/24"),
                vpc_cidrs: vec!["10.0.0.0/16".into(), "100.64.0.0/16".into()],
                local_ipv4s: vec![format!("10.0.{i}.10")],
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn http(addr: SocketAddr, req: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    fn put(addr: SocketAddr, ttl: &str) -> (u16, String) {
        http(
            addr,
            &format!("PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\nContent-Length: 0\r\n\r\n"),
        )
    }

    fn get(addr: SocketAddr, path: &str, token: &str) -> (u16, String) {
        http(
            addr,
            &format!("GET /latest/meta-data/{path} HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n"),
        )
    }

    #[test]
    fn speaks_imdsv2() {
        let inst = two_eni_instance(&["02:00:00:00:00:01".into(), "02:00:00:00:00:02".into()]);
        let mut f = FakeImds::new(&inst, "127.0.0.1:0".parse().unwrap(), None).unwrap();
        let a = f.addr;
        // TTL bounds as the real service: 1..=21600, else 400; missing header 400.
        assert_eq!(put(a, "0").0, 400);
        assert_eq!(put(a, "21601").0, 400);
        assert_eq!(put(a, "x").0, 400);
        let (st, token) = put(a, "21600");
        assert_eq!(st, 200);
        // No token or a wrong one: 401.
        assert_eq!(get(a, "instance-id", "").0, 401);
        assert_eq!(get(a, "instance-id", "bogus").0, 401);
        assert_eq!(
            get(a, "instance-id", &token),
            (200, "i-0123456789abcdef0".into())
        );
        assert_eq!(
            get(a, "network/interfaces/macs/", &token).1,
            "02:00:00:00:00:01/\n02:00:00:00:00:02/"
        );
        assert_eq!(
            get(
                a,
                "network/interfaces/macs/02:00:00:00:00:02/vpc-ipv4-cidr-blocks",
                &token
            )
            .1,
            "10.0.0.0/16\n100.64.0.0/16"
        );
        assert_eq!(get(a, "nope", &token).0, 404);
        // TTL honoured: a 1 s token stops working after 1 s.
        let (_, short) = put(a, "1");
        assert_eq!(get(a, "instance-type", &short).0, 200);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(get(a, "instance-type", &short).0, 401);
        // Down, then up again on the same address.
        f.stop();
        assert!(TcpStream::connect(a).is_err());
        f.start().unwrap();
        assert_eq!(f.addr, a);
        assert_eq!(get(a, "instance-id", &token).0, 200);
        let c = f.counts();
        assert_eq!((c.token_puts, c.bad_requests), (2, 3));
        assert_eq!(c.unauthorized, 3);
    }
}
