//! Queries awaiting their reply, matched by id + 5-tuple (client address and port, server
//! address, transport; the server's port is 53). At most `capacity` entries; the slots, and the
//! name buffer in each, are reused, so once the table has grown to its working size a query
//! costs no allocation. Entries are kept in arrival order (a list threaded through the slots):
//! the oldest is the first the timeout gives up, and the one pushed out when the table is full
//! (counted in [`PendingTable::evicted`]).

use std::collections::HashMap;
use std::net::IpAddr;

/// What matches a reply to its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub client: IpAddr,
    pub cport: u16,
    pub server: IpAddr,
    pub id: u16,
    pub tcp: bool,
}

/// Every field, packed into two or three words: the derived hash fed the hasher nine pieces
/// (each address as a discriminant, a length and its bytes), a tenth of the capture thread.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let ports = (self.cport as u64) << 16 | self.id as u64 | (self.tcp as u64) << 32;
        match (self.client, self.server) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                h.write_u64((u32::from(c) as u64) << 32 | u32::from(s) as u64);
                h.write_u64(ports);
            }
            (c, s) => {
                h.write_u128(bits(c));
                h.write_u128(bits(s));
                h.write_u64(ports | 1 << 33);
            }
        }
    }
}

/// An address as 128 bits (IPv4 mapped into IPv6, as the family is hashed beside it).
fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

const NIL: u32 = u32::MAX;

/// A freed slot keeps its name buffer up to this size: a burst of hostile names (every byte
/// escaped, up to 1 KiB each) must not stay held in every slot after they are answered.
const KEEP_NAME: usize = 256;

/// One query awaiting its reply.
#[derive(Debug)]
pub struct Pending {
    /// When it was sent (ns, capture clock).
    pub ts: u64,
    /// The question's hash, for the answer table.
    pub question: u64,
    /// Its name, for the search-walk figures.
    pub qname: String,
    key: Key,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub struct PendingTable {
    capacity: usize,
    slots: Vec<Pending>,
    /// Keyed with a per-table random seed: the ids and ports are the pods' to choose.
    index: HashMap<Key, u32, ahash::RandomState>,
    free: Vec<u32>,
    /// Oldest and newest live entry.
    head: u32,
    tail: u32,
    /// When the oldest was sent: checked on every query, and its slot is the coldest there is
    /// (an unanswered query holds it for the whole timeout).
    head_ts: u64,
    evicted: u64,
    /// The slot `remove` freed last: its name is trimmed on the next call, once read.
    freed: u32,
}

impl PendingTable {
    pub fn new(capacity: usize) -> Self {
        PendingTable {
            capacity: capacity.clamp(1, NIL as usize - 1),
            slots: Vec::new(),
            index: HashMap::default(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            head_ts: 0,
            evicted: 0,
            freed: NIL,
        }
    }

    /// Queries awaiting a reply.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries pushed out by a newer query because the table was full, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Adds a query sent at `ts`. A query with the key of a pending one replaces it (the
    /// client reused its id and port). When the table is full the oldest entry is pushed out:
    /// the return is whether that happened.
    pub fn insert(&mut self, key: Key, ts: u64, qname: &str, question: u64) -> bool {
        use std::collections::hash_map::Entry;
        self.trim_freed();
        // Full and a new key: the oldest goes first, and its slot is the one reused below.
        let evicted = self.index.len() >= self.capacity && !self.index.contains_key(&key);
        if evicted {
            let i = self.head; // full, so not empty
            self.unlink(i);
            self.index.remove(&self.slots[i as usize].key);
            self.free.push(i);
            self.evicted += 1;
        }
        // One hash of the key for the lookup and the insert.
        let (i, pending) = match self.index.entry(key) {
            Entry::Occupied(e) => (*e.get(), true),
            Entry::Vacant(v) => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(Pending {
                            ts: 0,
                            question: 0,
                            qname: String::new(),
                            key,
                            prev: NIL,
                            next: NIL,
                        });
                        (self.slots.len() - 1) as u32
                    }
                };
                v.insert(i);
                (i, false)
            }
        };
        if pending {
            self.unlink(i);
        }
        let s = &mut self.slots[i as usize];
        s.key = key;
        s.ts = ts;
        s.question = question;
        if s.qname.capacity() > KEEP_NAME && qname.len() <= KEEP_NAME {
            s.qname = String::new();
        }
        s.qname.clear();
        s.qname.push_str(qname);
        self.push_back(i);
        evicted
    }

    /// Takes the query `key` answers, if pending. The entry stays readable until the next
    /// insert (its slot is reused then).
    pub fn remove(&mut self, key: &Key) -> Option<&Pending> {
        self.trim_freed();
        let i = self.index.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        self.freed = i;
        Some(&self.slots[i as usize])
    }

    /// Gives up on queries sent at or before `now - timeout`; how many.
    pub fn expire(&mut self, now: u64, timeout: u64) -> u64 {
        self.trim_freed();
        let mut n = 0;
        while self.head != NIL && self.head_ts.saturating_add(timeout) <= now {
            let i = self.head;
            let s = &self.slots[i as usize];
            self.index.remove(&s.key);
            self.unlink(i);
            self.free.push(i);
            self.freed = i;
            self.trim_freed();
            n += 1;
        }
        n
    }

    fn trim_freed(&mut self) {
        if let Some(s) = self.slots.get_mut(self.freed as usize) {
            if s.qname.capacity() > KEEP_NAME {
                s.qname = String::new();
            }
        }
        self.freed = NIL;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.set_head(next),
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_back(&mut self, i: u32) {
        let tail = self.tail;
        {
            let s = &mut self.slots[i as usize];
            s.prev = tail;
            s.next = NIL;
        }
        match tail {
            NIL => self.set_head(i),
            t => self.slots[t as usize].next = i,
        }
        self.tail = i;
    }

    fn set_head(&mut self, i: u32) {
        self.head = i;
        if i != NIL {
            self.head_ts = self.slots[i as usize].ts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(port: u16, id: u16) -> Key {
        Key {
            client: [10, 0, 0, 10].into(),
            cport: port,
            server: [10, 0, 0, 2].into(),
            id,
            tcp: false,
        }
    }

    /// The packed hash tells every field apart, in both families and mixed ones: each of
    /// these keys is found, and only by itself.
    #[test]
    fn every_field_and_family_keys_its_own_query() {
        let v6: IpAddr = "fd00::10".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.10".parse().unwrap();
        let base = key(1000, 7);
        let mut keys = vec![base];
        for f in 0..8 {
            let mut k = base;
            match f {
                0 => k.client = [10, 0, 0, 11].into(),
                1 => k.cport = 1001,
                2 => k.server = [10, 0, 0, 3].into(),
                3 => k.id = 8,
                4 => k.tcp = true,
                5 => k.client = v6,
                6 => (k.client, k.server) = (v6, "fd00:ec2::253".parse().unwrap()),
                _ => k.client = mapped, // not the IPv4 client, though its bits are
            }
            keys.push(k);
        }
        let mut t = PendingTable::new(16);
        for (i, k) in keys.iter().enumerate() {
            assert!(!t.insert(*k, i as u64, "n", i as u64));
        }
        assert_eq!(t.len(), keys.len());
        for (i, k) in keys.iter().enumerate().rev() {
            assert_eq!(t.remove(k).map(|p| p.question), Some(i as u64), "{k:?}");
            assert!(t.remove(k).is_none());
        }
    }

    #[test]
    fn bounded_oldest_evicted_and_counted() {
        let mut t = PendingTable::new(3);
        for i in 0..3u16 {
            assert!(!t.insert(key(1000, i), i as u64, "a.b", 7));
        }
        // Full: each new query pushes out the oldest, and it is counted.
        assert!(t.insert(key(1000, 3), 3, "c.d", 8));
        assert!(t.insert(key(1000, 4), 4, "e.f", 9));
        assert_eq!((t.len(), t.evicted()), (3, 2));
        assert!(t.remove(&key(1000, 0)).is_none() && t.remove(&key(1000, 1)).is_none());
        let q = t.remove(&key(1000, 3)).unwrap();
        assert_eq!((q.ts, q.qname.as_str(), q.question), (3, "c.d", 8));
        // A freed slot is reused: no eviction until full again.
        assert!(!t.insert(key(1000, 5), 5, "g.h", 1));
        assert!(t.insert(key(1000, 6), 6, "i.j", 1));
        assert_eq!(t.evicted(), 3);
        // The one pushed out was the oldest left (sent at 2), not the slot freed last.
        assert!(t.remove(&key(1000, 2)).is_none());
        for (id, ts) in [(4, 4), (5, 5), (6, 6)] {
            assert_eq!(t.remove(&key(1000, id)).map(|p| p.ts), Some(ts));
        }
        assert!(t.is_empty());
        assert!(t.slots.len() <= 3);
    }

    #[test]
    fn same_key_replaces_and_moves_to_the_back() {
        let mut t = PendingTable::new(2);
        t.insert(key(1, 1), 0, "old.name", 1);
        t.insert(key(1, 2), 1, "b", 2);
        // The client reuses id and port: one entry, the newer query's, and now the newest.
        assert!(!t.insert(key(1, 1), 2, "new.name", 3));
        assert_eq!(t.len(), 2);
        assert!(t.insert(key(1, 3), 3, "c", 4)); // pushes out (1, 2), not (1, 1)
        let q = t.remove(&key(1, 1)).unwrap();
        assert_eq!((q.ts, q.qname.as_str(), q.question), (2, "new.name", 3));
        assert!(t.remove(&key(1, 2)).is_none());
        // Other transport, other server, other port: other queries.
        let mut k = key(1, 3);
        k.tcp = true;
        assert!(t.remove(&k).is_none());
        k.tcp = false;
        k.server = [10, 0, 0, 3].into();
        assert!(t.remove(&k).is_none());
        assert!(t.remove(&key(1, 3)).is_some());
    }

    #[test]
    fn expires_in_arrival_order() {
        let mut t = PendingTable::new(100);
        for i in 0..10u16 {
            t.insert(key(2000 + i, i), i as u64 * 10, "x", 0);
        }
        t.remove(&key(2003, 3));
        // Timeout 50 at 95: sent at or before 45 are given up (0, 10, 20, 40; 30 was answered).
        assert_eq!(t.expire(95, 50), 4);
        assert_eq!(t.len(), 5);
        assert!(t.remove(&key(2004, 4)).is_none());
        assert!(t.remove(&key(2005, 5)).is_some());
        assert_eq!(t.expire(u64::MAX, 50), 4);
        assert!(t.is_empty());
        assert_eq!(t.evicted(), 0);
        // Emptied and refilled: the slots are reused, the list is sound.
        for i in 0..10u16 {
            t.insert(key(3000, i), 1000 + i as u64, "y", 0);
        }
        assert_eq!(t.slots.len(), 10);
        assert_eq!(t.expire(1004 + 50, 50), 5);
        assert_eq!(t.len(), 5);
    }

    /// Freed slots do not keep long (hostile) names' buffers; the one just removed stays
    /// readable until the next call.
    #[test]
    fn freed_slots_give_long_names_back() {
        let mut t = PendingTable::new(4);
        let long = "\\377".repeat(250); // 1 000 bytes: a name of escaped bytes
        for i in 0..3 {
            t.insert(key(1, i), i as u64, &long, 0);
        }
        assert_eq!(t.remove(&key(1, 0)).unwrap().qname, long);
        assert_eq!(t.expire(1, 0), 1); // sent at 1: given up
        t.insert(key(1, 3), 3, "short.name", 0);
        // The removed and the expired slot: trimmed (one of them now reused for the short
        // name); the live long one keeps its name.
        let caps: Vec<usize> = t.slots.iter().map(|s| s.qname.capacity()).collect();
        assert_eq!(
            caps.iter().filter(|&&c| c > KEEP_NAME).count(),
            1,
            "{caps:?}"
        );
        assert_eq!(t.remove(&key(1, 2)).unwrap().qname, long);
        assert_eq!(t.remove(&key(1, 3)).unwrap().qname, "short.name");
        assert!(t.slots.iter().all(|s| s.qname.capacity() <= KEEP_NAME));
    }

    /// The tracker's matching before this table: a map and an arrival queue whose entries go
    /// stale when answered or replaced.
    struct Model {
        cap: usize,
        pending: HashMap<Key, (u64, String)>,
        order: std::collections::VecDeque<(u64, Key)>,
        evicted: u64,
    }

    impl Model {
        fn insert(&mut self, key: Key, ts: u64, name: &str) {
            if self.pending.len() >= self.cap {
                while let Some((t, k)) = self.order.pop_front() {
                    if self.pending.get(&k).is_some_and(|p| p.0 == t) {
                        self.pending.remove(&k);
                        self.evicted += 1;
                        break;
                    }
                }
            }
            self.order.push_back((ts, key));
            self.pending.insert(key, (ts, name.to_string()));
        }

        fn expire(&mut self, now: u64, timeout: u64) -> u64 {
            let mut n = 0;
            while let Some(&(t, k)) = self.order.front() {
                if t.saturating_add(timeout) > now {
                    break;
                }
                self.order.pop_front();
                if self.pending.get(&k).is_some_and(|p| p.0 == t) {
                    self.pending.remove(&k);
                    n += 1;
                }
            }
            n
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Query(u16),
        Reply(u16),
        Tick(u64),
    }

    proptest! {
        /// Random queries (few distinct keys, so ids get reused), replies and clock steps
        /// against the model: the same matches, give-ups, evictions and size, always within
        /// the capacity. (One case is left out on purpose: a query reusing a pending query's
        /// key while the table is full. The model pushed out the oldest and then replaced the
        /// entry, losing one for nothing; the table just replaces it.)
        #[test]
        fn agrees_with_the_map_and_queue(
            cap in 1usize..8,
            ops in proptest::collection::vec(
                prop_oneof![
                    3 => (0u16..12).prop_map(Op::Query),
                    2 => (0u16..12).prop_map(Op::Reply),
                    1 => (0u64..40).prop_map(Op::Tick),
                ],
                0..200,
            ),
        ) {
            let timeout = 50;
            let mut t = PendingTable::new(cap);
            let mut m = Model { cap, pending: HashMap::new(), order: Default::default(), evicted: 0 };
            let mut now = 0;
            for op in ops {
                now += 1; // strictly increasing send times
                match op {
                    Op::Query(k) => {
                        let key = key(k, k);
                        if m.pending.len() >= cap && m.pending.contains_key(&key) {
                            continue;
                        }
                        let name = format!("n{now}.example");
                        m.insert(key, now, &name);
                        t.insert(key, now, &name, now);
                    }
                    Op::Reply(k) => {
                        let key = key(k, k);
                        let want = m.pending.remove(&key);
                        let got = t.remove(&key).map(|p| (p.ts, p.qname.clone()));
                        prop_assert_eq!(got, want);
                    }
                    Op::Tick(d) => {
                        now += d;
                        prop_assert_eq!(t.expire(now, timeout), m.expire(now, timeout));
                    }
                }
                prop_assert_eq!(t.len(), m.pending.len());
                prop_assert_eq!(t.evicted(), m.evicted);
                prop_assert!(t.len() <= cap && t.slots.len() <= cap);
            }
        }
    }
}
