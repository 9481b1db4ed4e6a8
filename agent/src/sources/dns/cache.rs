//! What a node-local DNS cache in front of the resolver would have answered: a fixed table of
//! the answers seen recently, keyed by a hash of the question (qname, qtype, class), each kept
//! for min(its TTL, the cap NodeLocal DNSCache's Corefile sets: `cache 30` for success, 5 s
//! for denial). A query whose question has a live entry is *cacheable*: the cache would have
//! answered it and the packet would not have left the node.
//!
//! Only a miss fills the table (as in a cache: a hit does not go upstream, so its answer
//! does not refresh the entry). Memory is fixed: `entries` slots of 16 bytes, 4-way set
//! associative. When a set is full, the entry closest to expiring is pushed out and counted
//! (`evictions`): a later query for that question then counts as a miss, so a full table
//! makes the cacheable share an undercount, never an overcount. Two questions with one 64-bit
//! hash would share an entry (about one pair in 10^10 at 10^5 live questions).

use serde::{Deserialize, Serialize};

/// `[dns]` in the agent's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Longest a cache keeps a successful answer (NodeLocal DNSCache: `cache 30`).
    pub cache_success_ttl_cap: String,
    /// Longest a cache keeps NXDOMAIN/NODATA (NodeLocal DNSCache: `denial … 5`).
    pub cache_denial_ttl_cap: String,
    /// Slots of the answer table per interface (16 bytes each; rounded up to a power of two).
    /// 32 768 (512 KiB) holds every answer an ENI can fetch within 30 s at its 1024/s limit.
    pub cache_answer_table_entries: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cache_success_ttl_cap: "30s".into(),
            cache_denial_ttl_cap: "5s".into(),
            cache_answer_table_entries: 32_768,
        }
    }
}

impl DnsConfig {
    /// The checked settings, or every problem.
    pub fn settings(&self) -> Result<CacheConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut cap = |what: &str, text: &str| match crate::time::parse_duration(what, text) {
            Ok(d) => d.as_nanos().min(u64::MAX as u128) as u64,
            Err(e) => {
                errors.push(e.to_string());
                0
            }
        };
        let success_cap_ns = cap("dns.cache_success_ttl_cap", &self.cache_success_ttl_cap);
        let denial_cap_ns = cap("dns.cache_denial_ttl_cap", &self.cache_denial_ttl_cap);
        let entries = self.cache_answer_table_entries;
        if !(WAYS..=1 << 24).contains(&entries) {
            errors.push(format!(
                "invalid dns.cache_answer_table_entries {entries}: between {WAYS} and {}",
                1 << 24
            ));
        }
        if errors.is_empty() {
            Ok(CacheConfig {
                success_cap_ns,
                denial_cap_ns,
                entries,
            })
        } else {
            Err(errors)
        }
    }
}

/// The answer table's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub success_cap_ns: u64,
    pub denial_cap_ns: u64,
    pub entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        DnsConfig::default().settings().expect("defaults are valid")
    }
}

const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The question's hash (never 0: 0 is an empty slot).
    key: u64,
    /// When the cached answer runs out (ns, capture clock).
    expires: u64,
}

#[derive(Debug)]
pub struct AnswerTable {
    slots: Vec<Slot>,
    /// Sets - 1 (sets are a power of two).
    mask: usize,
    /// Live entries pushed out by a newer one since the last `take_evictions`.
    evictions: u64,
}

/// The answer table's key of a question: the name's 64-bit hash (the tracker's seeded one,
/// already made for the name sketch, so the name's bytes are hashed once per query) mixed with
/// the type and the class by a SplitMix64 finalizer, which spreads it over the table's sets.
/// Never 0.
pub fn question_key(name_hash: u64, qtype: u16, qclass: u16) -> u64 {
    let mut h =
        name_hash ^ ((qtype as u64) << 16 | qclass as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h | 1
}

/// [`question_key`] with the name hashed by a fixed-seed ahash: for tests and benchmarks,
/// which need no tracker.
pub fn question_hash(qname: &str, qtype: u16, qclass: u16) -> u64 {
    let names = ahash::RandomState::with_seeds(1, 2, 3, 4);
    question_key(names.hash_one(qname.as_bytes()), qtype, qclass)
}

impl AnswerTable {
    pub fn new(entries: usize) -> Self {
        let sets = (entries.max(WAYS) / WAYS).next_power_of_two();
        AnswerTable {
            slots: vec![Slot::default(); sets * WAYS],
            mask: sets - 1,
            evictions: 0,
        }
    }

    fn set(&mut self, key: u64) -> &mut [Slot] {
        let s = (key as usize & self.mask) * WAYS;
        &mut self.slots[s..s + WAYS]
    }

    /// Whether a cache would answer `key` at `now`.
    pub fn hit(&mut self, key: u64, now: u64) -> bool {
        self.set(key)
            .iter()
            .any(|s| s.key == key && s.expires > now)
    }

    /// Caches `key` from `now` until `expires`, unless a live entry has it already (only a
    /// miss fills a cache). Pushes out the entry closest to expiring when the set is full.
    pub fn insert(&mut self, key: u64, now: u64, expires: u64) {
        if expires <= now {
            return;
        }
        let set = self.set(key);
        if set.iter().any(|s| s.key == key && s.expires > now) {
            return;
        }
        let (i, live) = set
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Prefer this key's stale slot, then an empty or expired one, then the oldest.
                let rank = if s.key == key {
                    (0, 0)
                } else if s.key == 0 || s.expires <= now {
                    (1, 0)
                } else {
                    (2, s.expires)
                };
                (i, rank)
            })
            .min_by_key(|&(_, r)| r)
            .map(|(i, r)| (i, r.0 == 2))
            .expect("a set has slots");
        set[i] = Slot { key, expires };
        self.evictions += live as u64;
    }

    /// Evictions since the last call.
    pub fn take_evictions(&mut self) -> u64 {
        std::mem::take(&mut self.evictions)
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn hits_until_expiry_and_misses_refill() {
        let mut t = AnswerTable::new(64);
        let k = question_hash("a.example.internal", 1, 1);
        assert_ne!(k, question_hash("a.example.internal", 28, 1));
        assert!(!t.hit(k, 0));
        t.insert(k, 0, 2 * S);
        assert!(t.hit(k, S) && t.hit(k, 2 * S - 1) && !t.hit(k, 2 * S));
        // A reply to a hit does not extend the entry; after expiry a miss refills it.
        t.insert(k, S, 10 * S);
        assert!(!t.hit(k, 2 * S));
        t.insert(k, 2 * S, 4 * S);
        assert!(t.hit(k, 3 * S));
        // TTL 0: nothing cached.
        let z = question_hash("z", 1, 1);
        t.insert(z, 5 * S, 5 * S);
        assert!(!t.hit(z, 5 * S));
        assert_eq!(t.take_evictions(), 0);
    }

    #[test]
    fn full_table_evicts_and_counts() {
        let mut t = AnswerTable::new(4); // one set of 4
        assert_eq!(t.capacity(), 4);
        let keys: Vec<u64> = (0..6)
            .map(|n| question_hash(&format!("n{n}"), 1, 1))
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            t.insert(k, 0, (10 + i as u64) * S);
        }
        // Two live entries were pushed out: the two closest to expiring (n0, n1).
        assert_eq!(t.take_evictions(), 2);
        assert!(!t.hit(keys[0], S) && !t.hit(keys[1], S));
        assert!(keys[2..].iter().all(|&k| t.hit(k, S)));
        // Expired entries are reused without counting.
        t.insert(keys[0], 20 * S, 30 * S);
        assert_eq!(t.take_evictions(), 0);
    }

    #[test]
    fn config_checks() {
        let c = DnsConfig::default().settings().unwrap();
        assert_eq!((c.success_cap_ns, c.denial_cap_ns), (30 * S, 5 * S));
        let bad = DnsConfig {
            cache_success_ttl_cap: "soon".into(),
            cache_answer_table_entries: 1,
            ..DnsConfig::default()
        };
        assert_eq!(bad.settings().unwrap_err().len(), 2);
    }
}
