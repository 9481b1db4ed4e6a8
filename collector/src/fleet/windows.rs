//! A part's report windows, oldest first, packed: at 5 000 nodes an hour of interface windows
//! and `workload_history` of listener windows are millions of records, the bulk of the
//! collector's memory. The newest [`HOT`] windows stay as plain records (points of the newest
//! window arrive one metric at a time and update it); older ones are sealed into blocks of up
//! to [`BLOCK`] windows, each encoded against the one before it as Gorilla does: a window's end
//! as the change of the interval between ends, its figures as the XOR of their bits with the
//! previous window's, all in LEB128 varints. Calm, regular windows take about a third of the
//! plain record's bytes.
//!
//! A point for a window older than the sealed ones (a second sender for the same node) unpacks
//! everything, inserts and packs again: correct, and rare enough to cost nothing in sum.

use super::limits::MAX_WINDOWS;
use std::collections::VecDeque;
use std::sync::Arc;

/// Windows kept as plain records.
pub const HOT: usize = 4;
/// Windows per sealed block.
pub const BLOCK: usize = 32;

/// A window record that packs against its predecessor.
pub trait Packed: Copy + Default {
    /// Appends this window (ending at `end`) relative to `prev` (ending at `prev_end`; the
    /// default record and 0 for the first of a block).
    fn pack(&self, end: u64, prev: &Self, prev_end: u64, out: &mut Vec<u8>);
    /// Reads back what [`Packed::pack`] wrote; None for bytes it did not write.
    fn unpack(end: u64, prev: &Self, prev_end: u64, input: &mut &[u8]) -> Option<Self>;

    /// What a sealed block remembers of its windows, so that a figure over all windows (the
    /// hour's highest peak) reads each block's summary instead of unpacking it.
    type Summary: Copy + Default + std::fmt::Debug;
    /// Adds this window (ending at `end`) to `s`.
    fn summarize(&self, _end: u64, _s: &mut Self::Summary) {}
    /// Adds the windows `other` summarizes to `s`.
    fn merge(_s: &mut Self::Summary, _other: &Self::Summary) {}
}

#[derive(Debug, Clone)]
struct Block {
    first_end: u64,
    last_end: u64,
    count: usize,
    /// Windows at the front already expired (skipped when read; the block goes when all are).
    skip: usize,
    /// Shared, not copied, when ingest copies a node a view still holds (`Arc::make_mut` on
    /// the node): a sealed block never changes, and an hour of them is most of a node.
    bytes: Arc<[u8]>,
}

/// A block and the summary of all its windows (expired ones included).
#[derive(Debug, Clone)]
struct Sealed<S> {
    block: Block,
    summary: S,
}

/// The block being filled, with what the next window packs against.
#[derive(Debug, Clone)]
struct Open<W: Packed> {
    block: Block,
    summary: W::Summary,
    bytes: Vec<u8>,
    prev_end: u64,
    interval: u64,
    prev: W,
}

/// The windows of one part (see the module's doc).
#[derive(Debug, Clone)]
pub struct Windows<W: Packed> {
    cold: VecDeque<Sealed<W::Summary>>,
    open: Option<Open<W>>,
    hot: VecDeque<(u64, W)>,
    /// Where reading the front block resumes once windows at its front expired.
    front: Option<Cursor<W>>,
}

/// The decoder's state after the expired windows at the front of the oldest block: bytes
/// read, and the last expired window's end, interval and figures. Every expiry pass drops a
/// window of every part of the fleet and looks at the next two; without this each of those
/// decoded the block from its start (half a block on average: the most of the expiry pass,
/// which holds the fleet's lock).
#[derive(Debug, Clone, Copy)]
struct Cursor<W> {
    read: usize,
    state: (u64, u64, W),
}

impl<W: Packed> Default for Windows<W> {
    fn default() -> Self {
        Windows {
            cold: VecDeque::new(),
            open: None,
            hot: VecDeque::new(),
            front: None,
        }
    }
}

impl<W: Packed> Windows<W> {
    /// Updates (or starts) the window that ends at `end`.
    pub fn record(&mut self, end: u64, f: impl FnOnce(&mut W)) {
        if self.sealed_last().is_some_and(|last| end <= last) {
            self.record_late(end, f);
            return;
        }
        let i = self.hot.partition_point(|(e, _)| *e < end);
        if !self.hot.get(i).is_some_and(|(e, _)| *e == end) {
            self.hot.insert(i, (end, W::default()));
        }
        f(&mut self.hot[i].1);
        self.cool();
        while self.len() > MAX_WINDOWS {
            self.drop_oldest();
        }
    }

    /// Seals what is past the hot windows.
    fn cool(&mut self) {
        while self.hot.len() > HOT {
            if let Some((e, w)) = self.hot.pop_front() {
                self.seal(e, w);
            }
        }
    }

    /// A window at or before the newest sealed one: unpack all, insert, pack again.
    fn record_late(&mut self, end: u64, f: impl FnOnce(&mut W)) {
        let mut all: Vec<(u64, W)> = self.iter().collect();
        let i = all.partition_point(|(e, _)| *e < end);
        if !all.get(i).is_some_and(|(e, _)| *e == end) {
            all.insert(i, (end, W::default()));
        }
        f(&mut all[i].1);
        *self = Windows::default();
        let keep = all.len().saturating_sub(MAX_WINDOWS);
        for (e, w) in all.into_iter().skip(keep) {
            self.hot.push_back((e, w));
            self.cool();
        }
    }

    /// Appends one window to the open block, sealing the block when full.
    fn seal(&mut self, end: u64, w: W) {
        match &mut self.open {
            Some(o) => {
                let interval = end.wrapping_sub(o.prev_end);
                put_varint(
                    &mut o.bytes,
                    zigzag(interval.wrapping_sub(o.interval) as i64),
                );
                w.pack(end, &o.prev, o.prev_end, &mut o.bytes);
                w.summarize(end, &mut o.summary);
                o.block.count += 1;
                o.block.last_end = end;
                (o.prev_end, o.interval, o.prev) = (end, interval, w);
            }
            None => {
                let mut bytes = Vec::with_capacity(BLOCK * 16);
                w.pack(end, &W::default(), 0, &mut bytes);
                let mut summary = W::Summary::default();
                w.summarize(end, &mut summary);
                self.open = Some(Open {
                    summary,
                    block: Block {
                        first_end: end,
                        last_end: end,
                        count: 1,
                        skip: 0,
                        bytes: Arc::from(&[][..]),
                    },
                    bytes,
                    prev_end: end,
                    interval: 0,
                    prev: w,
                });
            }
        }
        if self.open.as_ref().is_some_and(|o| o.block.count == BLOCK) {
            if let Some(o) = self.open.take() {
                let mut block = o.block;
                block.bytes = Arc::from(o.bytes);
                self.cold.push_back(Sealed {
                    block,
                    summary: o.summary,
                });
            }
        }
    }

    fn sealed_last(&self) -> Option<u64> {
        match &self.open {
            Some(o) => Some(o.block.last_end),
            None => self.cold.back().map(|b| b.block.last_end),
        }
    }

    fn len(&self) -> usize {
        let cold: usize = self.cold.iter().map(|b| b.block.count - b.block.skip).sum();
        let open = self
            .open
            .as_ref()
            .map_or(0, |o| o.block.count - o.block.skip);
        cold + open + self.hot.len()
    }

    /// The `k`th block, oldest first (the sealed ones, then the open one), and its bytes.
    fn block(&self, k: usize) -> Option<(&Block, &[u8])> {
        match self.cold.get(k) {
            Some(b) => Some((&b.block, &b.block.bytes[..])),
            None if k == self.cold.len() => self.open.as_ref().map(|o| (&o.block, &o.bytes[..])),
            None => None,
        }
    }

    /// Reads a block's windows that have not expired; `front`: it is the front block (the
    /// only one with expired windows), read from [`Windows::front`].
    fn unpack<'a>(&self, b: &Block, bytes: &'a [u8], front: bool) -> Unpack<'a, W> {
        let mut u = Unpack::new(b, bytes);
        match self.front {
            Some(c) if front && b.skip > 0 => {
                u.bytes = bytes.get(c.read..).unwrap_or_default();
                u.left = b.count - b.skip;
                u.state = Some(c.state);
            }
            _ => {
                for _ in 0..b.skip {
                    u.next();
                }
            }
        }
        u
    }

    /// Forgets the oldest window.
    fn drop_oldest(&mut self) {
        // Where the front block is read from once its oldest window is gone.
        let next = self.block(0).and_then(|(b, bytes)| {
            let mut u = self.unpack(b, bytes, true);
            u.next()?;
            Some(Cursor {
                read: bytes.len() - u.bytes.len(),
                state: u.state?,
            })
        });
        self.front = next;
        if let Some(Sealed { block: b, .. }) = self.cold.front_mut() {
            b.skip += 1;
            if b.skip == b.count {
                self.cold.pop_front();
                self.front = None;
            }
        } else if let Some(o) = self.open.as_mut() {
            o.block.skip += 1;
            if o.block.skip == o.block.count {
                self.open = None;
                self.front = None;
            }
        } else {
            self.hot.pop_front();
            self.front = None;
        }
    }

    /// Drops every window that ended before `oldest`.
    pub fn retain_since(&mut self, oldest: u64) {
        while self.iter().next().is_some_and(|(e, _)| e < oldest) {
            self.drop_oldest();
        }
    }

    /// Drops windows that ended before `oldest`, except the newest of them: the base the
    /// first counter rise inside the span is measured from.
    pub fn prune_keeping_base(&mut self, oldest: u64) {
        while self.iter().nth(1).is_some_and(|(e, _)| e < oldest) {
            self.drop_oldest();
        }
    }

    /// The window that ended at `end` (the newest are asked for most: they are looked at
    /// first, without unpacking anything).
    pub fn get(&self, end: u64) -> Option<W> {
        if let Some((_, w)) = self.hot.iter().find(|(e, _)| *e == end) {
            return Some(*w);
        }
        if self.hot.front().is_some_and(|(e, _)| end > *e) {
            return None;
        }
        // Blocks are in the order of their ends: only the one whose ends span `end` is
        // unpacked (a snapshot asks for the window of a counter that stopped: an hour of
        // windows unpacked per interface and evaluation before).
        let k = self.cold.partition_point(|s| s.block.last_end < end);
        let (b, bytes) = self.block(k)?;
        if end < b.first_end {
            return None;
        }
        // The oldest block resumes from the front cursor.
        self.unpack(b, bytes, k == 0)
            .find(|(e, _)| *e == end)
            .map(|(_, w)| w)
    }

    /// The newest window and its end.
    pub fn last(&self) -> Option<(u64, &W)> {
        self.hot.back().map(|(e, w)| (*e, w))
    }

    /// Oldest first, with each window's end.
    pub fn iter(&self) -> impl Iterator<Item = (u64, W)> + '_ {
        let open = self.open.as_ref().map(|o| (&o.block, o.bytes.as_slice()));
        self.cold
            .iter()
            .map(|b| (&b.block, &b.block.bytes[..]))
            .chain(open)
            .enumerate()
            .flat_map(|(k, (b, bytes))| self.unpack(b, bytes, k == 0))
            .chain(self.hot.iter().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.hot.is_empty() && self.open.is_none() && self.cold.is_empty()
    }

    /// The summary of every window kept: whole blocks by their summaries, a block with
    /// expired windows (at most the oldest) by unpacking the rest, hot windows one by one.
    pub fn summary(&self) -> W::Summary {
        let mut s = W::Summary::default();
        let open = self
            .open
            .as_ref()
            .map(|o| (&o.block, o.bytes.as_slice(), &o.summary));
        let blocks = self
            .cold
            .iter()
            .map(|b| (&b.block, &b.block.bytes[..], &b.summary))
            .chain(open);
        for (k, (b, bytes, summary)) in blocks.enumerate() {
            if b.skip == 0 {
                W::merge(&mut s, summary);
            } else {
                for (end, w) in self.unpack(b, bytes, k == 0) {
                    w.summarize(end, &mut s);
                }
            }
        }
        for (end, w) in &self.hot {
            w.summarize(*end, &mut s);
        }
        s
    }

    /// The hot (newest) windows, newest first, and whether they are all the windows kept.
    pub fn newest(&self) -> (impl Iterator<Item = (u64, &W)> + '_, bool) {
        (
            self.hot.iter().rev().map(|(e, w)| (*e, w)),
            self.open.is_none() && self.cold.is_empty(),
        )
    }
}

/// Reads one block's windows back, oldest first; stops at bytes [`Packed::pack`] did not
/// write (never in practice).
struct Unpack<'a, W> {
    bytes: &'a [u8],
    left: usize,
    first_end: u64,
    /// (end, interval, window) of the last window read.
    state: Option<(u64, u64, W)>,
}

impl<'a, W: Packed> Unpack<'a, W> {
    fn new(b: &Block, bytes: &'a [u8]) -> Self {
        Unpack {
            bytes,
            left: b.count,
            first_end: b.first_end,
            state: None,
        }
    }
}

impl<W: Packed> Iterator for Unpack<'_, W> {
    type Item = (u64, W);

    fn next(&mut self) -> Option<(u64, W)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (end, interval, w) = match self.state {
            None => {
                let e = self.first_end;
                (e, 0, W::unpack(e, &W::default(), 0, &mut self.bytes)?)
            }
            Some((prev_end, prev_interval, prev)) => {
                let dd = unzigzag(varint(&mut self.bytes)?);
                let interval = prev_interval.wrapping_add(dd as u64);
                let end = prev_end.wrapping_add(interval);
                (
                    end,
                    interval,
                    W::unpack(end, &prev, prev_end, &mut self.bytes)?,
                )
            }
        };
        self.state = Some((end, interval, w));
        Some((end, w))
    }
}

/// Appends `v` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint; None when the bytes end first or it is longer than a u64.
pub fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Packs a field as the XOR of its bits with the previous window's (0, one byte, when equal).
pub fn put_xor(out: &mut Vec<u8>, bits: u64, prev_bits: u64) {
    put_varint(out, bits ^ prev_bits);
}

/// Reads back [`put_xor`].
pub fn xor(input: &mut &[u8], prev_bits: u64) -> Option<u64> {
    Some(varint(input)? ^ prev_bits)
}

/// Packs a window's start (ns; 0 = not sent) as the change of its lead before the window's end
/// against the previous window's: regular windows take a byte or three.
pub fn put_start(out: &mut Vec<u8>, start: u64, end: u64, prev_start: u64, prev_end: u64) {
    if start == 0 {
        out.push(0);
        return;
    }
    let lead = |s: u64, e: u64| if s == 0 { 0 } else { e.wrapping_sub(s) };
    let d = lead(start, end).wrapping_sub(lead(prev_start, prev_end)) as i64;
    put_varint(out, zigzag(d).wrapping_add(1));
}

/// Reads back [`put_start`].
pub fn start(input: &mut &[u8], end: u64, prev_start: u64, prev_end: u64) -> Option<u64> {
    let v = varint(input)?;
    if v == 0 {
        return Some(0);
    }
    let prev_lead = if prev_start == 0 {
        0
    } else {
        prev_end.wrapping_sub(prev_start)
    };
    let lead = prev_lead.wrapping_add(unzigzag(v - 1) as u64);
    Some(end.wrapping_sub(lead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test record: one figure and a start.
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    struct Rec {
        start: u64,
        v: f32,
    }

    impl Packed for Rec {
        fn pack(&self, end: u64, prev: &Self, prev_end: u64, out: &mut Vec<u8>) {
            put_start(out, self.start, end, prev.start, prev_end);
            put_xor(
                out,
                u64::from(self.v.to_bits()),
                u64::from(prev.v.to_bits()),
            );
        }
        fn unpack(end: u64, prev: &Self, prev_end: u64, input: &mut &[u8]) -> Option<Self> {
            Some(Rec {
                start: start(input, end, prev.start, prev_end)?,
                v: f32::from_bits(xor(input, u64::from(prev.v.to_bits()))? as u32),
            })
        }
        /// (windows, sum of ends, xor of the figures' bits): order-free, so a fold in any
        /// grouping gives the same.
        type Summary = (u64, u64, u32);
        fn summarize(&self, end: u64, s: &mut Self::Summary) {
            *s = (s.0 + 1, s.1.wrapping_add(end), s.2 ^ self.v.to_bits());
        }
        fn merge(s: &mut Self::Summary, o: &Self::Summary) {
            *s = (s.0 + o.0, s.1.wrapping_add(o.1), s.2 ^ o.2);
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut s = &b[..];
            assert_eq!(varint(&mut s), Some(v));
            assert!(s.is_empty());
        }
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(varint(&mut &[0x80u8, 0x80][..]), None, "ends early");
    }

    #[test]
    fn regular_windows_pack_small_and_read_back() {
        let mut w: Windows<Rec> = Windows::default();
        let ten = 10_000_000_000u64;
        let mut want = Vec::new();
        for i in 1..=200u64 {
            // 10 s windows with a little jitter, contiguous, slowly varying figures.
            let end = 1_700_000_000_000_000_000 + i * ten + (i % 7) * 1_000_123;
            let start = want
                .last()
                .map(|(e, _): &(u64, Rec)| *e)
                .unwrap_or(end - ten);
            let r = Rec {
                start,
                v: 100.0 + (i % 5) as f32,
            };
            w.record(end, |x| *x = r);
            want.push((end, r));
        }
        assert_eq!(w.iter().collect::<Vec<_>>(), want);
        let packed: usize = w.cold.iter().map(|b| b.block.bytes.len()).sum::<usize>()
            + w.open.as_ref().map_or(0, |o| o.bytes.len());
        let windows = 200 - w.hot.len();
        // A plain record is 8 (end) + 16 (this Rec) bytes; packed, about a third.
        assert!(packed < windows * 9, "{packed} bytes for {windows} windows");
        assert_eq!(w.get(want[10].0), Some(want[10].1));
        assert_eq!(w.get(want[198].0), Some(want[198].1));
        assert_eq!(w.get(want[198].0 + 1), None);
        assert_eq!(w.last(), Some((want[199].0, &want[199].1)));
    }

    #[test]
    fn windows_are_bounded_and_keep_a_base() {
        let mut w: Windows<Rec> = Windows::default();
        for end in 0..(MAX_WINDOWS as u64 + 5) {
            w.record(end, |v| v.v = 1.0);
        }
        assert_eq!(w.iter().count(), MAX_WINDOWS);
        assert_eq!(w.iter().next().map(|(e, _)| e), Some(5));
        w.prune_keeping_base(100);
        assert_eq!(w.iter().next().map(|(e, _)| e), Some(99));
        w.retain_since(100);
        assert_eq!(w.iter().next().map(|(e, _)| e), Some(100));
    }

    #[test]
    fn late_and_repeated_windows_fall_into_place() {
        let mut w: Windows<Rec> = Windows::default();
        for end in [30, 10, 20, 40, 20, 5] {
            w.record(end, |v| v.v += 1.0);
        }
        let got: Vec<(u64, f32)> = w.iter().map(|(e, v)| (e, v.v)).collect();
        assert_eq!(got, [(5, 1.0), (10, 1.0), (20, 2.0), (30, 1.0), (40, 1.0)]);
        assert_eq!(w.get(25), None);
        w.prune_keeping_base(35);
        assert_eq!(w.iter().map(|(e, _)| e).collect::<Vec<_>>(), [30, 40]);
        w.prune_keeping_base(u64::MAX);
        assert_eq!(w.iter().count(), 1, "the newest stays as the base");
    }

    /// `w` reads back as `model` holds the windows, and its summary from the blocks' own equals
    /// the one of every window read back.
    fn same_as(
        w: &Windows<Rec>,
        model: &std::collections::BTreeMap<u64, Rec>,
    ) -> Result<(), TestCaseError> {
        let got: Vec<(u64, u64, u32)> =
            w.iter().map(|(e, r)| (e, r.start, r.v.to_bits())).collect();
        let want: Vec<(u64, u64, u32)> = model
            .iter()
            .map(|(e, r)| (*e, r.start, r.v.to_bits()))
            .collect();
        prop_assert_eq!(got, want);
        // Every block's windows are asked for (a sample of them: all of them at every step
        // made these tests three times slower).
        let every = (model.len() / 12).max(1);
        for (e, r) in model.iter().step_by(every).chain(model.last_key_value()) {
            let bits = |r: Rec| (r.start, r.v.to_bits());
            prop_assert_eq!(w.get(*e).map(bits), Some(bits(*r)), "get({})", e);
            // Ends between windows (and before the first) hold none.
            let before = e.wrapping_sub(1);
            prop_assert_eq!(w.get(before).is_some(), model.contains_key(&before));
        }
        if let Some((last, _)) = model.last_key_value() {
            prop_assert_eq!(w.get(last + 1), None);
        }
        let mut folded = <Rec as Packed>::Summary::default();
        for (e, r) in model.iter() {
            r.summarize(*e, &mut folded);
        }
        prop_assert_eq!(w.summary(), folded);
        Ok(())
    }

    proptest! {
        /// Any sequence of points (late, repeated, expiring) reads back as a sorted map would
        /// hold it.
        #[test]
        fn reads_back_as_a_sorted_map(ops in proptest::collection::vec((0u64..400, any::<u32>(), 0u8..10), 1..300)) {
            let mut w: Windows<Rec> = Windows::default();
            let mut model: std::collections::BTreeMap<u64, Rec> = Default::default();
            for (end, bits, op) in ops {
                let end = end * 1_000 + u64::from(bits % 3);
                match op {
                    0 => {
                        w.retain_since(end);
                        model.retain(|e, _| *e >= end);
                    }
                    1 => {
                        w.prune_keeping_base(end);
                        while model.keys().nth(1).is_some_and(|e| *e < end) {
                            model.pop_first();
                        }
                    }
                    _ => {
                        let r = Rec { start: end.saturating_sub(u64::from(bits % 5000)), v: f32::from_bits(bits) };
                        w.record(end, |x| *x = r);
                        model.insert(end, r);
                    }
                }
                same_as(&w, &model)?;
            }
        }

        /// Windows in order, expired as the collector does (a few at a time, over many sealed
        /// blocks and the open one): reading resumes from the front block's cursor and still
        /// reads back as a sorted map.
        #[test]
        fn in_order_windows_expire_as_a_sorted_map(
            steps in proptest::collection::vec((1u64..30, any::<u32>(), 0u8..12, 4u64..12), 1..600)
        ) {
            let mut w: Windows<Rec> = Windows::default();
            let mut model: std::collections::BTreeMap<u64, Rec> = Default::default();
            let mut end = 1_000;
            for (step, bits, op, keep) in steps {
                end += step * 100;
                let r = Rec { start: end - 50, v: f32::from_bits(bits) };
                w.record(end, |x| *x = r);
                model.insert(end, r);
                let cut = end.saturating_sub(keep * 10_000);
                match op {
                    0 => {
                        w.retain_since(cut);
                        model.retain(|e, _| *e >= cut);
                    }
                    1 | 2 => {
                        w.prune_keeping_base(cut);
                        while model.keys().nth(1).is_some_and(|e| *e < cut) {
                            model.pop_first();
                        }
                    }
                    _ => {}
                }
                same_as(&w, &model)?;
            }
        }
    }
}
