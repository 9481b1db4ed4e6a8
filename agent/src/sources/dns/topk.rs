//! Space-Saving top-k (Metwally et al.): the heaviest keys of a stream in fixed memory.
//! At most `capacity` keys are held whatever the number of distinct keys; a key's count is an
//! over-estimate by at most its `error`, and any key with more than N/capacity hits is held.

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
pub struct SpaceSaving<K, V = ()> {
    capacity: usize,
    entries: HashMap<K, Entry<V>>,
}

impl<K: Hash + Eq + Clone, V: Default> SpaceSaving<K, V> {
    pub fn new(capacity: usize) -> Self {
        SpaceSaving {
            capacity: capacity.max(1),
            entries: HashMap::with_capacity(capacity.max(1) + 1),
        }
    }

    /// Counts one hit of `key` and returns its entry, for the caller's extra figures.
    pub fn hit(&mut self, key: &K) -> &mut Entry<V> {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.capacity {
                let (victim, min) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.count)
                    .map(|(k, e)| (k.clone(), e.count))
                    .expect("full, so not empty");
                self.entries.remove(&victim);
                self.entries.insert(
                    key.clone(),
                    Entry {
                        count: min,
                        error: min,
                        extra: V::default(),
                    },
                );
            } else {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        count: 0,
                        error: 0,
                        extra: V::default(),
                    },
                );
            }
        }
        let e = self.entries.get_mut(key).expect("just inserted");
        e.count += 1;
        e
    }

    /// The entry for `key`, if held.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Entry<V>> {
        self.entries.get_mut(key)
    }

    /// The `n` heaviest keys, heaviest first.
    pub fn top(&self, n: usize) -> Vec<(&K, &Entry<V>)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.count));
        v.truncate(n);
        v
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
