//! Sharing of equal values among the pods of a cluster: 150 000 pods carry a few thousand
//! distinct label sets, namespaces, node names and scheduling constraints, so each is held once
//! behind an `Arc`. Values no pod holds any more are dropped by [`Interner::sweep`].

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// One table of shared values.
#[derive(Debug)]
pub struct Table<T: ?Sized + Eq + Hash>(HashSet<Arc<T>>);

impl<T: ?Sized + Eq + Hash> Default for Table<T> {
    fn default() -> Self {
        Table(HashSet::new())
    }
}

impl<T: ?Sized + Eq + Hash> Table<T> {
    /// The shared copy of `v`, made from `make` when there is none yet.
    pub fn get(&mut self, v: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(a) = self.0.get(v) {
            return a.clone();
        }
        let a = make();
        self.0.insert(a.clone());
        a
    }

    /// Forgets values only this table holds.
    pub fn sweep(&mut self) {
        self.0.retain(|a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Table<str> {
    pub fn text(&mut self, s: &str) -> Arc<str> {
        self.get(s, || Arc::from(s))
    }
}

impl<T: Eq + Hash> Table<T> {
    pub fn value(&mut self, v: T) -> Arc<T> {
        if let Some(a) = self.0.get(&v) {
            return a.clone();
        }
        let a = Arc::new(v);
        self.0.insert(a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_are_shared_and_swept_when_unused() {
        let mut t = Table::<str>::default();
        let a = t.text("kube-system");
        let b = t.text("kube-system");
        assert!(Arc::ptr_eq(&a, &b));
        let c = t.text("default");
        assert_eq!(t.len(), 2);
        drop(c);
        t.sweep();
        assert_eq!(t.len(), 1);
        drop((a, b));
        t.sweep();
        assert!(t.is_empty());
    }
}
