//! ENA allowance counters: the driver's own count of packets EC2 dropped or queued because an
//! instance allowance was exceeded (ENA driver ≥ 2.2.10; `conntrack_allowance_available` ≥ 2.8.1).
//!
//! Read through the `SIOCETHTOOL` ioctl, as `ethtool -S` does: `ETHTOOL_GSSET_INFO` for the number
//! of `ETH_SS_STATS` strings, `ETHTOOL_GSTRINGS` for their names, `ETHTOOL_GSTATS` for the values
//! (include/uapi/linux/ethtool.h), in [`crate::sys::ethtool`], into a buffer with slack that ends at
//! a guard page; a sample whose count changed between the calls is discarded.

pub use crate::sys::ethtool::{read_stats, EnaError};
use std::collections::BTreeMap;

/// Cumulative drop counters, by their ENA names. Only a rise says "dropping now".
pub const EXCEEDED: [&str; 5] = [
    "linklocal_allowance_exceeded",
    "pps_allowance_exceeded",
    "conntrack_allowance_exceeded",
    "bw_in_allowance_exceeded",
    "bw_out_allowance_exceeded",
];

/// A gauge: tracked connections that can still be established (ENA ≥ 2.8.1).
pub const CONNTRACK_AVAILABLE: &str = "conntrack_allowance_available";

/// The allowance counters found in a driver's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    /// `*_allowance_exceeded` counters present, cumulative.
    pub exceeded: BTreeMap<String, u64>,
    /// `conntrack_allowance_available`, when the driver has it.
    pub conntrack_available: Option<u64>,
}

/// Picks the allowance counters out of a statistics table. Pure. None: the driver has none of
/// them (veth, virtio, an older ENA driver).
pub fn allowances(stats: &[(String, u64)]) -> Option<Allowances> {
    let mut a = Allowances::default();
    for (name, v) in stats {
        if EXCEEDED.contains(&name.as_str()) {
            a.exceeded.insert(name.clone(), *v);
        } else if name == CONNTRACK_AVAILABLE {
            a.conntrack_available = Some(*v);
        }
    }
    (!a.exceeded.is_empty() || a.conntrack_available.is_some()).then_some(a)
}

/// A counter's rise between two readings. A counter that went backwards was reset (driver
/// reload, device reset): it counted from zero since, so its new value is the rise.
pub fn rise(prev: u64, now: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        now
    }
}

/// One interface's allowance figures for a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowanceWindow {
    /// Rise of each `*_allowance_exceeded` counter in the window; None when the driver has none.
    pub deltas: Option<BTreeMap<String, u64>>,
    /// Sum of rises since the agent started (for Prometheus counters), per counter.
    pub totals: BTreeMap<String, u64>,
    pub conntrack_available: Option<u64>,
}

/// Turns successive readings into per-window rises, per interface.
#[derive(Debug, Default)]
pub struct Tracker {
    prev: BTreeMap<String, BTreeMap<String, u64>>,
    totals: BTreeMap<String, BTreeMap<String, u64>>,
    warned: std::collections::BTreeSet<String>,
    /// Samples discarded because the driver's statistics count changed between the ioctl
    /// calls (the names would not line up with the values).
    pub resized: u64,
}

impl Tracker {
    /// Reads `iface` now and returns the rise since the previous reading (the first reading is
    /// the baseline: rises of zero).
    pub fn sample(&mut self, iface: &str) -> AllowanceWindow {
        match read_stats(iface) {
            Ok(stats) => self.update(iface, allowances(&stats)),
            Err(error @ EnaError::Resized { .. }) => {
                self.resized += 1;
                if self.resized == 1 {
                    tracing::warn!(message = "Driver statistics changed size while read; sample discarded (logged once).", interface = %iface, %error);
                } else {
                    tracing::debug!(message = "Driver statistics sample discarded.", interface = %iface, discarded = self.resized, %error);
                }
                self.update(iface, None)
            }
            Err(error) => {
                if !matches!(error, EnaError::Unsupported { .. })
                    && self.warned.insert(iface.to_string())
                {
                    tracing::warn!(message = "Cannot read driver statistics; allowance is null.", interface = %iface, %error);
                }
                self.update(iface, None)
            }
        }
    }

    /// The pure half of [`Tracker::sample`].
    pub fn update(&mut self, iface: &str, now: Option<Allowances>) -> AllowanceWindow {
        let Some(now) = now else {
            return AllowanceWindow {
                totals: self.totals.get(iface).cloned().unwrap_or_default(),
                ..AllowanceWindow::default()
            };
        };
        let prev = self.prev.get(iface);
        let totals = self.totals.entry(iface.to_string()).or_default();
        let deltas: BTreeMap<String, u64> = now
            .exceeded
            .iter()
            .map(|(k, &v)| {
                let d = match prev.and_then(|p| p.get(k)) {
                    Some(&p) => rise(p, v),
                    None => 0,
                };
                *totals.entry(k.clone()).or_default() += d;
                (k.clone(), d)
            })
            .collect();
        let totals = totals.clone();
        self.prev.insert(iface.to_string(), now.exceeded);
        AllowanceWindow {
            deltas: (!deltas.is_empty()).then_some(deltas),
            totals,
            conntrack_available: now.conntrack_available,
        }
    }
}

impl crate::sources::Source for Tracker {
    fn name(&self) -> &'static str {
        "ena"
    }

    /// Each interface's allowance rises since the previous report.
    fn fill(&mut self, _window: crate::sources::Window, report: &mut crate::report::Report) {
        for i in &mut report.interfaces {
            let w = if i.capturing {
                self.sample(&i.name)
            } else {
                self.update(&i.name, None)
            };
            apply(i, w);
        }
    }
}

/// One interface's allowance window into its report.
pub fn apply(i: &mut crate::report::InterfaceReport, w: AllowanceWindow) {
    i.allowance = w.deltas;
    i.allowance_totals = w.totals;
    i.conntrack_allowance_available = w.conntrack_available;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statistics an ENA interface shows (names from the Linux driver's ena_ethtool.c:
    /// global, ENI and per-queue strings), abridged.
    fn ena_table(linklocal: u64, pps: u64) -> Vec<(String, u64)> {
        [
            ("tx_timeout", 0),
            ("suspend", 0),
            ("resume", 0),
            ("wd_expired", 0),
            ("interface_up", 1),
            ("interface_down", 0),
            ("admin_q_pause", 0),
            ("bw_in_allowance_exceeded", 7),
            ("bw_out_allowance_exceeded", 0),
            ("pps_allowance_exceeded", pps),
            ("conntrack_allowance_exceeded", 0),
            ("linklocal_allowance_exceeded", linklocal),
            ("conntrack_allowance_available", 420_000),
            ("queue_0_tx_cnt", 1234),
            ("queue_0_tx_bytes", 99999),
            ("queue_0_rx_cnt", 4321),
            ("ena_admin_q_aborted_cmd", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn ena_table_gives_every_allowance() {
        let a = allowances(&ena_table(5, 3)).unwrap();
        assert_eq!(a.exceeded.len(), 5);
        assert_eq!(a.exceeded["linklocal_allowance_exceeded"], 5);
        assert_eq!(a.exceeded["pps_allowance_exceeded"], 3);
        assert_eq!(a.exceeded["bw_in_allowance_exceeded"], 7);
        assert_eq!(a.conntrack_available, Some(420_000));
        assert!(!a.exceeded.contains_key("queue_0_tx_cnt"));
    }

    #[test]
    fn tables_without_allowances_give_none() {
        let veth: Vec<(String, u64)> = [("peer_ifindex", 5), ("rx_queue_0_xdp_packets", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(allowances(&veth), None);
        assert_eq!(allowances(&[]), None);
    }

    #[test]
    fn rises_and_resets() {
        for (prev, now, want) in [
            (0, 0, 0),
            (5, 9, 4),
            (9, 9, 0),
            (100, 3, 3),
            (u64::MAX, 0, 0),
        ] {
            assert_eq!(rise(prev, now), want, "{prev} -> {now}");
        }
    }

    #[test]
    fn tracker_baselines_then_reports_rises_and_survives_a_reset() {
        let mut t = Tracker::default();
        let w = t.update("eth0", allowances(&ena_table(10, 0)));
        assert_eq!(
            w.deltas.as_ref().unwrap()["linklocal_allowance_exceeded"],
            0
        );
        let w = t.update("eth0", allowances(&ena_table(25, 2)));
        let d = w.deltas.unwrap();
        assert_eq!(d["linklocal_allowance_exceeded"], 15);
        assert_eq!(d["pps_allowance_exceeded"], 2);
        assert_eq!(d["bw_in_allowance_exceeded"], 0);
        // Driver reload: counters restart from zero; 4 new drops since.
        let w = t.update("eth0", allowances(&ena_table(4, 0)));
        assert_eq!(w.deltas.unwrap()["linklocal_allowance_exceeded"], 4);
        assert_eq!(w.totals["linklocal_allowance_exceeded"], 19);
        assert_eq!(w.totals["pps_allowance_exceeded"], 2);
        assert_eq!(w.conntrack_available, Some(420_000));
        // The interface stops answering: null allowance, totals kept.
        let w = t.update("eth0", None);
        assert_eq!(w.deltas, None);
        assert_eq!(w.totals["linklocal_allowance_exceeded"], 19);
    }

    #[test]
    fn loopback_has_no_driver_statistics_and_no_panic() {
        // lo exists in every namespace and has no ETH_SS_STATS strings.
        match read_stats("lo") {
            Ok(s) => assert!(allowances(&s).is_none()),
            Err(e) => assert!(matches!(e, EnaError::Unsupported { .. }), "{e}"),
        }
        assert!(matches!(
            read_stats("nosuchif0"),
            Err(EnaError::Gone { .. }) | Err(EnaError::Unsupported { .. })
        ));
        assert!(matches!(read_stats(""), Err(EnaError::Name { .. })));
    }
}
