//! `headroom-bench-dns [PAIRS [NAMES]]`: the agent's DNS layer in-process, at 50k queries/s of
//! capture time: PAIRS (default 3 000 000) query+reply pairs of real DNS bytes (IPv4/UDP, names
//! from a pool of NAMES (default 5 000), A answers with TTLs of 2 s to 300 s, every 10th NXDOMAIN with an SOA) through
//! `parse_into` (one reused packet, as the capture thread's batch reuses its packets) and the
//! `Tracker`, as the capture thread runs them. Prints ns per pair for the whole layer, for the
//! decoding alone (query and reply), and for the parts issue 25 added measured alone on the
//! same packets: reading the reply's TTLs (`cache_ttl`) and the answer table (question hash,
//! lookup, insert); and the heap allocations per pair of the whole layer in its last run (a
//! counting allocator: the goal of issue 19 is none). CPU time of this thread
//! (`CLOCK_THREAD_CPUTIME_ID`), best of 5 runs.

#[allow(dead_code)] // Only cpu_ns is used here; the rest is the other benches'.
mod common;

use headroom_agent::sources::dns::cache::{question_hash, AnswerTable, CacheConfig};
use headroom_agent::sources::dns::parse::{cache_ttl, parse_into, DnsPacket};
use headroom_agent::sources::dns::tracker::{Tracker, TrackerConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting allocations (reallocations included).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const STEP_NS: u64 = 20_000; // 50k queries/s

fn cpu_ns() -> u64 {
    common::cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn name_wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in name.split('.') {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    w.push(0);
    w
}

/// A DNS message: header, the question, and for a reply one A answer (TTL `ttl`) or, for
/// NXDOMAIN, an SOA in the authority section.
fn message(id: u16, name: &str, reply: Option<(bool, u32)>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let (flags, an, ns): (u16, u16, u16) = match reply {
        None => (0x0100, 0, 0),
        Some((true, _)) => (0x8183, 0, 1),
        Some((false, _)) => (0x8180, 1, 0),
    };
    m.extend_from_slice(&flags.to_be_bytes());
    for c in [1, an, ns, 0] {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m.extend_from_slice(&name_wire(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    if let Some((nx, ttl)) = reply {
        m.extend_from_slice(&[0xc0, 12]);
        if nx {
            m.extend_from_slice(&[0, 6, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            let rdata = [&[0u8][..], &[0], &[0; 20]].concat();
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata[..rdata.len() - 4]);
            m.extend_from_slice(&ttl.to_be_bytes());
        } else {
            m.extend_from_slice(&[0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 10, 1, 0, 1]);
        }
    }
    m
}

fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, msg: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(msg);
    p
}

fn main() {
    let pairs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let pool: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let (node, dns) = ([10, 0, 0, 10], [169, 254, 169, 253]);
    // 4096 distinct (id, port) pairs cycle; names cycle through the pool.
    let packets: Vec<(Vec<u8>, Vec<u8>)> = (0..pool)
        .map(|k| {
            let name = format!("svc{k}.ns{}.svc.cluster.local", k % 50);
            let nx = k % 10 == 0;
            let ttl = [2, 10, 30, 60, 300][k % 5];
            let (id, port) = (k as u16, 10_000 + (k % 4096) as u16);
            (
                udp4(node, port, dns, 53, &message(id, &name, None)),
                udp4(dns, 53, node, port, &message(id, &name, Some((nx, ttl)))),
            )
        })
        .collect();
    let run = |f: &mut dyn FnMut(usize, u64)| {
        let mut best = u64::MAX;
        for _ in 0..5 {
            let t0 = cpu_ns();
            for i in 0..pairs {
                f(i, i as u64 * STEP_NS);
            }
            best = best.min(cpu_ns() - t0);
        }
        best as f64 / pairs as f64
    };
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut d = DnsPacket::default();
    let mut allocs = 0;
    let whole = run(&mut |i, ts| {
        if i == 0 {
            allocs = ALLOCS.load(Ordering::Relaxed);
        }
        let (q, r) = &packets[i % pool];
        assert!(parse_into(q, &mut d), "query");
        tracker.query(ts, &d);
        assert!(parse_into(r, &mut d), "reply");
        tracker.response(ts + 100_000, &d);
        if i % 500_000 == 499_999 {
            black_box(tracker.cut(ts, 10.0));
        }
    });
    // The last of the five runs: the tables have their working size.
    let allocs = (ALLOCS.load(Ordering::Relaxed) - allocs) as f64 / pairs as f64;
    let decode = run(&mut |i, _| {
        let (q, r) = &packets[i % pool];
        black_box(parse_into(black_box(q), &mut d));
        black_box(parse_into(black_box(r), &mut d));
    });
    let msgs: Vec<&[u8]> = packets.iter().map(|(_, r)| &r[28..]).collect();
    let ttl = run(&mut |i, _| {
        black_box(cache_ttl(black_box(msgs[i % pool])));
    });
    let names: Vec<String> = (0..pool)
        .map(|k| format!("svc{k}.ns{}.svc.cluster.local", k % 50))
        .collect();
    let cfg = CacheConfig::default();
    let mut table = AnswerTable::new(cfg.entries);
    let table_ns = run(&mut |i, ts| {
        let h = question_hash(&names[i % pool], 1, 1);
        if !table.hit(h, ts) {
            table.insert(
                h,
                ts + 100_000,
                ts + 100_000 + cfg.success_cap_ns.min(60_000_000_000),
            );
        }
    });
    println!("| pairs | names | whole DNS layer ns/pair | decoding (query + reply) ns | reply TTLs (cache_ttl) ns | answer table (hash, lookup, insert) ns | allocations per pair |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {pairs} | {pool} | {whole:.0} | {decode:.0} | {ttl:.0} | {table_ns:.0} | {allocs:.4} |"
    );
}
