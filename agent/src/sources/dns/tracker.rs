//! Matches replies to queries (5-tuple + id) on one interface and keeps one window's DNS figures.
//! A query with no reply within the timeout is *unanswered*: what a throttled packet looks like
//! from the node. Memory is bounded: pending queries, names and sources all have caps.

use super::cache::{question_key, AnswerTable, CacheConfig};
use super::parse::{rcode_name, CacheTtl, DnsPacket};
use super::pending::{Key, PendingTable};
use super::search::{ndots2_saves, SearchDomains};
use super::topk::SpaceSaving;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Tracker limits.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// A query without a reply after this long is unanswered (glibc's default timeout is 5 s).
    pub timeout_ns: u64,
    /// Most queries awaiting a reply; beyond, the oldest is given up as unanswered.
    pub max_pending: usize,
    /// Keys the name and source sketches hold.
    pub sketch: usize,
    /// Entries shown in `top_qnames` / `top_sources`.
    pub top: usize,
    pub search: SearchDomains,
    /// The answer table behind the cacheable share.
    pub cache: CacheConfig,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            timeout_ns: 5_000_000_000,
            max_pending: 65_536,
            sketch: 256,
            top: 10,
            search: SearchDomains::default(),
            cache: CacheConfig::default(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct SourceExtra {
    pub wasted: u64,
    pub ndots2: u64,
    /// Queries a cache in front would have answered.
    pub cacheable: u64,
    /// Base names of this source's latest search walks, newest last (at most 4).
    recent: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopName {
    pub qname: String,
    pub queries: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopSource {
    pub source: String,
    /// The pod behind the source address, once the pod list is known.
    pub pod: Option<String>,
    /// The workload that owns that pod (from its ownerReferences); null when unknown.
    pub workload: Option<crate::pod::Workload>,
    pub queries: u64,
    pub pps: f64,
    /// Queries this source spent on search suffixes that failed.
    pub search_expansion_packets: u64,
    /// Packets/s this source would not send with `ndots:2`.
    pub ndots2_savings_pps: f64,
    /// Packets/s this source would not send with fully qualified names (a trailing dot).
    pub fqdn_savings_pps: f64,
    /// Queries a node-local cache would have answered (see `DnsFigures::cacheable_queries`).
    pub cacheable_queries: u64,
    /// cacheable_queries / queries.
    pub cacheable_share: f64,
    /// Packets/s this source would not send behind a node-local cache (window mean).
    pub cache_savings_pps: f64,
}

/// DNS figures of one interface for one report window (`dns` in the report).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DnsFigures {
    /// Queries sent in the window.
    pub queries: u64,
    /// Replies matched to a query in the window.
    pub answered: u64,
    /// Queries whose timeout ran out in the window.
    pub unanswered: u64,
    /// Queries still waiting for a reply at the window's end.
    pub pending: u64,
    pub rcodes: BTreeMap<String, u64>,
    pub latency_ms: LatencyMs,
    /// Queries for a name plus a search suffix that came back NXDOMAIN.
    pub search_expansion_packets: u64,
    /// search_expansion_packets / queries.
    pub search_expansion_share: f64,
    pub ndots2_savings_pps: f64,
    pub fqdn_savings_pps: f64,
    /// Queries whose question had, at that moment, an answer a cache in front would still
    /// hold: a success less than min(TTL, cache_success_ttl_cap) old, or NXDOMAIN/NODATA less
    /// than min(negative TTL, cache_denial_ttl_cap) old.
    pub cacheable_queries: u64,
    /// cacheable_queries / queries.
    pub cacheable_share: f64,
    /// Packets/s a node-local cache would have kept off the interface: the window's mean…
    pub cache_savings_pps: f64,
    /// …and in the window's busiest second (most queries; whole seconds of the capture clock).
    pub cache_savings_peak_pps: f64,
    /// Live answers the table had to push out in the window (a full table: the cacheable
    /// figures are low by up to one query per eviction and name).
    pub cache_table_evictions: u64,
    pub top_qnames: Vec<TopName>,
    pub top_sources: Vec<TopSource>,
}

/// Running totals since start, for Prometheus counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsTotals {
    pub queries: u64,
    pub responses: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub search_expansion: u64,
    pub cacheable: u64,
    /// Live answers the answer table pushed out.
    pub cache_evictions: u64,
}

/// The per-query path allocates nothing once its tables have grown: names are read into
/// reused buffers, queries wait in [`PendingTable`]'s reused slots, and the name sketch is
/// keyed by a seeded 64-bit hash of the name, which is stored once, when it enters.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    pending: PendingTable,
    // This window:
    queries: u64,
    answered: u64,
    unanswered: u64,
    /// Replies by rcode (the header's four bits) in this window…
    rcodes: [u64; 16],
    /// …and since start.
    responses: [u64; 16],
    latency_us: Histogram<u64>,
    wasted: u64,
    wasted_ndots2: u64,
    cacheable: u64,
    answers: AnswerTable,
    /// The second being counted (capture clock, s) and its queries and cacheable queries.
    second: (u64, u64, u64),
    /// The window's busiest second so far: (queries, cacheable).
    busiest: (u64, u64),
    /// Name hash → count, with the name itself as the entry's extra.
    names: SpaceSaving<u64, String>,
    name_hasher: ahash::RandomState,
    sources: SpaceSaving<IpAddr, SourceExtra>,
    /// Scratch for the search-walk readings of a name (prefix lengths).
    bases: Vec<usize>,
    totals: DnsTotals,
}

/// The non-zero counts of `counts`, by rcode name.
fn by_rcode(counts: &[u64; 16]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(rcode, n)| (rcode_name(rcode as u16), *n))
        .collect()
}

impl Tracker {
    /// Replaces the search suffixes (learned from the node's resolv.conf files).
    pub fn set_search(&mut self, search: SearchDomains) {
        self.cfg.search = search;
    }

    pub fn new(cfg: TrackerConfig) -> Self {
        let answers = AnswerTable::new(cfg.cache.entries);
        Tracker {
            names: SpaceSaving::new(cfg.sketch),
            sources: SpaceSaving::new(cfg.sketch),
            pending: PendingTable::new(cfg.max_pending),
            cfg,
            queries: 0,
            answered: 0,
            unanswered: 0,
            rcodes: [0; 16],
            responses: [0; 16],
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
            wasted: 0,
            wasted_ndots2: 0,
            cacheable: 0,
            answers,
            second: (0, 0, 0),
            busiest: (0, 0),
            name_hasher: ahash::RandomState::new(),
            bases: Vec::new(),
            totals: DnsTotals::default(),
        }
    }

    /// An outgoing query sent at `ts` (ns).
    pub fn query(&mut self, ts: u64, p: &DnsPacket) {
        if p.response {
            return;
        }
        self.expire(ts);
        self.queries += 1;
        self.totals.queries += 1;
        let name = self.name_hasher.hash_one(p.qname.as_bytes());
        self.names.hit_with(&name, |n| {
            n.clear();
            n.push_str(&p.qname);
        });
        let question = question_key(name, p.qtype, p.qclass);
        let cacheable = self.answers.hit(question, ts);
        let source = self.sources.hit(&p.src);
        if cacheable {
            self.cacheable += 1;
            self.totals.cacheable += 1;
            source.extra.cacheable += 1;
        }
        self.count_second(ts, cacheable);
        let key = Key {
            client: p.src,
            cport: p.sport,
            server: p.dst,
            id: p.id,
            tcp: p.tcp,
        };
        // Full: the oldest is given up rather than the table grown.
        if self.pending.insert(key, ts, &p.qname, question) {
            self.unanswered += 1;
            self.totals.unanswered += 1;
        }
    }

    /// An incoming reply received at `ts` (ns).
    pub fn response(&mut self, ts: u64, p: &DnsPacket) {
        if !p.response {
            return;
        }
        let key = Key {
            client: p.dst,
            cport: p.dport,
            server: p.src,
            id: p.id,
            tcp: p.tcp,
        };
        let Some(q) = self.pending.remove(&key) else {
            return; // a reply to a query we did not see (or already gave up on)
        };
        self.answered += 1;
        let rcode = (p.rcode & 0xf) as usize;
        self.rcodes[rcode] += 1;
        self.responses[rcode] += 1;
        let _ = self
            .latency_us
            .record(ts.saturating_sub(q.ts).max(1000) / 1000);
        let keep = match p.ttl {
            CacheTtl::Positive(t) => (t as u64 * 1_000_000_000).min(self.cfg.cache.success_cap_ns),
            CacheTtl::Negative(t) => (t as u64 * 1_000_000_000).min(self.cfg.cache.denial_cap_ns),
            CacheTtl::None => 0,
        };
        self.answers.insert(q.question, ts, ts.saturating_add(keep));
        if p.rcode == 3 {
            let name = q.qname.as_str();
            self.cfg.search.base_lens(name, &mut self.bases);
            if let Some(&first) = self.bases.first() {
                let source = self.sources.get_mut(&key.client);
                // The base this source is walking already, else the first reading.
                let base = source
                    .as_ref()
                    .and_then(|e| {
                        self.bases
                            .iter()
                            .find(|&&n| e.extra.recent.iter().any(|r| *r == name[..n]))
                    })
                    .map_or(&name[..first], |&n| &name[..n]);
                let saves = ndots2_saves(base);
                self.wasted += 1;
                self.totals.search_expansion += 1;
                self.wasted_ndots2 += saves as u64;
                if let Some(e) = source {
                    e.extra.wasted += 1;
                    e.extra.ndots2 += saves as u64;
                    // Newest last, at most 4: the buffer of the one dropped is reused.
                    let recent = &mut e.extra.recent;
                    let mut s = match recent.iter().position(|r| r == base) {
                        Some(i) => recent.remove(i),
                        None if recent.len() >= 4 => recent.remove(0),
                        None => String::new(),
                    };
                    s.clear();
                    s.push_str(base);
                    recent.push(s);
                }
            }
        }
    }

    /// Counts a query in its second of the capture clock; a second that ends is compared with
    /// the window's busiest.
    fn count_second(&mut self, ts: u64, cacheable: bool) {
        let sec = ts / 1_000_000_000;
        if sec != self.second.0 {
            self.close_second();
            self.second = (sec, 0, 0);
        }
        self.second.1 += 1;
        self.second.2 += cacheable as u64;
    }

    fn close_second(&mut self) {
        let (_, q, c) = self.second;
        if q > self.busiest.0 {
            self.busiest = (q, c);
        }
        self.second.1 = 0;
        self.second.2 = 0;
    }

    /// The running totals since start.
    pub fn totals(&self) -> DnsTotals {
        DnsTotals {
            responses: by_rcode(&self.responses),
            ..self.totals.clone()
        }
    }

    /// Gives up on queries sent before `now - timeout`.
    pub fn expire(&mut self, now: u64) {
        let n = self.pending.expire(now, self.cfg.timeout_ns);
        self.unanswered += n;
        self.totals.unanswered += n;
    }

    /// Queries pushed out of the full pending table since start (each also counted as
    /// unanswered).
    pub fn pending_evictions(&self) -> u64 {
        self.pending.evicted()
    }

    /// The window's figures up to `end` (ns), `seconds` long; starts the next window.
    pub fn cut(&mut self, end: u64, seconds: f64) -> DnsFigures {
        self.expire(end);
        self.close_second();
        let evictions = self.answers.take_evictions();
        self.totals.cache_evictions += evictions;
        let secs = seconds.max(1e-9);
        let share = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                (n as f64 / of as f64 * 1000.0).round() / 1000.0
            }
        };
        let pps = |n: u64| (n as f64 / secs * 10.0).round() / 10.0;
        let q =
            |x: f64| (self.latency_us.value_at_quantile(x) as f64 / 1000.0 * 100.0).round() / 100.0;
        let f = DnsFigures {
            queries: self.queries,
            answered: self.answered,
            unanswered: self.unanswered,
            pending: self.pending.len() as u64,
            rcodes: by_rcode(&self.rcodes),
            latency_ms: if self.latency_us.is_empty() {
                LatencyMs::default()
            } else {
                LatencyMs {
                    p50: q(0.5),
                    p99: q(0.99),
                }
            },
            search_expansion_packets: self.wasted,
            search_expansion_share: if self.queries == 0 {
                0.0
            } else {
                (self.wasted as f64 / self.queries as f64 * 1000.0).round() / 1000.0
            },
            ndots2_savings_pps: pps(self.wasted_ndots2),
            fqdn_savings_pps: pps(self.wasted),
            cacheable_queries: self.cacheable,
            cacheable_share: share(self.cacheable, self.queries),
            cache_savings_pps: pps(self.cacheable),
            // A window shorter than a second: its queries are its busiest second.
            cache_savings_peak_pps: self.busiest.1 as f64,
            cache_table_evictions: evictions,
            top_qnames: self
                .names
                .top(self.cfg.top)
                .into_iter()
                .map(|(_, e)| TopName {
                    qname: e.extra.clone(),
                    queries: e.count,
                })
                .collect(),
            top_sources: self
                .sources
                .top(self.cfg.top)
                .into_iter()
                .map(|(ip, e)| TopSource {
                    source: ip.to_string(),
                    pod: None,
                    workload: None,
                    queries: e.count,
                    pps: pps(e.count),
                    search_expansion_packets: e.extra.wasted,
                    ndots2_savings_pps: pps(e.extra.ndots2),
                    fqdn_savings_pps: pps(e.extra.wasted),
                    cacheable_queries: e.extra.cacheable,
                    cacheable_share: share(e.extra.cacheable, e.count),
                    cache_savings_pps: pps(e.extra.cacheable),
                })
                .collect(),
        };
        self.queries = 0;
        self.answered = 0;
        self.unanswered = 0;
        self.rcodes = [0; 16];
        self.latency_us.reset();
        self.wasted = 0;
        self.wasted_ndots2 = 0;
        self.cacheable = 0;
        self.busiest = (0, 0);
        self.names.clear();
        self.sources.clear();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::dns::parse::{parse, tests::*};
    use hickory_proto::op::ResponseCode;

    const MS: u64 = 1_000_000;
    const NODE: [u8; 4] = [10, 0, 0, 10];
    const DNS: [u8; 4] = [10, 0, 0, 2];

    fn q(id: u16, name: &str, port: u16) -> DnsPacket {
        parse(&udp4(
            NODE,
            port,
            DNS,
            53,
            &dns_message(id, name, false, ResponseCode::NoError),
        ))
        .unwrap()
    }
    fn r(id: u16, name: &str, port: u16, rc: ResponseCode) -> DnsPacket {
        parse(&udp4(DNS, 53, NODE, port, &dns_message(id, name, true, rc))).unwrap()
    }

    #[test]
    fn matches_times_and_gives_up() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.query(0, &q(1, "a.example.com", 1000));
        t.query(0, &q(2, "b.example.com", 1000));
        t.query(0, &q(1, "a.example.com", 1001)); // same id, other port: another query
        t.response(3 * MS, &r(1, "a.example.com", 1000, ResponseCode::NoError));
        t.response(7 * MS, &r(1, "a.example.com", 1001, ResponseCode::ServFail));
        t.response(8 * MS, &r(9, "x", 1000, ResponseCode::NoError)); // unmatched: ignored
        let f = t.cut(1000 * MS, 1.0);
        assert_eq!(
            (f.queries, f.answered, f.unanswered, f.pending),
            (3, 2, 0, 1)
        );
        assert_eq!(f.rcodes.get("NOERROR"), Some(&1));
        assert_eq!(f.rcodes.get("SERVFAIL"), Some(&1));
        assert!(
            (2.9..=3.1).contains(&f.latency_ms.p50),
            "{:?}",
            f.latency_ms
        );
        assert!(
            (6.9..=7.1).contains(&f.latency_ms.p99),
            "{:?}",
            f.latency_ms
        );
        // Five seconds on, the third query is given up in the next window.
        let f = t.cut(6000 * MS, 5.0);
        assert_eq!((f.queries, f.unanswered, f.pending), (0, 1, 0));
        assert!(
            f.rcodes.is_empty(),
            "replies are counted in their own window"
        );
        let totals = t.totals();
        let answered: Vec<(&str, u64)> = totals
            .responses
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(answered, [("NOERROR", 1), ("SERVFAIL", 1)], "since start");
        assert_eq!(t.totals().unanswered, 1);
        assert_eq!(t.totals().queries, 3);
    }

    #[test]
    fn search_walk_is_counted_as_waste() {
        let mut t = Tracker::new(TrackerConfig::default());
        let names = [
            "db.example.com.prod.svc.cluster.local",
            "db.example.com.svc.cluster.local",
            "db.example.com.cluster.local",
        ];
        let mut id = 0;
        for n in names {
            for _ in 0..2 {
                id += 1;
                t.query(0, &q(id, n, 2000 + id));
                t.response(MS, &r(id, n, 2000 + id, ResponseCode::NXDomain));
            }
        }
        id += 1;
        t.query(0, &q(id, "db.example.com", 2000 + id));
        t.response(
            MS,
            &r(id, "db.example.com", 2000 + id, ResponseCode::NoError),
        );
        // A name that is not in the zone but not a search walk either: not waste.
        t.query(0, &q(99, "nope.example.com", 3000));
        t.response(MS, &r(99, "nope.example.com", 3000, ResponseCode::NXDomain));
        let f = t.cut(2000 * MS, 2.0);
        assert_eq!(f.queries, 8);
        assert_eq!(f.search_expansion_packets, 6);
        assert_eq!(f.search_expansion_share, 0.75);
        assert_eq!(f.fqdn_savings_pps, 3.0);
        assert_eq!(f.ndots2_savings_pps, 3.0);
        assert_eq!(f.top_sources[0].source, "10.0.0.10");
        assert_eq!(f.top_sources[0].search_expansion_packets, 6);
    }

    /// Answers with TTLs 2 s (A), 60 s (capped at 30) and NXDOMAIN with a negative TTL of 60
    /// (capped at 5), asked every 1.5 s; a SERVFAIL is never cached.
    #[test]
    fn cacheable_follows_ttls_and_caps() {
        use crate::sources::dns::parse::tests::reply;
        let mut t = Tracker::new(TrackerConfig::default());
        let ok = ResponseCode::NoError;
        let mut id = 0u16;
        let mut ask =
            |t: &mut Tracker, at: u64, name: &str, port: u16, rc, ans: &[(&str, u32)], soa| {
                id += 1;
                t.query(at, &q(id, name, port));
                let msg = reply(id, name, rc, ans, soa);
                let p = parse(&udp4(DNS, 53, NODE, port, &msg)).unwrap();
                t.response(at + MS, &p);
            };
        for k in 0..20u64 {
            let at = k * 1500 * MS;
            ask(
                &mut t,
                at,
                "two.example.internal",
                1000,
                ok,
                &[("two.example.internal.", 2)],
                None,
            );
            ask(
                &mut t,
                at,
                "sixty.example.internal",
                1000,
                ok,
                &[("sixty.example.internal.", 60)],
                None,
            );
            ask(
                &mut t,
                at,
                "nx.example.internal",
                1000,
                ResponseCode::NXDomain,
                &[],
                Some((60, 60)),
            );
            ask(
                &mut t,
                at,
                "x.broken.internal",
                1000,
                ResponseCode::ServFail,
                &[],
                None,
            );
        }
        let f = t.cut(30_000 * MS, 30.0);
        // Asked at 0, 1.5, 3, …, 28.5 s. TTL 2: miss, hit, miss, hit… → 10 hits. TTL 60 capped
        // at 30: one miss → 19. Negative 60 capped at 5: miss at 0, 6, 12, 18, 24 → 15.
        assert_eq!(f.queries, 80);
        assert_eq!(f.cacheable_queries, 10 + 19 + 15);
        assert_eq!(f.cacheable_share, 0.55);
        assert_eq!(f.cache_savings_pps, 1.5); // 44 / 30 s, rounded to 0.1
        assert_eq!(f.top_sources[0].cacheable_queries, 44);
        assert_eq!(f.top_sources[0].cacheable_share, 0.55);
        // The busiest second (four queries each): the first such, at 0 s: nothing cached yet.
        assert_eq!(f.cache_savings_peak_pps, 0.0);
        assert_eq!(f.cache_table_evictions, 0);
        assert_eq!(t.totals().cacheable, 44);
        // The next window keeps the table: the 60-s name is still cached.
        ask(
            &mut t,
            30_500 * MS,
            "sixty.example.internal",
            1000,
            ok,
            &[("sixty.example.internal.", 60)],
            None,
        );
        ask(
            &mut t,
            30_600 * MS,
            "sixty.example.internal",
            1000,
            ok,
            &[("sixty.example.internal.", 60)],
            None,
        );
        let f = t.cut(31_000 * MS, 1.0);
        assert_eq!((f.queries, f.cacheable_queries), (2, 1));
        assert_eq!(f.cache_savings_peak_pps, 1.0);
    }

    #[test]
    fn pending_is_bounded() {
        let cfg = TrackerConfig {
            max_pending: 100,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        for i in 0..1000u16 {
            t.query(i as u64, &q(i, "a.b", 5000));
        }
        let f = t.cut(1000, 1.0);
        assert_eq!(f.pending, 100);
        assert_eq!(f.unanswered, 900);
    }

    /// The pending table's bound through the tracker: what is pushed out is counted as an
    /// eviction and as unanswered; answered and expired queries are not evictions.
    #[test]
    fn pending_evictions_are_counted() {
        let mut t = Tracker::new(TrackerConfig {
            max_pending: 10,
            ..TrackerConfig::default()
        });
        for i in 0..10u16 {
            t.query(0, &q(i, "a.b", 6000));
        }
        t.response(MS, &r(0, "a.b", 6000, ResponseCode::NoError));
        t.query(MS, &q(10, "a.b", 6000)); // the freed slot: no eviction
        assert_eq!(t.pending_evictions(), 0);
        for i in 11..15u16 {
            t.query(MS, &q(i, "a.b", 6000));
        }
        assert_eq!(t.pending_evictions(), 4);
        // 1..=4 were pushed out; 5 is still there to be answered.
        t.response(2 * MS, &r(5, "a.b", 6000, ResponseCode::NoError));
        t.response(2 * MS, &r(1, "a.b", 6000, ResponseCode::NoError));
        let f = t.cut(3 * MS, 1.0);
        assert_eq!(
            (f.queries, f.answered, f.unanswered, f.pending),
            (15, 2, 4, 9)
        );
        // The timeout gives the rest up: unanswered, not evictions.
        let f = t.cut(10_000 * MS, 1.0);
        assert_eq!((f.unanswered, f.pending), (9, 0));
        assert_eq!(t.pending_evictions(), 4);
        assert_eq!(t.totals().unanswered, 13);
    }
}
