//! Per-interface packet series shared between capture threads and whoever cuts report windows.

use crate::sources::dns::parse::DnsPacket;
use crate::sources::dns::tracker::{DnsFigures, DnsTotals, Tracker, TrackerConfig};
use crate::sources::linklocal::series::{Figures, Series, STEP_NS};
use crate::sources::linklocal::Service;
use crate::sys::packet::TapKind;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One interface's figures for one report window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterfaceWindow {
    pub name: String,
    pub mac: Option<String>,
    pub figures: Figures,
    /// Packets the kernel matched but could not hand to the agent, in this window.
    pub kernel_drops: u64,
    /// Packets counted since the agent started, per service.
    pub packets_total: [u64; 3],
    /// Drops since the agent started.
    pub drops_total: u64,
    pub capturing: bool,
    /// The tap counting on this interface (`ebpf` or `af_packet`).
    pub tap: Option<&'static str>,
    /// DNS figures for the window (only from `cut`; `peek` leaves them empty).
    pub dns: Option<DnsFigures>,
    pub dns_totals: DnsTotals,
}

#[derive(Debug)]
struct Iface {
    mac: Option<String>,
    series: Series,
    packets_total: [u64; 3],
    drops_total: u64,
    drops_reported: u64,
    capturing: bool,
    tap: TapKind,
    /// When its capture thread last came round its loop (at least every 200 ms when alive).
    beat: std::time::Instant,
    dns: Tracker,
}

/// Shared, cheap to clone. Capture threads lock it once per batch of packets.
#[derive(Debug, Clone)]
pub struct Meter {
    inner: Arc<Mutex<BTreeMap<String, Iface>>>,
    /// Search suffixes for DNS trackers, including interfaces attached later.
    search: Arc<Mutex<crate::sources::dns::search::SearchDomains>>,
    keep_seconds: u64,
    /// The DNS trackers' answer table (`[dns]`).
    cache: crate::sources::dns::cache::CacheConfig,
}

impl Meter {
    /// A meter that keeps at least `keep_seconds` of history per interface.
    pub fn new(keep_seconds: u64) -> Self {
        Meter {
            inner: Arc::default(),
            search: Arc::default(),
            keep_seconds: keep_seconds + 2,
            cache: Default::default(),
        }
    }

    /// The same meter with this answer table for interfaces attached from now on.
    pub fn with_cache(mut self, cache: crate::sources::dns::cache::CacheConfig) -> Self {
        self.cache = cache;
        self
    }

    /// Sets the search suffixes every interface's DNS tracker recognises.
    pub fn set_search(&self, search: crate::sources::dns::search::SearchDomains) {
        for e in self.inner.lock().unwrap().values_mut() {
            e.dns.set_search(search.clone());
        }
        *self.search.lock().unwrap() = search;
    }

    pub fn attach(&self, name: &str, mac: Option<String>, tap: TapKind) {
        let mut m = self.inner.lock().unwrap();
        let e = m.entry(name.to_string()).or_insert_with(|| Iface {
            mac: None,
            series: Series::new(self.keep_seconds),
            packets_total: [0; 3],
            drops_total: 0,
            drops_reported: 0,
            capturing: true,
            tap,
            beat: std::time::Instant::now(),
            dns: Tracker::new(TrackerConfig {
                search: self.search.lock().unwrap().clone(),
                cache: self.cache,
                ..TrackerConfig::default()
            }),
        });
        e.mac = mac;
        e.capturing = true;
        e.tap = tap;
        e.beat = std::time::Instant::now();
    }

    /// The capture thread of `name` is alive and reading (called once per poll round).
    pub fn beat(&self, name: &str) {
        if let Some(e) = self.inner.lock().unwrap().get_mut(name) {
            e.beat = std::time::Instant::now();
        }
    }

    /// Captured interfaces whose thread has not come round its loop for longer than
    /// `max_age` (stuck, or gone without detaching), with how long.
    pub fn stalled(&self, max_age: std::time::Duration) -> Vec<(String, std::time::Duration)> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.capturing)
            .map(|(n, e)| (n.clone(), e.beat.elapsed()))
            .filter(|(_, age)| *age > max_age)
            .collect()
    }

    /// Marks an interface as no longer captured; its figures stay until reported.
    pub fn detach(&self, name: &str) {
        if let Some(e) = self.inner.lock().unwrap().get_mut(name) {
            e.capturing = false;
        }
    }

    /// Adds counted packets (time, service, how many) and DNS messages (queries sent, replies
    /// received).
    pub fn record(&self, name: &str, packets: &[(u64, Service, u32)], dns: &[(u64, DnsPacket)]) {
        let mut m = self.inner.lock().unwrap();
        if let Some(e) = m.get_mut(name) {
            for &(ts, s, n) in packets {
                e.series.add_n(ts, s, n);
                e.packets_total[s.index()] += n as u64;
            }
            for (ts, d) in dns {
                if d.response {
                    e.dns.response(*ts, d);
                } else {
                    e.dns.query(*ts, d);
                }
            }
        }
    }

    pub fn add_drops(&self, name: &str, n: u64) {
        if let Some(e) = self.inner.lock().unwrap().get_mut(name) {
            e.drops_total += n;
        }
    }

    /// Whether any interface is being captured.
    pub fn capturing(&self) -> bool {
        self.inner.lock().unwrap().values().any(|e| e.capturing)
    }

    /// Figures for `[start_ns, end_ns)` without consuming anything (for live views).
    pub fn peek(&self, start_ns: u64, end_ns: u64) -> Vec<InterfaceWindow> {
        let m = self.inner.lock().unwrap();
        m.iter()
            .map(|(name, e)| window_of(name, e, start_ns, end_ns))
            .collect()
    }

    /// Cuts the report window `[start_ns, end_ns)`: figures, drops since the last cut, and
    /// forgets history older than the one second the next window's peaks may reach back into.
    /// Interfaces no longer captured are reported one last time, then forgotten.
    pub fn cut(&self, start_ns: u64, end_ns: u64) -> Vec<InterfaceWindow> {
        let mut m = self.inner.lock().unwrap();
        let out = m
            .iter_mut()
            .map(|(name, e)| {
                let mut w = window_of(name, e, start_ns, end_ns);
                let seconds = end_ns.saturating_sub(start_ns) as f64 / 1e9;
                w.dns = Some(e.dns.cut(end_ns, seconds));
                w.dns_totals = e.dns.totals();
                e.drops_reported = e.drops_total;
                e.series
                    .trim_before(end_ns.saturating_sub(1_000_000_000 + STEP_NS));
                w
            })
            .collect();
        m.retain(|_, e| e.capturing);
        out
    }
}

fn window_of(name: &str, e: &Iface, start_ns: u64, end_ns: u64) -> InterfaceWindow {
    InterfaceWindow {
        name: name.to_string(),
        mac: e.mac.clone(),
        figures: e.series.figures(start_ns, end_ns),
        kernel_drops: e.drops_total - e.drops_reported,
        packets_total: e.packets_total,
        drops_total: e.drops_total,
        capturing: e.capturing,
        tap: Some(e.tap.as_str()),
        dns: None,
        dns_totals: e.dns.totals(),
    }
}

/// Test fixture shared by the exporters' tests.
#[cfg(test)]
impl InterfaceWindow {
    /// Capturing interface `name`: `packets` per service (dns, imds, ntp) in the window, its
    /// one-second `peak` (per service `by_service`), running totals `totals` and `drops`.
    pub(crate) fn capturing(
        name: &str,
        packets: [u64; 3],
        peak: u64,
        by_service: [u64; 3],
        totals: [u64; 3],
        drops: u64,
    ) -> InterfaceWindow {
        InterfaceWindow {
            name: name.into(),
            figures: Figures {
                packets,
                peak,
                peak_by_service: by_service,
            },
            packets_total: totals,
            drops_total: drops,
            capturing: true,
            ..Default::default()
        }
    }

    /// `eth0` with DNS top talkers: 40 queries, 30 of them on search suffixes (share 0.75), one
    /// name (25 queries) and one source, pod shop/web-1 of workload `web` of `workload_kind`.
    pub(crate) fn with_dns_talkers(workload_kind: &str) -> InterfaceWindow {
        use crate::sources::dns::tracker::{TopName, TopSource};
        InterfaceWindow {
            name: "eth0".into(),
            figures: Figures {
                packets: [10, 2, 0],
                peak: 7,
                peak_by_service: [6, 2, 0],
            },
            capturing: true,
            dns: Some(DnsFigures {
                queries: 40,
                search_expansion_packets: 30,
                search_expansion_share: 0.75,
                ndots2_savings_pps: 3.0,
                fqdn_savings_pps: 3.0,
                cacheable_queries: 8,
                cacheable_share: 0.2,
                cache_savings_pps: 0.8,
                cache_savings_peak_pps: 5.0,
                top_qnames: vec![TopName {
                    qname: "db.shop.svc.cluster.local".into(),
                    queries: 25,
                }],
                top_sources: vec![TopSource {
                    source: "10.0.0.5".into(),
                    pod: Some("shop/web-1".into()),
                    workload: Some(crate::pod::Workload {
                        kind: workload_kind.into(),
                        name: "web".into(),
                    }),
                    queries: 40,
                    pps: 4.0,
                    search_expansion_packets: 30,
                    ndots2_savings_pps: 3.0,
                    fqdn_savings_pps: 3.0,
                    cacheable_queries: 8,
                    cacheable_share: 0.2,
                    cache_savings_pps: 0.8,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * S;

    #[test]
    fn cut_reports_drops_once_and_forgets_detached_interfaces() {
        let m = Meter::new(10);
        m.attach("eni0", Some("02:00:00:00:00:01".into()), TapKind::Ebpf);
        m.record(
            "eni0",
            &[(T0 + 10, Service::Dns, 1), (T0 + S + 10, Service::Imds, 1)],
            &[],
        );
        m.add_drops("eni0", 3);
        let w = m.cut(T0, T0 + 2 * S);
        assert_eq!(w[0].figures.total(), 2);
        assert_eq!(w[0].kernel_drops, 3);
        assert_eq!(w[0].packets_total, [1, 1, 0]);
        assert_eq!(w[0].tap, Some("ebpf"));
        m.detach("eni0");
        let w = m.cut(T0 + 2 * S, T0 + 4 * S);
        assert_eq!((w[0].kernel_drops, w[0].figures.total()), (0, 0));
        assert!(!w[0].capturing);
        assert!(m.cut(T0 + 4 * S, T0 + 6 * S).is_empty());
    }

    #[test]
    fn packets_for_unknown_interfaces_are_ignored() {
        let m = Meter::new(10);
        m.record("nope", &[(T0, Service::Dns, 1)], &[]);
        assert!(m.peek(T0, T0 + S).is_empty());
        assert!(!m.capturing());
    }
}
