//! Interfaces (ENIs), the collector side: per report window the link-local peak, mean, limit
//! and utilization, the DNS-only peak and the capture drops counter; the ENA allowance counters
//! and DNS totals whose rises per window matter; and the window's DNS figures (see
//! [`super::dns`]). Windows older than [`HISTORY`] go.

use super::aggregate::{Counter, CounterPoint};
use super::dns::{self, DnsLatest, DnsSnapshot};
use super::limits::{Limits, HISTORY};
use super::otlp::{attr_or_empty, get, Attrs};
use super::store::{At, Cuts, Part, Small};
use super::windows::{self, Packed, Windows};
use crate::time::rfc3339;
use headroom_signals::{attr, otlp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the ENA driver's allowance counters end with.
const ALLOWANCE_SUFFIX: &str = "_allowance_exceeded";
/// Most distinct counters (ENA allowances, DNS totals) kept per interface.
const MAX_IFACE_COUNTERS: usize = 16;
/// Points kept per interface counter: enough for the latest two windows' rises.
const IFACE_COUNTER_POINTS: usize = 3;

otlp_names! {
    LINKLOCAL_PACKETS, LINKLOCAL_PPS_PEAK, LINKLOCAL_PPS_MEAN, LINKLOCAL_PPS_LIMIT,
    LINKLOCAL_UTILIZATION, LINKLOCAL_SERVICE_PPS_PEAK, CAPTURE_DROPS, ENA_ALLOWANCE_EXCEEDED
}

/// Whether a metric feeds an interface: its window gauges and drops, its counters, its DNS.
/// The packets counter (per service) stays a plain latest-value metric.
pub fn takes(name: &str) -> bool {
    name != LINKLOCAL_PACKETS
        && (name == CAPTURE_DROPS
            || name.starts_with(otlp::LINKLOCAL_PREFIX)
            || is_counter(name)
            || dns::takes(name))
}

fn is_counter(name: &str) -> bool {
    name == ENA_ALLOWANCE_EXCEEDED || dns::COUNTERS.contains(&name)
}

/// One report window of one interface, as it arrived (any field may be missing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPoint {
    start_ns: u64,
    /// Cumulative capture drops at the window's end (NaN = missing; a counter keeps f64).
    drops_total: f64,
    peak: Small,
    mean: Small,
    utilization: Small,
    limit: Small,
    /// One-second peak of DNS packets alone (`service = dns`).
    dns_peak: Small,
}

impl Default for WindowPoint {
    fn default() -> Self {
        WindowPoint {
            start_ns: 0,
            drops_total: f64::NAN,
            peak: Small::default(),
            mean: Small::default(),
            utilization: Small::default(),
            limit: Small::default(),
            dns_peak: Small::default(),
        }
    }
}

/// The highest figures of a run of windows (those with a peak), for the hour's maxima.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourMax {
    peak_pps: u64,
    utilization: f64,
}

impl Packed for WindowPoint {
    type Summary = HourMax;

    fn summarize(&self, _end: u64, s: &mut HourMax) {
        if let Some((peak_pps, utilization)) = self.highs() {
            s.peak_pps = s.peak_pps.max(peak_pps);
            s.utilization = s.utilization.max(utilization);
        }
    }

    fn merge(s: &mut HourMax, o: &HourMax) {
        s.peak_pps = s.peak_pps.max(o.peak_pps);
        s.utilization = s.utilization.max(o.utilization);
    }

    fn pack(&self, end: u64, prev: &Self, prev_end: u64, out: &mut Vec<u8>) {
        windows::put_start(out, self.start_ns, end, prev.start_ns, prev_end);
        windows::put_xor(out, self.drops_total.to_bits(), prev.drops_total.to_bits());
        for (a, b) in self.smalls().into_iter().zip(prev.smalls()) {
            windows::put_xor(out, a.bits(), b.bits());
        }
    }

    fn unpack(end: u64, prev: &Self, prev_end: u64, input: &mut &[u8]) -> Option<Self> {
        let start_ns = windows::start(input, end, prev.start_ns, prev_end)?;
        let drops_total = f64::from_bits(windows::xor(input, prev.drops_total.to_bits())?);
        let mut s = prev.smalls();
        for x in &mut s {
            *x = Small::from_bits(windows::xor(input, x.bits())?);
        }
        let [peak, mean, utilization, limit, dns_peak] = s;
        Some(WindowPoint {
            start_ns,
            drops_total,
            peak,
            mean,
            utilization,
            limit,
            dns_peak,
        })
    }
}

impl WindowPoint {
    /// The window's peak (packets/s) and utilization as the snapshot shows them; None
    /// without a peak.
    fn highs(&self) -> Option<(u64, f64)> {
        let peak = self.peak.get()?;
        let limit = self.limit.get().unwrap_or(1024.0);
        let utilization = self.utilization.get().unwrap_or(if limit > 0.0 {
            ((peak / limit) * 1000.0).round() / 1000.0
        } else {
            0.0
        });
        Some((peak.round() as u64, utilization))
    }

    fn smalls(&self) -> [Small; 5] {
        [
            self.peak,
            self.mean,
            self.utilization,
            self.limit,
            self.dns_peak,
        ]
    }
}

/// One interface of a node, keyed by (interface, ENI id or "").
#[derive(Debug, Clone, Default)]
pub struct Interface {
    windows: Windows<WindowPoint>,
    /// `allowance:NAME` (ENA allowance counters), `dns.queries`, `dns.unanswered`.
    counters: BTreeMap<String, Counter>,
    /// The newest window's DNS figures and the hour's top talkers.
    dns: Option<DnsLatest>,
}

impl Part for Interface {
    type Key = (String, String);

    fn key(a: &Attrs) -> Option<Self::Key> {
        let iface = get(a, attr::INTERFACE)?;
        Some((iface.to_string(), attr_or_empty(a, attr::ENI)))
    }

    fn max_age(_: &Limits) -> Duration {
        HISTORY
    }

    fn max_per_node(limits: &Limits) -> usize {
        limits.max_interfaces_per_node
    }

    fn take(&mut self, name: &str, a: &Attrs, v: f64, at: At) -> bool {
        if dns::takes(name) {
            return dns::take(&mut self.dns, name, a, v, at);
        }
        if is_counter(name) {
            let key = match name {
                // The attribute holds the driver's counter name without the suffix
                // (`linklocal`); the snapshot names the counter (`linklocal_allowance_exceeded`).
                ENA_ALLOWANCE_EXCEEDED => match get(a, attr::ALLOWANCE) {
                    Some(al) if al.ends_with(ALLOWANCE_SUFFIX) => format!("allowance:{al}"),
                    Some(al) => format!("allowance:{al}{ALLOWANCE_SUFFIX}"),
                    None => return false,
                },
                n => n.trim_start_matches("headroom.").to_string(),
            };
            if !self.counters.contains_key(&key) && self.counters.len() >= MAX_IFACE_COUNTERS {
                return false;
            }
            self.counters.entry(key).or_default().record(
                CounterPoint {
                    end: at.end,
                    start: at.start,
                    value: v,
                },
                IFACE_COUNTER_POINTS,
            );
            return true;
        }
        self.windows.record(at.end, |w| {
            match name {
                LINKLOCAL_PPS_PEAK => w.peak = Small::of(v),
                LINKLOCAL_PPS_MEAN => w.mean = Small::of(v),
                LINKLOCAL_PPS_LIMIT => w.limit = Small::of(v),
                LINKLOCAL_UTILIZATION => w.utilization = Small::of(v),
                CAPTURE_DROPS => w.drops_total = v,
                LINKLOCAL_SERVICE_PPS_PEAK if get(a, attr::SERVICE) == Some("dns") => {
                    w.dns_peak = Small::of(v)
                }
                _ => {}
            }
            if name != CAPTURE_DROPS && at.start != 0 {
                w.start_ns = at.start;
            }
        });
        true
    }

    fn expire(&mut self, cuts: &Cuts) -> bool {
        self.windows.retain_since(cuts.oldest);
        self.counters
            .retain(|_, c| c.latest().is_some_and(|p| p.end >= cuts.oldest));
        let dns = dns::expire(&mut self.dns, cuts.oldest);
        !self.windows.is_empty() || !self.counters.is_empty() || dns
    }
}

impl Interface {
    /// The start of the window that ended at `end` (or `end` when unknown).
    fn window_start(&self, end: u64) -> u64 {
        self.windows
            .get(end)
            .map(|w| w.start_ns)
            .filter(|s| *s != 0 && *s <= end)
            .unwrap_or(end)
    }

    /// The counter's rise into its point `back` places before the newest, as a whole number.
    fn rise(&self, c: &Counter, back: usize) -> Option<u64> {
        let p = c.nth_back(back)?;
        let r = c.rise_of(back, self.window_start(p.end))?;
        Some(r.round() as u64)
    }

    /// The window's figures, given the capture drops counter of the window with a peak
    /// before it.
    fn figures(end: u64, w: &WindowPoint, prev_drops: Option<f64>) -> (u64, WindowFigures) {
        let (peak_pps, utilization) = w.highs().unwrap_or_default();
        let limit = w.limit.get().unwrap_or(1024.0);
        let drops_total = (!w.drops_total.is_nan()).then_some(w.drops_total);
        let drops = match (drops_total, prev_drops) {
            (Some(now), Some(before)) if now >= before => now - before,
            _ => 0.0,
        };
        let start = if w.start_ns == 0 { end } else { w.start_ns };
        let f = WindowFigures {
            seconds: ((end.saturating_sub(start)) as f64 / 1e6).round() / 1e3,
            peak_pps,
            mean_pps: w.mean.get().unwrap_or(0.0),
            utilization,
            limit_pps: limit.round() as u64,
            kernel_drops: drops.round() as u64,
            dns_peak_pps: w.dns_peak.get().map(|v| v.round() as u64),
            end_ns: end,
            ..Default::default()
        };
        (start, f)
    }

    /// The latest window with a peak from the newest (hot) windows alone: Some(None) when
    /// there is none, None when the windows it needs are older (read them all then).
    fn latest_from_newest(&self) -> Option<Option<(u64, WindowFigures)>> {
        let (mut newest, all) = self.windows.newest();
        let Some((end, w)) = newest.find(|(_, w)| w.peak.is_some()) else {
            return all.then_some(None);
        };
        let prev_drops = if w.drops_total.is_nan() {
            None
        } else {
            match newest.find(|(_, p)| p.peak.is_some() && !p.drops_total.is_nan()) {
                Some((_, p)) => Some(p.drops_total),
                None if all => None,
                None => return None,
            }
        };
        Some(Some(Self::figures(end, w, prev_drops)))
    }

    /// The interface as the snapshot shows it: every window of the last hour with
    /// `history`, else only the latest; None without any window with a peak.
    pub fn snapshot(&self, key: &(String, String), history: bool) -> Option<EniSnapshot> {
        let (iface, eni) = key;
        // Without history: the latest window from the newest few and the hour's highest
        // figures from the sealed blocks' summaries, not a pass over the hour's hundreds of
        // windows (at 5 000 nodes that pass was most of a snapshot).
        let lean = if history {
            None
        } else {
            self.latest_from_newest()
        };
        let (peak_pps_last_hour, utilization_last_hour, latest, windows) = match lean {
            Some(latest) => {
                let m = self.windows.summary();
                (m.peak_pps, m.utilization, latest, Vec::new())
            }
            None => self.walk(history),
        };
        let latest = latest.map(|(start, f)| text(start, &f))?;
        let latest_start = self.window_start(latest.end_ns);
        let allowance_exceeded_latest = self
            .counters
            .iter()
            .filter_map(|(k, c)| Some((k.strip_prefix("allowance:")?, c)))
            .filter(|(_, c)| c.latest().is_some_and(|p| p.end >= latest_start))
            .filter_map(|(k, c)| Some((k.to_string(), self.rise(c, 0)?)))
            .collect();
        let dns = dns::snapshot(
            self.dns.as_ref(),
            |k| self.counters.contains_key(k),
            |k, back| self.rise(self.counters.get(k)?, back),
        );
        Some(EniSnapshot {
            interface: iface.clone(),
            eni_id: (!eni.is_empty()).then(|| eni.clone()),
            peak_pps_last_hour,
            utilization_last_hour,
            latest: Some(latest),
            windows,
            allowance_exceeded_latest,
            dns,
        })
    }

    /// One pass over the hour's windows: the hour's highest figures, the latest window, and
    /// with `history` every window as text (only then: text for the hour's hundreds of
    /// windows at 5 000 nodes would allocate millions of strings).
    fn walk(&self, history: bool) -> (u64, f64, Option<(u64, WindowFigures)>, Vec<WindowFigures>) {
        let mut prev_drops: Option<f64> = None;
        let mut peak_pps_last_hour = 0;
        let mut utilization_last_hour = 0.0f64;
        let mut latest: Option<(u64, WindowFigures)> = None;
        let mut windows = Vec::new();
        for (end, w) in self.windows.iter().filter(|(_, w)| w.peak.is_some()) {
            let (start, f) = Self::figures(end, &w, prev_drops);
            if !w.drops_total.is_nan() {
                prev_drops = Some(w.drops_total);
            }
            peak_pps_last_hour = peak_pps_last_hour.max(f.peak_pps);
            utilization_last_hour = utilization_last_hour.max(f.utilization);
            if history {
                windows.push(text(start, &f));
            }
            latest = Some((start, f));
        }
        (peak_pps_last_hour, utilization_last_hour, latest, windows)
    }
}

/// A window's figures with its two times as text.
fn text(start: u64, f: &WindowFigures) -> WindowFigures {
    WindowFigures {
        start: rfc3339(start),
        end: rfc3339(f.end_ns),
        ..f.clone()
    }
}

/// One interface (ENI) of a node: its latest window, the last hour's highest peak, and every
/// window of the last hour (oldest first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EniSnapshot {
    pub interface: String,
    pub eni_id: Option<String>,
    pub latest: Option<WindowFigures>,
    pub peak_pps_last_hour: u64,
    pub utilization_last_hour: f64,
    pub windows: Vec<WindowFigures>,
    /// Rise of each ENA allowance counter (`linklocal_allowance_exceeded`, …) in the latest
    /// window; empty when the driver has none (any rise means EC2 is dropping now).
    pub allowance_exceeded_latest: BTreeMap<String, u64>,
    pub dns: Option<DnsSnapshot>,
}

/// One report window with the report's field names.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WindowFigures {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub peak_pps: u64,
    pub mean_pps: f64,
    pub utilization: f64,
    pub limit_pps: u64,
    /// Capture drops in this window (from the cumulative counter; 0 for the first window).
    pub kernel_drops: u64,
    /// The window's one-second peak of DNS packets alone (`by_service.dns.peak_pps`).
    pub dns_peak_pps: Option<u64>,
    #[serde(skip)]
    pub end_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of an interface window reads back after the window is sealed and packed.
    #[test]
    fn windows_read_back_after_packing() {
        let mut w: Windows<WindowPoint> = Windows::default();
        let want: Vec<(u64, WindowPoint)> = (1..=80u64)
            .map(|i| {
                let end = i * 10_000_000_000 + i * 13;
                let p = WindowPoint {
                    start_ns: if i % 9 == 0 { 0 } else { end - 10_000_000_000 },
                    drops_total: if i < 3 { f64::NAN } else { (i * i) as f64 },
                    peak: Small::of(900.0 + i as f64),
                    mean: Small::of(185.5),
                    utilization: Small::of((900.0 + i as f64) / 1024.0),
                    limit: Small::of(1024.0),
                    dns_peak: if i % 2 == 0 {
                        Small::default()
                    } else {
                        Small::of(i as f64)
                    },
                };
                (end, p)
            })
            .collect();
        for (end, p) in &want {
            w.record(*end, |x| *x = *p);
        }
        let got: Vec<(u64, WindowPoint)> = w.iter().collect();
        assert_eq!(got.len(), want.len());
        for ((ge, g), (we, x)) in got.iter().zip(&want) {
            assert_eq!(ge, we);
            assert_eq!(
                (
                    g.start_ns,
                    g.drops_total.to_bits(),
                    g.smalls().map(Small::bits)
                ),
                (
                    x.start_ns,
                    x.drops_total.to_bits(),
                    x.smalls().map(Small::bits)
                )
            );
        }
    }

    proptest::proptest! {
        /// The snapshot without history (latest from the newest windows, the hour's highs
        /// from the blocks' summaries) shows what one pass over every window shows: with
        /// windows missing a peak or a drops counter, late ones, and expiry.
        #[test]
        fn lean_snapshot_equals_a_pass_over_every_window(
            ops in proptest::collection::vec((0u64..300, 0u16..3000, 0u8..12), 1..200)
        ) {
            let mut i = Interface::default();
            let key = ("eth0".to_string(), String::new());
            for (slot, fig, op) in ops {
                let end = 1_000_000 + slot * 10_000;
                if op == 0 {
                    i.windows.retain_since(end);
                    continue;
                }
                i.windows.record(end, |w| {
                    w.start_ns = end - 10_000;
                    if op % 3 != 1 {
                        w.peak = Small::of(f64::from(fig));
                    }
                    if op % 4 != 2 {
                        w.drops_total = f64::from(fig % 700);
                    }
                    if op % 5 == 3 {
                        w.utilization = Small::of(f64::from(fig) / 997.0);
                    }
                    w.limit = Small::of(if op == 7 { 0.0 } else { 1024.0 });
                });
                let lean = i.snapshot(&key, false);
                let full = i.walk(false);
                let want = full.2.map(|(start, f)| (full.0, full.1, text(start, &f)));
                let got = lean.map(|s| (s.peak_pps_last_hour, s.utilization_last_hour, s.latest.unwrap()));
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
