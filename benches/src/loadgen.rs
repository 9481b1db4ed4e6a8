//! `headroom-loadgen --dst ADDR:PORT --rate PPS --seconds S [--dns NAME]`: sends small UDP
//! datagrams (or DNS queries for NAME, A, a new id each) at an exact rate, bounded in time and
//! count, then prints how many it sent. For benchmarks in the bed only:
//! the destination must be on loopback or inside a test namespace.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| {
            format!(
                "missing {name}; usage: headroom-loadgen --dst ADDR:PORT --rate PPS --seconds S"
            )
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| -> Result<(SocketAddr, u64, u64), String> {
        let dst = arg(&args, "--dst")?
            .parse()
            .map_err(|e| format!("invalid --dst: {e}"))?;
        let rate = arg(&args, "--rate")?
            .parse()
            .map_err(|e| format!("invalid --rate: {e}"))?;
        let secs = arg(&args, "--seconds")?
            .parse()
            .map_err(|e| format!("invalid --seconds: {e}"))?;
        if !(1..=1_000_000).contains(&rate) || !(1..=120).contains(&secs) {
            return Err("--rate must be 1..=1000000 and --seconds 1..=120".into());
        }
        Ok((dst, rate, secs))
    })();
    let (dst, rate, secs) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("headroom-loadgen: {e}");
            std::process::exit(64);
        }
    };
    let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .unwrap();
    // Not connected: a connected UDP socket turns ICMP port-unreachable into failed sends.
    let sock = UdpSocket::bind(bind);
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            eprintln!("headroom-loadgen: cannot send to {dst}: {e}");
            std::process::exit(1);
        }
    };
    let dns = args
        .iter()
        .position(|a| a == "--dns")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut payload = match &dns {
        Some(name) => dns_query(name),
        None => vec![0u8; 32],
    };
    let total = rate * secs;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut errors = 0u64;
    while sent < total {
        let elapsed = start.elapsed();
        if elapsed > Duration::from_secs(secs + 5) {
            break; // could not keep up: stop anyway, bounded in time
        }
        let due = ((elapsed.as_nanos() * rate as u128) / 1_000_000_000) as u64 + 1;
        while sent < due.min(total) {
            if dns.is_some() {
                payload[..2].copy_from_slice(&(sent as u16).to_be_bytes());
            }
            match sock.send_to(&payload, dst) {
                Ok(_) => sent += 1,
                Err(_) => {
                    errors += 1;
                    if errors > total {
                        break;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    println!(
        "sent {sent} errors {errors} seconds {:.3}",
        start.elapsed().as_secs_f64()
    );
}

/// A DNS query for `name`, type A, class IN, recursion desired (id set per packet).
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
