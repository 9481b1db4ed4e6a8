//! The arithmetic behind the fleet's workload and probe figures, kept apart from the model so
//! each rule can be stated and tested on its own: percentiles, rises of cumulative counters,
//! and the sum of a workload's busy workers over pods whose report windows do not line up.

use std::collections::VecDeque;

/// The 95th percentile by the nearest-rank method: sort ascending and take the value at
/// 1-based rank ⌈0.95 · n⌉. Always one of the values (never interpolated), so with 20 or fewer
/// values it is the maximum; 0 for no values.
pub fn p95(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    // The value a full sort would put there, found in linear time (a workload of thousands
    // of pods has hundreds of thousands of sums).
    *v.select_nth_unstable_by(rank - 1, f64::total_cmp).1
}

/// One data point of a cumulative counter: when its window ended, when the counter started
/// counting (`start_time_unix_nano`), and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterPoint {
    pub end: u64,
    pub start: u64,
    pub value: f64,
}

/// How much a counter rose up to `cur`.
///
/// - After an earlier point of the same counter (same start): the difference.
/// - After a reset (another start, or a smaller value: the sender restarted): all of `cur`,
///   since everything the new counter holds was counted after the earlier point.
/// - With no earlier point: all of `cur` when the counter started at or after `span_start`
///   (everything it holds falls in the span asked about: a fresh agent), else 0 — the
///   collector joined late and cannot know how much of the value is recent.
pub fn rise(prev: Option<&CounterPoint>, cur: &CounterPoint, span_start: u64) -> f64 {
    match prev {
        Some(p) if p.start == cur.start && cur.value >= p.value => cur.value - p.value,
        Some(_) => cur.value,
        None if cur.start != 0 && cur.start >= span_start => cur.value,
        None => 0.0,
    }
}

/// The recent points of one cumulative counter, oldest first, at most `cap` of them: beyond
/// that, the interior point whose removal leaves the shortest gap goes, so the kept points
/// stay spread over the span (rises across a removed point are kept whole, as long as the
/// counter did not restart there).
///
/// A counter's points nearly all share one start (the sender's), so it is kept once and only
/// the points of another start (a restart not yet aged out) keep their own: 16 bytes a point
/// instead of 24 (a probe's five counters of 32 points each were 16 KiB a node at 4 probes).
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// (end, value), oldest first.
    points: VecDeque<(u64, f64)>,
    /// The start of every point not in `other`.
    start: u64,
    /// (end, start) of the points whose start is not `start`, by end; empty but after a restart.
    other: Vec<(u64, u64)>,
    /// What [`Counter::rise_since`] answers for a span that starts after the oldest point or
    /// after the second oldest (expiry keeps one point before the span, so nearly every
    /// evaluation asks one of these), made as the points change. Every evaluation reads each
    /// probe's five counters, at 5 000 nodes 100 000 of them: their points are each a heap
    /// block of their own, and walking them was a quarter of a snapshot.
    sums: Sums,
}

/// See [`Counter::sums`]: the rises summed from the second and from the third point to the
/// newest (`from[..valid]` are known), and the ends of the oldest `valid + 1` points.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    ends: [u64; 3],
    from: [f64; 2],
    valid: u8,
}

impl Counter {
    fn start_of(&self, end: u64) -> u64 {
        match self.other.binary_search_by_key(&end, |&(e, _)| e) {
            Ok(i) => self.other[i].1,
            Err(_) => self.start,
        }
    }

    fn point(&self, i: usize) -> Option<CounterPoint> {
        let &(end, value) = self.points.get(i)?;
        Some(CounterPoint {
            end,
            start: self.start_of(end),
            value,
        })
    }

    fn set_start(&mut self, end: u64, start: u64) {
        let at = self.other.binary_search_by_key(&end, |&(e, _)| e);
        match at {
            _ if self.points.len() == 1 => {
                self.start = start;
                self.other.clear();
            }
            Ok(i) if start == self.start => {
                self.other.remove(i);
            }
            Ok(i) => self.other[i].1 = start,
            Err(_) if start == self.start => {}
            Err(i) => self.other.insert(i, (end, start)),
        }
    }

    /// Keeps `start` the start of most points (after a restart, once the newer start holds the
    /// majority, it becomes the shared one).
    fn rebase(&mut self) {
        if self.other.len() * 2 <= self.points.len() {
            return;
        }
        let starts: Vec<(u64, u64)> = (0..self.points.len())
            .filter_map(|i| self.point(i))
            .map(|p| (p.end, p.start))
            .collect();
        self.start = starts.last().map_or(0, |&(_, s)| s);
        let common = self.start;
        self.other = starts.into_iter().filter(|&(_, s)| s != common).collect();
    }

    /// Adds a point in time order (a point for the same end replaces the old one).
    pub fn record(&mut self, p: CounterPoint, cap: usize) {
        let i = self.points.partition_point(|q| q.0 < p.end);
        match self.points.get_mut(i) {
            Some(q) if q.0 == p.end => q.1 = p.value,
            _ => {
                // Exactly the room the cap needs: a doubling deque would hold twice the points
                // (at 5 000 nodes with 4 probes each, 75 MiB of empty slots).
                if self.points.len() == self.points.capacity() {
                    self.points
                        .reserve_exact((cap.max(2) + 1).saturating_sub(self.points.len()).max(1));
                }
                self.points.insert(i, (p.end, p.value))
            }
        }
        self.set_start(p.end, p.start);
        while self.points.len() > cap.max(2) {
            let n = self.points.len();
            let drop = (1..n - 1)
                .min_by_key(|&i| self.points[i + 1].0 - self.points[i - 1].0)
                .unwrap_or(0);
            if let Some((end, _)) = self.points.remove(drop) {
                self.other.retain(|&(e, _)| e != end);
            }
        }
        self.rebase();
        self.resum();
    }

    /// Forgets points older than `oldest`, except the newest of them (the base the first rise
    /// inside the span is measured from).
    ///
    /// The expiry pass prunes every counter of the fleet under its lock: when the second point
    /// is still inside (nearly always) that is known from [`Counter::sums`] without reading
    /// the points.
    pub fn prune(&mut self, oldest: u64) {
        let Sums { ends, from, valid } = self.sums;
        if valid >= 1 && ends[1] >= oldest {
            return;
        }
        let mut forgot = 0;
        while self.points.len() > 1 && self.points[1].0 < oldest {
            self.points.pop_front();
            forgot += 1;
        }
        if forgot == 0 {
            return;
        }
        if let Some(&(first, _)) = self.points.front() {
            self.other.retain(|&(e, _)| e >= first);
        }
        self.rebase();
        // One point forgotten: the sum from the third is now the sum from the second (the
        // same points added in the same order); the next record makes the rest.
        self.sums = match (forgot, valid) {
            (1, 2) => Sums {
                ends: [ends[1], ends[2], 0],
                from: [from[1], 0.0],
                valid: 1,
            },
            _ => Sums::default(),
        };
    }

    /// Makes [`Counter::sums`] again after the points changed.
    fn resum(&mut self) {
        let n = self.points.len();
        for (k, end) in self.sums.ends.iter_mut().enumerate().take(n) {
            *end = self.points[k].0;
        }
        for first in 1..n.min(3) {
            // The span start is not read when an earlier point exists.
            self.sums.from[first - 1] = self.sum_from(first, 0);
        }
        self.sums.valid = n.saturating_sub(1).min(2) as u8;
    }

    pub fn latest(&self) -> Option<CounterPoint> {
        self.point(self.points.len().checked_sub(1)?)
    }

    /// The end of the oldest point at or after `since`.
    pub fn first_since(&self, since: u64) -> Option<u64> {
        self.points.iter().map(|p| p.0).find(|&e| e >= since)
    }

    /// The point `back` places before the newest (0 = the newest).
    pub fn nth_back(&self, back: usize) -> Option<CounterPoint> {
        self.point(self.points.len().checked_sub(back + 1)?)
    }

    /// The sum of the rises of every point that ended at or after `span_start`.
    pub fn rise_since(&self, span_start: u64) -> f64 {
        let Sums { ends, from, valid } = self.sums;
        if valid >= 1 && ends[0] < span_start && span_start <= ends[1] {
            return from[0];
        }
        if valid >= 2 && ends[1] < span_start && span_start <= ends[2] {
            return from[1];
        }
        let first = self.points.partition_point(|p| p.0 < span_start);
        self.sum_from(first, span_start)
    }

    /// The rises of the points from index `first` to the newest, oldest first.
    fn sum_from(&self, first: usize, span_start: u64) -> f64 {
        if self.other.is_empty() {
            // Every point has `start` (no restart held): [`rise`] on values alone, in the
            // same order.
            let mut prev = first.checked_sub(1).map(|i| self.points[i].1);
            let fresh = self.start != 0 && self.start >= span_start;
            let mut total = 0.0;
            for &(_, value) in self.points.range(first..) {
                total += match prev {
                    Some(p) if value >= p => value - p,
                    Some(_) => value,
                    None if fresh => value,
                    None => 0.0,
                };
                prev = Some(value);
            }
            return total;
        }
        let mut prev = first.checked_sub(1).and_then(|i| self.point(i));
        let mut total = 0.0;
        for i in first..self.points.len() {
            let Some(p) = self.point(i) else { break };
            total += rise(prev.as_ref(), &p, span_start);
            prev = Some(p);
        }
        total
    }

    /// The rise into the point `back` places before the newest (0 = the newest), with
    /// `window_start` the start of that point's window; None when there is no such point.
    pub fn rise_of(&self, back: usize, window_start: u64) -> Option<f64> {
        let i = self.points.len().checked_sub(back + 1)?;
        let prev = i.checked_sub(1).and_then(|j| self.point(j));
        Some(rise(prev.as_ref(), &self.point(i)?, window_start))
    }
}

/// One report window of one listener: `(start, end]` in ns and the mean busy workers in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusyWindow {
    pub start: u64,
    pub end: u64,
    pub busy: f64,
}

/// A workload's busy workers summed over its listeners, sampled at every window end.
///
/// Pods on different nodes report windows that do not line up (each agent starts its own
/// interval), so windows cannot be added one to one. At each instant `t` where any listener's
/// window ended, the sum takes from every listener the window in effect at `t` (the one with
/// `start < t ≤ end`; a gap up to a tenth of the window between consecutive windows is
/// bridged by the next window) — each pod's figure as it stood then. This needs no rounding
/// of times to an interval (whose phase would split or merge windows near a boundary), stays
/// exact whatever the offsets, and places late windows correctly. A listener with no window
/// at `t` (not started yet, or gone) adds nothing.
///
/// Only instants up to the `frontier` count: the earliest latest-window end among listeners
/// still reporting, so a sum is never taken before every current pod has reported for it.
/// `listeners[i]` must be sorted by end. Returns the sums oldest first, without their
/// instants: a DaemonSet on 5 000 nodes has 450 000 sums over 15 minutes, so every byte per
/// sum counts while they are made.
pub fn busy_sum_values<L: AsRef<[BusyWindow]>>(
    listeners: &[L],
    from: u64,
    frontier: u64,
) -> Vec<f64> {
    let mut out = Vec::new();
    sweep(listeners, from, frontier, |_, v| out.push(v));
    out
}

/// [`busy_sum_values`] with each sum's instant, `(t, sum)`: the tests check the instants.
#[cfg(test)]
pub fn busy_sums<L: AsRef<[BusyWindow]>>(
    listeners: &[L],
    from: u64,
    frontier: u64,
) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    sweep(listeners, from, frontier, |t, v| out.push((t, v)));
    out
}

fn sweep<L: AsRef<[BusyWindow]>>(
    listeners: &[L],
    from: u64,
    frontier: u64,
    mut put: impl FnMut(u64, f64),
) {
    // A sweep over the instants in time order: each window adds its figure for instants in
    // (effective start, end] and takes it away after; O((windows + instants) · log) however
    // many pods a workload has. Sums are kept in millionths as integers, so adding and taking
    // away leaves no rounding residue.
    const UNIT: f64 = 1e6;
    let n: usize = listeners.iter().map(|l| l.as_ref().len()).sum();
    let mut opens: Vec<(u64, i64)> = Vec::with_capacity(n);
    let mut closes: Vec<(u64, i64)> = Vec::with_capacity(n);
    for ws in listeners {
        let mut prev_end = 0;
        for w in ws.as_ref() {
            let tolerance = (w.end - w.start.min(w.end)) / 10;
            // Bridge a small gap, never into the previous window; a window always covers its
            // own end, even when its start is unknown (= end).
            let open = w
                .start
                .saturating_sub(tolerance)
                .max(prev_end)
                .min(w.end.saturating_sub(1));
            let v = (w.busy * UNIT).round() as i64;
            opens.push((open, v));
            closes.push((w.end, v));
            prev_end = w.end;
        }
    }
    // Each listener's opens and closes are already in time order: a stable sort merges those
    // runs instead of sorting from scratch.
    opens.sort();
    closes.sort();
    // The instants are the closes' distinct times in [from, frontier].
    let (mut o, mut c, mut sum) = (0, 0, 0i64);
    let mut last = None;
    for i in 0..closes.len() {
        let t = closes[i].0;
        if t < from || t > frontier || last == Some(t) {
            continue;
        }
        last = Some(t);
        while o < opens.len() && opens[o].0 < t {
            sum += opens[o].1;
            o += 1;
        }
        while c < closes.len() && closes[c].0 < t {
            sum -= closes[c].1;
            c += 1;
        }
        put(t, sum as f64 / UNIT);
    }
}

/// The frontier for [`busy_sum_values`]: among listeners whose newest window is current (it ends
/// no more than one of its own window lengths before the newest end of all), the earliest
/// newest end. Listeners whose windows stopped (pod gone) do not hold it back.
pub fn frontier<L: AsRef<[BusyWindow]>>(listeners: &[L]) -> Option<u64> {
    let newest = listeners
        .iter()
        .filter_map(|w| w.as_ref().last())
        .map(|w| w.end)
        .max()?;
    listeners
        .iter()
        .filter_map(|w| w.as_ref().last())
        .filter(|w| w.end + (w.end - w.start.min(w.end)).max(1) >= newest)
        .map(|w| w.end)
        .min()
}

/// The most common value (the larger on a tie); 0 for none.
pub fn mode(values: impl IntoIterator<Item = u32>) -> u32 {
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(v, n)| (n, v))
        .map(|(v, _)| v)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn p95_is_nearest_rank() {
        let cases: &[(&[f64], f64)] = &[
            (&[], 0.0),
            (&[3.0], 3.0),
            (&[1.0, 9.0, 5.0], 9.0),
            // 20 values: rank ⌈19⌉ = 19 → the second largest.
            (
                &[
                    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                    15.0, 16.0, 17.0, 18.0, 19.0, 20.0,
                ],
                19.0,
            ),
            // 21 values: rank ⌈19.95⌉ = 20.
            (
                &[
                    21.0, 20.0, 19.0, 18.0, 17.0, 16.0, 15.0, 14.0, 13.0, 12.0, 11.0, 10.0, 9.0,
                    8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0,
                ],
                20.0,
            ),
        ];
        for (values, want) in cases {
            assert_eq!(p95(values), *want, "{values:?}");
        }
        // 100 values 1..=100: rank 95.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p95(&hundred), 95.0);
    }

    /// The counter as it was before its points shared their start: the reference the
    /// compact one is checked against.
    mod reference {
        use super::super::{rise, CounterPoint};
        use std::collections::VecDeque;
        /// The recent points of one cumulative counter, oldest first, at most `cap` of them: beyond
        /// that, the interior point whose removal leaves the shortest gap goes, so the kept points
        /// stay spread over the span (rises across a removed point are kept whole, as long as the
        /// counter did not restart there).
        #[derive(Debug, Clone, Default)]
        pub struct Reference {
            points: VecDeque<CounterPoint>,
        }

        impl Reference {
            /// Adds a point in time order (a point for the same end replaces the old one).
            pub fn record(&mut self, p: CounterPoint, cap: usize) {
                let i = self.points.partition_point(|q| q.end < p.end);
                match self.points.get_mut(i) {
                    Some(q) if q.end == p.end => *q = p,
                    _ => {
                        // Exactly the room the cap needs: a doubling deque would hold twice the points
                        // (at 5 000 nodes with 4 probes each, 75 MiB of empty slots).
                        if self.points.len() == self.points.capacity() {
                            self.points.reserve_exact(
                                (cap.max(2) + 1).saturating_sub(self.points.len()).max(1),
                            );
                        }
                        self.points.insert(i, p)
                    }
                }
                while self.points.len() > cap.max(2) {
                    let n = self.points.len();
                    let drop = (1..n - 1)
                        .min_by_key(|&i| self.points[i + 1].end - self.points[i - 1].end)
                        .unwrap_or(0);
                    self.points.remove(drop);
                }
            }

            /// Forgets points older than `oldest`, except the newest of them (the base the first rise
            /// inside the span is measured from).
            pub fn prune(&mut self, oldest: u64) {
                while self.points.len() > 1 && self.points[1].end < oldest {
                    self.points.pop_front();
                }
            }

            pub fn latest(&self) -> Option<&CounterPoint> {
                self.points.back()
            }

            /// The end of the oldest point at or after `since`.
            pub fn first_since(&self, since: u64) -> Option<u64> {
                self.points.iter().map(|p| p.end).find(|&e| e >= since)
            }

            /// The point `back` places before the newest (0 = the newest).
            pub fn nth_back(&self, back: usize) -> Option<&CounterPoint> {
                let i = self.points.len().checked_sub(back + 1)?;
                self.points.get(i)
            }

            /// The sum of the rises of every point that ended at or after `span_start`.
            pub fn rise_since(&self, span_start: u64) -> f64 {
                let mut total = 0.0;
                for (i, p) in self.points.iter().enumerate() {
                    if p.end >= span_start {
                        let prev = i.checked_sub(1).map(|j| &self.points[j]);
                        total += rise(prev, p, span_start);
                    }
                }
                total
            }

            /// The rise into the point `back` places before the newest (0 = the newest), with
            /// `window_start` the start of that point's window; None when there is no such point.
            pub fn rise_of(&self, back: usize, window_start: u64) -> Option<f64> {
                let n = self.points.len();
                let i = n.checked_sub(back + 1)?;
                let prev = i.checked_sub(1).map(|j| &self.points[j]);
                Some(rise(prev, &self.points[i], window_start))
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Record(u64, u64, f64, usize),
        Prune(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u64..60, prop_oneof![Just(0u64), Just(1), Just(5), Just(7)], 0u32..50, 2usize..9)
                .prop_map(|(e, s, v, c)| Op::Record(e, s, f64::from(v) / 10.0, c)),
            1 => (0u64..60).prop_map(Op::Prune),
        ]
    }

    proptest! {
        /// Every answer of the compact counter equals the reference's after any sequence of
        /// points (out of order, replaced, restarted with other starts, thinned) and prunes.
        #[test]
        fn compact_counter_answers_as_the_reference(ops in proptest::collection::vec(op(), 0..80)) {
            let (mut c, mut r) = (Counter::default(), reference::Reference::default());
            for op in ops {
                match op {
                    Op::Record(end, start, value, cap) => {
                        let p = cp(end, start, value);
                        c.record(p, cap);
                        r.record(p, cap);
                    }
                    Op::Prune(at) => {
                        c.prune(at);
                        r.prune(at);
                    }
                }
                prop_assert_eq!(c.latest(), r.latest().copied());
                for back in 0..10 {
                    prop_assert_eq!(c.nth_back(back), r.nth_back(back).copied());
                    for ws in [0, 3, 30] {
                        prop_assert_eq!(c.rise_of(back, ws), r.rise_of(back, ws));
                    }
                }
                for since in 0..62 {
                    prop_assert_eq!(c.rise_since(since), r.rise_since(since));
                    prop_assert_eq!(c.first_since(since), r.first_since(since));
                }
                // Compact: points that all share a start keep none of their own.
                let starts: Vec<u64> = (0..c.points.len()).filter_map(|i| c.point(i)).map(|p| p.start).collect();
                if starts.windows(2).all(|w| w[0] == w[1]) {
                    prop_assert!(c.other.is_empty(), "{:?}", c);
                }
            }
        }
    }

    fn cp(end: u64, start: u64, value: f64) -> CounterPoint {
        CounterPoint { end, start, value }
    }

    #[test]
    fn rises_follow_the_counter_rules() {
        let cases = [
            // (prev, cur, span_start, want, why)
            (Some(cp(10, 1, 5.0)), cp(20, 1, 8.0), 0, 3.0, "difference"),
            (Some(cp(10, 1, 5.0)), cp(20, 1, 5.0), 0, 0.0, "flat"),
            (
                Some(cp(10, 1, 5.0)),
                cp(20, 15, 2.0),
                0,
                2.0,
                "restart: new start",
            ),
            (
                Some(cp(10, 1, 5.0)),
                cp(20, 1, 2.0),
                0,
                2.0,
                "restart: value fell",
            ),
            (
                None,
                cp(20, 12, 4.0),
                10,
                4.0,
                "fresh counter inside the span",
            ),
            (None, cp(20, 5, 4.0), 10, 0.0, "counter older than the span"),
            (None, cp(20, 0, 4.0), 0, 0.0, "unknown start"),
        ];
        for (prev, cur, span, want, why) in cases {
            assert_eq!(rise(prev.as_ref(), &cur, span), want, "{why}");
        }
    }

    #[test]
    fn counter_sums_rises_and_thins_evenly() {
        let mut c = Counter::default();
        // Arrive out of order; the same end twice keeps the later value.
        for (end, v) in [(30, 9.0), (10, 2.0), (20, 4.0), (20, 5.0), (40, 9.0)] {
            c.record(cp(end, 1, v), 16);
        }
        assert_eq!(c.rise_since(0), 9.0, "counter started at 1 ≥ 0: all of it");
        assert_eq!(c.rise_since(15), 7.0, "from the point at 10 (value 2) to 9");
        assert_eq!(c.rise_of(0, 30), Some(0.0), "flat last window");
        assert_eq!(c.rise_of(1, 20), Some(4.0));
        assert_eq!(c.rise_of(3, 0), Some(2.0), "first point, fresh counter");
        assert_eq!(c.rise_of(4, 0), None);
        c.prune(25);
        assert_eq!(c.latest().unwrap().end, 40);
        assert_eq!(c.rise_since(25), 4.0, "the point at 20 stays as the base");
        // Thinning keeps the total between the first and last point.
        let mut t = Counter::default();
        for i in 0..100u64 {
            t.record(cp(i * 10 + 10, 1, (i * i) as f64), 8);
        }
        assert_eq!(t.points.len(), 8);
        assert_eq!(t.points.front().unwrap().0, 10);
        assert_eq!(t.latest().unwrap().end, 1000);
        assert_eq!(t.rise_since(0), 99.0 * 99.0);
    }

    fn bw(start: u64, end: u64, busy: f64) -> BusyWindow {
        BusyWindow { start, end, busy }
    }

    #[test]
    fn busy_sums_hold_each_pod_at_offset_windows() {
        // Pod a: windows (0,10], (10,20], (20,30]; pod b offset by 5 s: (5,15], (15,25], (25,35].
        let a = vec![bw(0, 10, 1.0), bw(10, 20, 2.0), bw(20, 30, 3.0)];
        let b = vec![bw(5, 15, 10.0), bw(15, 25, 20.0), bw(25, 35, 30.0)];
        let ls = vec![a, b];
        let f = frontier(&ls).unwrap();
        assert_eq!(f, 30, "b's window to 35 waits for a's next");
        let sums = busy_sums(&ls, 0, f);
        // t=10: a(0,10]=1 + b(5,15]=10; t=15: a(10,20]=2 + b(5,15]=10; t=20: 2+20; t=25: 3+20;
        // t=30: 3+30.
        assert_eq!(
            sums,
            vec![(10, 11.0), (15, 12.0), (20, 22.0), (25, 23.0), (30, 33.0)]
        );
        // A pod that stopped reporting does not hold the frontier back, and adds nothing after
        // its last window.
        let gone = vec![bw(0, 10, 5.0)];
        let c = vec![
            bw(0, 10, 1.0),
            bw(10, 20, 1.0),
            bw(20, 30, 1.0),
            bw(30, 40, 1.0),
        ];
        let ls = vec![gone, c];
        assert_eq!(frontier(&ls), Some(40));
        let sums = busy_sums(&ls, 0, 40);
        assert_eq!(sums, vec![(10, 6.0), (20, 1.0), (30, 1.0), (40, 1.0)]);
        // A small gap between windows (next starts 0.5 s late) is bridged.
        let gap = vec![bw(0, 10_000, 2.0), bw(10_500, 20_000, 4.0)];
        let other = vec![bw(0, 10_200, 1.0), bw(10_200, 20_000, 1.0)];
        let sums = busy_sums(&[gap, other], 0, 20_000);
        assert_eq!(sums, vec![(10_000, 3.0), (10_200, 5.0), (20_000, 5.0)]);
    }

    /// The definition read literally: at each instant, each listener's first window ending at
    /// or after it, if that window (widened by a tenth) began before it.
    fn busy_sums_by_definition(
        ls: &[Vec<BusyWindow>],
        from: u64,
        frontier: u64,
    ) -> Vec<(u64, f64)> {
        let mut instants: Vec<u64> = ls
            .iter()
            .flatten()
            .map(|w| w.end)
            .filter(|&t| t >= from && t <= frontier)
            .collect();
        instants.sort_unstable();
        instants.dedup();
        instants
            .into_iter()
            .map(|t| {
                let sum = ls
                    .iter()
                    .filter_map(|ws| {
                        let w = ws.get(ws.partition_point(|w| w.end < t))?;
                        let tolerance = (w.end - w.start.min(w.end)) / 10;
                        (w.end == t || w.start < t + tolerance).then_some(w.busy)
                    })
                    .sum();
                (t, sum)
            })
            .collect()
    }

    #[test]
    fn the_sweep_matches_the_definition() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..200 {
            let pods = 1 + next(12) as usize;
            let ls: Vec<Vec<BusyWindow>> = (0..pods)
                .map(|_| {
                    let mut t = next(20_000);
                    let len = 5_000 + next(10_000);
                    (0..1 + next(10))
                        .map(|_| {
                            // Mostly contiguous, sometimes a small or a large gap.
                            let gap = [0, 0, 0, next(len / 5), next(3 * len)][next(5) as usize];
                            let start = t + gap;
                            t = start + len;
                            BusyWindow {
                                start,
                                end: t,
                                busy: next(64) as f64 / 8.0,
                            }
                        })
                        .collect()
                })
                .collect();
            let frontier = frontier(&ls).unwrap();
            let from = next(30_000);
            let a = busy_sums(&ls, from, frontier);
            let b = busy_sums_by_definition(&ls, from, frontier);
            assert_eq!(a.len(), b.len(), "round {round}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.0, y.0, "round {round}");
                assert!(
                    (x.1 - y.1).abs() < 1e-9,
                    "round {round} at {}: {} vs {}",
                    x.0,
                    x.1,
                    y.1
                );
            }
        }
    }

    #[test]
    fn mode_prefers_the_larger_on_a_tie() {
        assert_eq!(mode([4, 4, 8]), 4);
        assert_eq!(mode([4, 8]), 8);
        assert_eq!(mode([]), 0);
    }
}
