//! The one store every keyed part of a node uses (interfaces, listeners, probes): a map from a
//! part's key to its state, bounded per node, that refuses points older than the part keeps and
//! forgets what expired; plus the compact figures a part's windows hold (the windows
//! themselves: [`super::windows`]).

use super::limits::Limits;
use super::otlp::Attrs;
use std::time::Duration;

/// When a data point is: its window's end (or now), its `start_time_unix_nano` (the window's
/// start for gauges, the counter's start for sums), and now.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub end: u64,
    pub start: u64,
    pub now: u64,
}

/// The times expiry cuts at (ns since the epoch): before `oldest` interface windows go; before
/// `history_start` listener windows and probe counter points go (but the base of the first
/// rise); a listener or probe whose newest data is before `silent_since` goes.
#[derive(Debug, Clone, Copy)]
pub struct Cuts {
    pub oldest: u64,
    pub history_start: u64,
    pub silent_since: u64,
}

/// One kind of keyed part of a node.
pub trait Part: Default + Clone {
    type Key: Ord + Clone;
    /// The part a point belongs to; None refuses the point (a needed attribute is missing).
    fn key(a: &Attrs) -> Option<Self::Key>;
    /// Points whose window ended longer ago than this are refused.
    fn max_age(limits: &Limits) -> Duration;
    /// Most parts of this kind per node.
    fn max_per_node(limits: &Limits) -> usize;
    /// Takes one point of metric `name`; false when refused.
    fn take(&mut self, name: &str, a: &Attrs, v: f64, at: At) -> bool;
    /// Forgets what is past the cuts; false when the part itself should go.
    fn expire(&mut self, cuts: &Cuts) -> bool;
}

/// The parts of one kind on one node, sorted by key. A sorted `Vec` rather than a `BTreeMap`:
/// a map's first leaf holds room for 11 parts, and a node has a few interfaces and a handful
/// of listeners and probes of several hundred bytes each, so the empty slots were most of
/// the store (≈ 9 KiB a node, 43 MiB at 5 000 nodes). The `Vec` grows by an eighth.
#[derive(Debug, Clone)]
pub struct Store<P: Part> {
    parts: Vec<(P::Key, P)>,
}

impl<P: Part> Default for Store<P> {
    fn default() -> Self {
        Store { parts: Vec::new() }
    }
}

impl<P: Part> Store<P> {
    /// One point into its part; false when refused (no key, too old, over the node's limit, or
    /// by the part).
    pub fn take(&mut self, limits: &Limits, name: &str, a: &Attrs, v: f64, at: At) -> bool {
        let Some(key) = P::key(a) else {
            return false;
        };
        if at.end < at.now.saturating_sub(P::max_age(limits).as_nanos() as u64) {
            return false;
        }
        let max = P::max_per_node(limits);
        let Some((i, _)) = slot(&mut self.parts, &key, max, || (key.clone(), P::default())) else {
            return false;
        };
        self.parts[i].1.take(name, a, v, at)
    }

    /// Expires every part; returns how many went.
    pub fn expire(&mut self, cuts: &Cuts) -> usize {
        let before = self.parts.len();
        self.parts.retain_mut(|(_, p)| p.expire(cuts));
        let gone = before - self.parts.len();
        if gone > 0 && self.parts.capacity() > self.parts.len() + self.parts.len() / 4 + 1 {
            self.parts.shrink_to_fit();
        }
        gone
    }

    pub fn iter(&self) -> impl Iterator<Item = (&P::Key, &P)> {
        self.parts.iter().map(|(k, p)| (k, p))
    }
}

/// Where `key` is in `v` (sorted by key), with `make()` inserted there first when it is
/// missing and `v` holds fewer than `max` (true: inserted); None when it is missing and `v` is
/// full. The small sorted lists of the fleet model (a node's parts, a metric's series, a
/// probe's results) grow by an eighth, not by doubling: there are millions of them.
pub fn slot<K, Q, V>(
    v: &mut Vec<(K, V)>,
    key: &Q,
    max: usize,
    make: impl FnOnce() -> (K, V),
) -> Option<(usize, bool)>
where
    K: std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    match v.binary_search_by(|(k, _)| k.borrow().cmp(key)) {
        Ok(i) => Some((i, false)),
        Err(_) if v.len() >= max => None,
        Err(i) => {
            if v.len() == v.capacity() {
                v.reserve_exact((v.len() / 8).max(1));
            }
            v.insert(i, make());
            Some((i, true))
        }
    }
}

/// A figure that may be missing, in 4 bytes (NaN = missing): an hour of windows for every
/// interface of 5 000 nodes is millions of records, so each byte counts. Packets/s, ratios
/// and worker counts need no more than an f32's 7 significant digits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Small(f32);

impl Default for Small {
    fn default() -> Self {
        Small(f32::NAN)
    }
}

impl Small {
    pub fn of(v: f64) -> Small {
        Small(v as f32)
    }
    /// The shortest decimal (at most 9 significant digits, what an f32 holds) that is
    /// stored as the same f32: 93.4 reads back as 93.4, not 93.40000152. Every snapshot reads
    /// millions of these, so whole numbers (counts, packets/s) return at once and the powers
    /// of ten come from a table instead of `log10` and `powi` per call.
    pub fn get(self) -> Option<f64> {
        if self.0.is_nan() {
            return None;
        }
        let x = f64::from(self.0);
        // Below 2^24 every whole number is an f32 of its own, so no shorter decimal maps to it.
        if x.abs() < 16_777_216.0 && x == x.trunc() {
            return Some(x);
        }
        if !x.is_finite() {
            return Some(x);
        }
        let p = pow10();
        let ax = x.abs();
        // floor(log10(ax)) from the table: f32 magnitudes lie within 1e-46..1e39.
        let exp2 = ((self.0.to_bits() >> 23) & 0xff) as i32 - 127;
        let mut e = (f64::from(exp2) * std::f64::consts::LOG10_2).floor() as i32;
        while e < POW10_MAX && p[(e + 1 - POW10_MIN) as usize] <= ax {
            e += 1;
        }
        while e > POW10_MIN && p[(e - POW10_MIN) as usize] > ax {
            e -= 1;
        }
        for digits in 1..=9 {
            let scale = p[(digits - 1 - e - POW10_MIN) as usize];
            let r = (x * scale).round() / scale;
            if r as f32 == self.0 {
                return Some(r);
            }
        }
        Some(x)
    }
    pub fn is_some(self) -> bool {
        !self.0.is_nan()
    }
    /// The stored bits, for packing.
    pub fn bits(self) -> u64 {
        u64::from(self.0.to_bits())
    }
    pub fn from_bits(b: u64) -> Small {
        Small(f32::from_bits(b as u32))
    }
}

/// The powers of ten [`Small::get`] scales by: 10^POW10_MIN ..= 10^POW10_MAX (an f32's
/// decimal exponents and the eight more digits it may need).
const POW10_MIN: i32 = -47;
const POW10_MAX: i32 = 56;

fn pow10() -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (POW10_MIN..=POW10_MAX).map(|k| 10f64.powi(k)).collect())
}

/// A count that may be missing, in 4 bytes (u32::MAX = missing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Count(u32);

impl Default for Count {
    fn default() -> Self {
        Count(u32::MAX)
    }
}

impl Count {
    pub fn of(v: f64) -> Count {
        Count(v.max(0.0).min(f64::from(u32::MAX - 1)).round() as u32)
    }
    pub fn get(self) -> Option<u32> {
        (self.0 != u32::MAX).then_some(self.0)
    }
    /// The stored value, for packing.
    pub fn bits(self) -> u64 {
        u64::from(self.0)
    }
    pub fn from_bits(b: u64) -> Count {
        Count(b as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::Small;

    /// The definition `Small::get` keeps: the fewest digits that round to the same f32.
    fn shortest(v: f32) -> Option<f64> {
        if v.is_nan() {
            return None;
        }
        let x = f64::from(v);
        if x == 0.0 || !x.is_finite() {
            return Some(x);
        }
        let e = x.abs().log10().floor() as i32;
        for digits in 1..=9 {
            let scale = 10f64.powi(digits - 1 - e);
            let r = (x * scale).round() / scale;
            if r as f32 == v {
                return Some(r);
            }
        }
        Some(x)
    }

    #[test]
    fn get_reads_back_the_shortest_decimal_for_every_kind_of_f32() {
        // Half a million bit patterns spread over all f32s (subnormals, whole numbers past
        // 2^24, infinities), and the decimals reports carry.
        let spread = (0..u32::MAX / 7919).map(|i| f32::from_bits(i.wrapping_mul(7919)));
        let decimals = (0..200_000).map(|k| k as f32 / 1000.0);
        let whole = (0..100_000u32).map(|k| (k * 337) as f32);
        let mut checked = 0;
        for v in spread.chain(decimals).chain(whole) {
            let (got, want) = (Small(v).get(), shortest(v));
            assert!(
                got == want || got.zip(want).is_some_and(|(a, b)| a.is_nan() && b.is_nan()),
                "{v:e} ({:#x}): {got:?} != {want:?}",
                v.to_bits()
            );
            checked += 1;
        }
        assert!(checked > 800_000);
    }
}
