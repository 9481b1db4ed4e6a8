//! DNS per interface, the collector side: the newest window's search-expansion share, the
//! savings the agent measured for each fix (node-local cache, ndots:2, FQDN), top talkers
//! (names and sources, from the agent's Space-Saving sketches), and the rises of the agent's
//! query and unanswered counters (kept with the interface's counters). Top talkers are also
//! kept over the last hour ([`Hour`]: each name's and source's busiest window), so a burst
//! can be read after the windows that follow it carried no names.

use super::otlp::{get, Attrs};
use super::store::At;
use crate::time::rfc3339;
use headroom_signals::{attr, metric};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most top names and top sources kept per interface (the agent sends its top 10 of each),
/// for the newest window and again for the hour.
pub const MAX_TOP: usize = 100;

/// Most names and sources of the hour each interface's snapshot carries (the busiest).
pub const HOUR_SHOWN: usize = 10;

otlp_names! {
    pub fn takes;
    DNS_SEARCH_EXPANSION_SHARE, DNS_TOP_QNAME_QUERIES, DNS_TOP_SOURCE_QUERIES,
    DNS_TOP_SOURCE_SEARCH_EXPANSION, DNS_TOP_SOURCE_CACHE_SAVINGS_PPS, DNS_CACHEABLE_SHARE,
    DNS_CACHE_SAVINGS_PPS, DNS_CACHE_SAVINGS_PPS_PEAK, DNS_NDOTS2_SAVINGS_PPS, DNS_FQDN_SAVINGS_PPS
}
/// The DNS counters whose rises per window matter (kept by the interface under their names
/// without `headroom.`).
pub const COUNTERS: [&str; 2] = [metric::DNS_QUERIES.otlp, metric::DNS_UNANSWERED.otlp];
const QUERIES: &str = "dns.queries";
const UNANSWERED: &str = "dns.unanswered";

/// The DNS figures of one window (the newest one seen), and the hour's top talkers.
#[derive(Debug, Clone, Default)]
pub struct DnsLatest {
    pub end: u64,
    share: Option<f64>,
    savings: Savings,
    qnames: BTreeMap<Arc<str>, f64>,
    sources: BTreeMap<Arc<str>, SourceEntry>,
    hour: Hour,
}

/// One name's or source's busiest window of the last hour, and the busiest window after it
/// (which takes over when the peak leaves the hour: the hour's highest stays exact until a
/// second peak in a row leaves it, then the next window seen starts afresh).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Peak {
    queries: f64,
    end: u64,
    next: Option<(f64, u64)>,
    /// Windows of the hour the name or source was among the agent's top talkers.
    windows: u32,
    last_end: u64,
}

impl Peak {
    fn note(&mut self, v: f64, end: u64) {
        if end != self.last_end {
            self.windows = self.windows.saturating_add(1);
            self.last_end = self.last_end.max(end);
        }
        if v >= self.queries || self.end == 0 {
            (self.queries, self.end, self.next) = (v, end, None);
        } else if self.next.map_or(true, |(q, _)| v >= q) {
            self.next = Some((v, end));
        }
    }

    /// False when nothing of the hour is left.
    fn expire(&mut self, oldest: u64) -> bool {
        if self.end >= oldest {
            return true;
        }
        match self.next.take() {
            Some((q, end)) if end >= oldest => {
                (self.queries, self.end) = (q, end);
                true
            }
            _ => false,
        }
    }
}

/// The hour's top names and sources of one interface, at most [`MAX_TOP`] of each: a new one
/// over the bound takes the place of the one with the smallest peak if its own is larger.
///
/// Names, sources and who the sources are as shared strings (here and in [`DnsLatest`]):
/// each evaluation's snapshot shows them for every interface, at 5 000 nodes a quarter of a
/// million strings, which it now shares instead of copying.
#[derive(Debug, Clone, Default)]
struct Hour {
    qnames: BTreeMap<Arc<str>, Peak>,
    sources: BTreeMap<Arc<str>, (SourceEntry, Peak)>,
}

/// Makes room for a new key in a map bounded by [`MAX_TOP`]: false when the map is full and
/// no entry's peak is below `v`.
fn room<V>(map: &mut BTreeMap<Arc<str>, V>, key: &str, v: f64, peak: impl Fn(&V) -> f64) -> bool {
    if map.contains_key(key) || map.len() < MAX_TOP {
        return true;
    }
    let Some((smallest, q)) = map
        .iter()
        .map(|(k, e)| (k, peak(e)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return false;
    };
    if q >= v {
        return false;
    }
    let smallest = smallest.clone();
    map.remove(&smallest);
    true
}

impl Hour {
    fn qname(&mut self, q: &str, v: f64, end: u64) {
        if room(&mut self.qnames, q, v, |p| p.queries) {
            entry(&mut self.qnames, q).note(v, end);
        }
    }

    fn source(&mut self, src: &str, who: &SourceEntry, v: f64, end: u64) {
        if room(&mut self.sources, src, v, |e| e.1.queries) {
            let e = entry(&mut self.sources, src);
            if end >= e.1.last_end {
                e.0.set(who);
            }
            e.1.note(v, end);
        }
    }

    fn expire(&mut self, oldest: u64) {
        self.qnames.retain(|_, p| p.expire(oldest));
        self.sources.retain(|_, e| e.1.expire(oldest));
    }
}

/// Drops what of the interface's hour of DNS is older than `oldest`; false when nothing is
/// left.
pub fn expire(slot: &mut Option<DnsLatest>, oldest: u64) -> bool {
    let Some(d) = slot else { return false };
    d.hour.expire(oldest);
    if d.end < oldest && d.hour.qnames.is_empty() && d.hour.sources.is_empty() {
        *slot = None;
    }
    slot.is_some()
}

/// The entry for `key`, made when missing (the key is copied only then).
fn entry<'m, V: Default>(map: &'m mut BTreeMap<Arc<str>, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.into(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

#[derive(Debug, Clone, Default)]
struct SourceEntry {
    namespace: Arc<str>,
    pod: Arc<str>,
    workload_kind: Arc<str>,
    workload: Arc<str>,
    queries: f64,
    search_expansion_packets: f64,
    cache_savings_pps: f64,
}

impl SourceEntry {
    /// Who a source is (the pod behind it; "" for what the point does not say), without
    /// figures; the strings of `like` (the hour's entry) where they are the same.
    fn of(a: &Attrs, like: Option<&SourceEntry>) -> SourceEntry {
        let field = |key: &str, have: Option<&Arc<str>>| -> Arc<str> {
            let v = get(a, key).unwrap_or("");
            match have {
                Some(h) if **h == *v => h.clone(),
                _ => v.into(),
            }
        };
        SourceEntry {
            namespace: field(attr::NAMESPACE, like.map(|l| &l.namespace)),
            pod: field(attr::POD, like.map(|l| &l.pod)),
            workload_kind: field(attr::WORKLOAD_KIND, like.map(|l| &l.workload_kind)),
            workload: field(attr::WORKLOAD, like.map(|l| &l.workload)),
            ..SourceEntry::default()
        }
    }

    /// Takes who `other` is (its strings shared), keeping its own figures.
    fn set(&mut self, other: &SourceEntry) {
        self.namespace.clone_from(&other.namespace);
        self.pod.clone_from(&other.pod);
        self.workload_kind.clone_from(&other.workload_kind);
        self.workload.clone_from(&other.workload);
    }
}

/// One point of a share or top-talker metric; false when refused (no name or source, or
/// over [`MAX_TOP`]).
pub fn take(slot: &mut Option<DnsLatest>, name: &str, a: &Attrs, v: f64, at: At) -> bool {
    let dns = slot.get_or_insert_with(DnsLatest::default);
    // The hour's top talkers take every window, a late one too.
    match name {
        DNS_TOP_QNAME_QUERIES => {
            if let Some(q) = get(a, attr::QNAME) {
                dns.hour.qname(q, v, at.end);
            }
        }
        DNS_TOP_SOURCE_QUERIES => {
            if let Some(src) = get(a, attr::SOURCE) {
                let who = SourceEntry::of(a, dns.hour.sources.get(src).map(|e| &e.0));
                dns.hour.source(src, &who, v, at.end);
            }
        }
        _ => {}
    }
    if at.end > dns.end {
        *dns = DnsLatest {
            end: at.end,
            hour: std::mem::take(&mut dns.hour),
            ..DnsLatest::default()
        };
    } else if at.end < dns.end {
        // An older window's top talkers: the newer ones stand.
        return true;
    }
    match name {
        DNS_SEARCH_EXPANSION_SHARE => dns.share = Some(v),
        DNS_CACHEABLE_SHARE => dns.savings.cacheable_share = Some(v),
        DNS_CACHE_SAVINGS_PPS => dns.savings.cache_pps = Some(v),
        DNS_CACHE_SAVINGS_PPS_PEAK => dns.savings.cache_peak_pps = Some(v),
        DNS_NDOTS2_SAVINGS_PPS => dns.savings.ndots2_pps = Some(v),
        DNS_FQDN_SAVINGS_PPS => dns.savings.fqdn_pps = Some(v),
        DNS_TOP_QNAME_QUERIES => {
            let Some(q) = get(a, attr::QNAME) else {
                return false;
            };
            if !dns.qnames.contains_key(q) && dns.qnames.len() >= MAX_TOP {
                return false;
            }
            *entry(&mut dns.qnames, q) = v;
        }
        _ => {
            let Some(src) = get(a, attr::SOURCE) else {
                return false;
            };
            if !dns.sources.contains_key(src) && dns.sources.len() >= MAX_TOP {
                return false;
            }
            let who = SourceEntry::of(a, dns.hour.sources.get(src).map(|e| &e.0));
            let e = entry(&mut dns.sources, src);
            e.set(&who);
            match name {
                DNS_TOP_SOURCE_QUERIES => e.queries = v,
                DNS_TOP_SOURCE_CACHE_SAVINGS_PPS => e.cache_savings_pps = v,
                _ => e.search_expansion_packets = v,
            }
        }
    }
    true
}

/// The interface's DNS snapshot; `rise(counter, back)` is the rise of an interface counter
/// (`dns.queries`, `dns.unanswered`) into its point `back` places before the newest, None
/// without that counter or point. None without any DNS data.
pub fn snapshot(
    latest: Option<&DnsLatest>,
    has_counter: impl Fn(&str) -> bool,
    rise: impl Fn(&str, usize) -> Option<u64>,
) -> Option<DnsSnapshot> {
    if latest.is_none() && !has_counter(QUERIES) && !has_counter(UNANSWERED) {
        return None;
    }
    let rise = |c, back| rise(c, back).unwrap_or(0);
    let mut dns = DnsSnapshot {
        unanswered_latest: rise(UNANSWERED, 0),
        unanswered_previous: rise(UNANSWERED, 1),
        queries_latest: rise(QUERIES, 0),
        ..Default::default()
    };
    if let Some(d) = latest {
        dns.search_expansion_share = d.share.unwrap_or(0.0);
        dns.measured = d.savings;
        dns.top_qnames = d
            .qnames
            .iter()
            .map(|(q, n)| QnameCount {
                qname: q.clone(),
                queries: n.round() as u64,
            })
            .collect();
        dns.top_qnames
            .sort_by(|a, b| b.queries.cmp(&a.queries).then(a.qname.cmp(&b.qname)));
        dns.top_sources = d
            .sources
            .iter()
            .map(|(src, e)| SourceCount {
                source: src.clone(),
                namespace: e.namespace.clone(),
                pod: e.pod.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                queries: e.queries.round() as u64,
                search_expansion_packets: e.search_expansion_packets.round() as u64,
                cache_savings_pps: e.cache_savings_pps,
            })
            .collect();
        dns.top_sources
            .sort_by(|a, b| b.queries.cmp(&a.queries).then(a.source.cmp(&b.source)));
        let peak = |p: &Peak| PeakWindow {
            peak_queries: p.queries.round() as u64,
            peak_window_end: rfc3339(p.end),
            windows: p.windows,
        };
        let mut names: Vec<(&Arc<str>, &Peak)> = d.hour.qnames.iter().collect();
        names.sort_by(|a, b| b.1.queries.total_cmp(&a.1.queries).then(a.0.cmp(b.0)));
        dns.top_qnames_hour = names
            .into_iter()
            .take(HOUR_SHOWN)
            .map(|(q, p)| QnameHour {
                qname: q.clone(),
                peak: peak(p),
            })
            .collect();
        let mut sources: Vec<_> = d.hour.sources.iter().collect();
        sources.sort_by(|a, b| b.1 .1.queries.total_cmp(&a.1 .1.queries).then(a.0.cmp(b.0)));
        dns.top_sources_hour = sources
            .into_iter()
            .take(HOUR_SHOWN)
            .map(|(src, (e, p))| SourceHour {
                source: src.clone(),
                namespace: e.namespace.clone(),
                pod: e.pod.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                peak: peak(p),
            })
            .collect();
    }
    Some(dns)
}

/// A top talker's busiest window of the last hour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeakWindow {
    /// Its queries in that window (as the agent's sketch counted them).
    pub peak_queries: u64,
    /// When that window ended (RFC 3339).
    pub peak_window_end: String,
    /// Windows of the hour it was among the agent's top talkers.
    pub windows: u32,
}

/// A name among the interface's top talkers in the last hour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QnameHour {
    pub qname: Arc<str>,
    #[serde(flatten)]
    pub peak: PeakWindow,
}

/// A source among the interface's top talkers in the last hour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SourceHour {
    pub source: Arc<str>,
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub workload_kind: Arc<str>,
    pub workload: Arc<str>,
    #[serde(flatten)]
    pub peak: PeakWindow,
}

/// DNS of one interface: the latest window's shares and top talkers, and counter rises.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DnsSnapshot {
    /// Queries for a name plus a search suffix that failed, over all queries.
    pub search_expansion_share: f64,
    /// What each fix would have saved in the latest window, as the agent measured it (None:
    /// an agent that does not send that figure).
    pub measured: Savings,
    pub top_qnames: Vec<QnameCount>,
    pub top_sources: Vec<SourceCount>,
    /// The last hour's top names and sources (at most [`HOUR_SHOWN`] each), busiest window
    /// first: a burst stays readable after the windows that follow it.
    pub top_qnames_hour: Vec<QnameHour>,
    pub top_sources_hour: Vec<SourceHour>,
    /// Rise of the agent's unanswered-queries counter in the latest window and the one before.
    pub unanswered_latest: u64,
    pub unanswered_previous: u64,
    pub queries_latest: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QnameCount {
    pub qname: Arc<str>,
    pub queries: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SourceCount {
    pub source: Arc<str>,
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub workload_kind: Arc<str>,
    pub workload: Arc<str>,
    pub queries: u64,
    pub search_expansion_packets: u64,
    /// Packets/s a node-local cache would have answered for this source (window mean).
    pub cache_savings_pps: f64,
}

/// The fix savings an agent measured on one interface in one window (packets/s).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Savings {
    /// Queries a node-local cache would have answered, over all queries.
    pub cacheable_share: Option<f64>,
    /// Node-local cache: the window's mean and its busiest second.
    pub cache_pps: Option<f64>,
    pub cache_peak_pps: Option<f64>,
    /// `ndots:2` and fully qualified names (window means).
    pub ndots2_pps: Option<f64>,
    pub fqdn_pps: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_keeps_at_most_max_top_and_a_newcomer_displaces_only_a_smaller_one() {
        let mut h = Hour::default();
        for i in 0..MAX_TOP {
            h.qname(&format!("n{i}"), 10.0 + i as f64, 1);
        }
        h.qname("small", 5.0, 2);
        assert_eq!(h.qnames.len(), MAX_TOP);
        assert!(!h.qnames.contains_key("small"));
        h.qname("big", 500.0, 2);
        assert_eq!(h.qnames.len(), MAX_TOP);
        assert!(h.qnames.contains_key("big") && !h.qnames.contains_key("n0"));
        // A known name is always taken.
        h.qname("n1", 1.0, 3);
        assert_eq!((h.qnames["n1"].queries, h.qnames["n1"].windows), (11.0, 2));
    }

    #[test]
    fn a_peak_that_leaves_the_hour_hands_over_to_the_busiest_window_after_it() {
        let mut p = Peak::default();
        for (v, end) in [(5.0, 10), (50.0, 20), (7.0, 30), (9.0, 40), (8.0, 50)] {
            p.note(v, end);
        }
        assert_eq!((p.queries, p.end, p.windows), (50.0, 20, 5));
        assert!(p.expire(21));
        assert_eq!((p.queries, p.end), (9.0, 40));
        assert!(
            !p.expire(41),
            "nothing of the hour after the second peak is known"
        );
    }
}
