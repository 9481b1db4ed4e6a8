//! Space-Saving top-k (Metwally et al.): the heaviest keys of a stream in fixed memory.
//! At most `capacity` keys are held whatever the number of distinct keys; a key's count is an
//! over-estimate by at most its `error`, and any key with more than N/capacity hits is held.
//!
//! The entries sit in a min-heap by count, so a new key replaces the least counted one in
//! O(log capacity) rather than a scan of all of them (with many distinct names, nearly every
//! query brings a new key). The replaced entry's slot, and its `extra`, are reused.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone)]
pub struct Entry<V> {
    pub count: u64,
    /// Upper bound of the over-count (the count of the key this one replaced).
    pub error: u64,
    /// Per-key extra figures; reset when the key replaces another.
    pub extra: V,
}

#[derive(Debug, Clone)]
struct Slot<K, V> {
    key: K,
    entry: Entry<V>,
    /// Where this slot is in `heap`.
    at: u32,
}

#[derive(Debug, Clone)]
pub struct SpaceSaving<K, V = ()> {
    capacity: usize,
    /// Key → slot. Keyed with a per-sketch random seed: the keys are the pods' to choose.
    index: HashMap<K, u32, ahash::RandomState>,
    slots: Vec<Slot<K, V>>,
    /// Slots by count, least first (a binary min-heap).
    heap: Vec<u32>,
}

impl<K: Hash + Eq + Clone, V: Default> SpaceSaving<K, V> {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        SpaceSaving {
            capacity,
            index: HashMap::with_capacity_and_hasher(capacity.min(4096), Default::default()),
            slots: Vec::new(),
            heap: Vec::new(),
        }
    }

    /// Counts one hit of `key` and returns its entry, for the caller's extra figures.
    pub fn hit(&mut self, key: &K) -> &mut Entry<V> {
        self.hit_with(key, |v| *v = V::default())
    }

    /// [`Self::hit`], where a key that enters gets its `extra` from `enter`, which is handed
    /// the replaced key's (or a default one) to reset and reuse.
    pub fn hit_with(&mut self, key: &K, enter: impl FnOnce(&mut V)) -> &mut Entry<V> {
        let i = match self.index.get(key) {
            Some(&i) => {
                self.slots[i as usize].entry.count += 1;
                i
            }
            None if self.slots.len() < self.capacity => {
                let i = self.slots.len() as u32;
                let mut extra = V::default();
                enter(&mut extra);
                self.slots.push(Slot {
                    key: key.clone(),
                    entry: Entry {
                        count: 1,
                        error: 0,
                        extra,
                    },
                    at: self.heap.len() as u32,
                });
                self.heap.push(i);
                self.index.insert(key.clone(), i);
                // Count 1 is the least there is: it rises to the top.
                self.sift_up(self.heap.len() - 1);
                return &mut self.slots[i as usize].entry;
            }
            None => {
                let i = self.heap[0];
                let s = &mut self.slots[i as usize];
                self.index.remove(&s.key);
                s.key = key.clone();
                let min = s.entry.count;
                s.entry.count = min + 1;
                s.entry.error = min;
                enter(&mut s.entry.extra);
                self.index.insert(key.clone(), i);
                i
            }
        };
        // Its count grew by one: it can only sink.
        self.sift_down(self.slots[i as usize].at as usize);
        &mut self.slots[i as usize].entry
    }

    /// The entry for `key`, if held.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Entry<V>> {
        let i = *self.index.get(key)?;
        Some(&mut self.slots[i as usize].entry)
    }

    /// The `n` heaviest keys, heaviest first.
    pub fn top(&self, n: usize) -> Vec<(&K, &Entry<V>)> {
        let mut v: Vec<_> = self.slots.iter().map(|s| (&s.key, &s.entry)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.count));
        v.truncate(n);
        v
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.heap.clear();
    }

    fn count_at(&self, h: usize) -> u64 {
        self.slots[self.heap[h] as usize].entry.count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a] as usize].at = a as u32;
        self.slots[self.heap[b] as usize].at = b as u32;
    }

    fn sift_up(&mut self, mut h: usize) {
        while h > 0 {
            let parent = (h - 1) / 2;
            if self.count_at(parent) <= self.count_at(h) {
                break;
            }
            self.swap(parent, h);
            h = parent;
        }
    }

    fn sift_down(&mut self, mut h: usize) {
        loop {
            let (l, r) = (2 * h + 1, 2 * h + 2);
            let mut least = h;
            if l < self.heap.len() && self.count_at(l) < self.count_at(least) {
                least = l;
            }
            if r < self.heap.len() && self.count_at(r) < self.count_at(least) {
                least = r;
            }
            if least == h {
                return;
            }
            self.swap(h, least);
            h = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_heavy_hitters_among_a_million_distinct_names_in_fixed_memory() {
        let mut s: SpaceSaving<String> = SpaceSaving::new(64);
        for i in 0..1_000_000u32 {
            s.hit(&format!("name{i}.example.com"));
            if i % 10 == 0 {
                s.hit(&"heavy.example.com".to_string());
            }
            if i % 20 == 0 {
                s.hit(&"second.example.com".to_string());
            }
            assert!(s.len() <= 64);
        }
        let top = s.top(2);
        assert_eq!(top[0].0, "heavy.example.com");
        assert_eq!(top[1].0, "second.example.com");
        // True counts 100 000 and 50 000; over-estimates bounded by the recorded error.
        assert!(top[0].1.count >= 100_000 && top[0].1.count - top[0].1.error <= 100_000);
        assert!(top[1].1.count >= 50_000 && top[1].1.count - top[1].1.error <= 50_000);
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut s: SpaceSaving<&str, u64> = SpaceSaving::new(8);
        for (k, n) in [("a", 5), ("b", 3), ("c", 1)] {
            for _ in 0..n {
                s.hit(&k).extra += 2;
            }
        }
        let top: Vec<_> = s
            .top(3)
            .iter()
            .map(|(k, e)| (**k, e.count, e.extra))
            .collect();
        assert_eq!(top, [("a", 5, 10), ("b", 3, 6), ("c", 1, 2)]);
    }

    #[test]
    fn a_new_key_reuses_the_replaced_extra() {
        let mut s: SpaceSaving<u64, String> = SpaceSaving::new(1);
        s.hit_with(&1, |n| n.push_str("one"));
        let e = s.hit_with(&2, |n| {
            assert_eq!(n, "one"); // the replaced key's, handed over to reuse
            n.clear();
            n.push_str("two");
        });
        assert_eq!((e.count, e.error, e.extra.as_str()), (2, 1, "two"));
        // A held key's extra is left alone.
        assert_eq!(s.hit_with(&2, |_| unreachable!()).count, 3);
    }

    proptest! {
        /// Whatever the stream: at most `capacity` keys; the counts sum to the hits (each
        /// hit adds one, a replacement takes the least count plus one); every held key's
        /// count within [true, true + error] with error ≤ N/capacity; every key with more
        /// than N/capacity hits held.
        #[test]
        fn keeps_the_guarantees(
            cap in 1usize..12,
            stream in proptest::collection::vec(0u8..40, 0..400),
        ) {
            let mut s: SpaceSaving<u8> = SpaceSaving::new(cap);
            let mut truth = [0u64; 40];
            for &k in &stream {
                s.hit(&k);
                truth[k as usize] += 1;
                prop_assert!(s.len() <= cap);
            }
            let n = stream.len() as u64;
            let held = s.top(cap);
            prop_assert_eq!(held.iter().map(|(_, e)| e.count).sum::<u64>(), n);
            for (k, e) in &held {
                let t = truth[**k as usize];
                prop_assert!(e.count >= t && e.count - e.error <= t);
                prop_assert!(e.error * cap as u64 <= n);
            }
            for (k, &t) in truth.iter().enumerate() {
                if t * cap as u64 > n {
                    prop_assert!(held.iter().any(|(h, _)| **h as usize == k), "{} ({} of {}) not held", k, t, n);
                }
            }
            // Heaviest first.
            prop_assert!(held.windows(2).all(|w| w[0].1.count >= w[1].1.count));
        }
    }
}
