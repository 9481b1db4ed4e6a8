//! DNS per interface, the collector side: the newest window's search-expansion share, the
//! savings the agent measured for each fix (node-local cache, ndots:2, FQDN), top talkers
//! (names and sources, from the agent's Space-Saving sketches), and the rises of the agent's
//! query and unanswered counters (kept with the interface's counters).

use super::otlp::{attr_or_empty, get, Attrs};
use super::store::At;
use headroom_signals::{attr, metric};
use serde::Serialize;
use std::collections::BTreeMap;

/// Most top names and top sources kept per interface (the agent sends its top 10 of each).
pub const MAX_TOP: usize = 100;

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

/// The DNS figures of one window (the newest one seen).
#[derive(Debug, Clone, Default)]
pub struct DnsLatest {
    pub end: u64,
    share: Option<f64>,
    savings: Savings,
    qnames: BTreeMap<String, f64>,
    sources: BTreeMap<String, SourceEntry>,
}

#[derive(Debug, Clone, Default)]
struct SourceEntry {
    namespace: String,
    pod: String,
    workload_kind: String,
    workload: String,
    queries: f64,
    search_expansion_packets: f64,
    cache_savings_pps: f64,
}

/// One point of a share or top-talker metric; false when refused (no name or source, or
/// over [`MAX_TOP`]).
pub fn take(slot: &mut Option<DnsLatest>, name: &str, a: &Attrs, v: f64, at: At) -> bool {
    let dns = slot.get_or_insert_with(DnsLatest::default);
    if at.end > dns.end {
        *dns = DnsLatest {
            end: at.end,
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
            dns.qnames.insert(q.to_string(), v);
        }
        _ => {
            let Some(src) = get(a, attr::SOURCE) else {
                return false;
            };
            if !dns.sources.contains_key(src) && dns.sources.len() >= MAX_TOP {
                return false;
            }
            let e = dns.sources.entry(src.to_string()).or_default();
            e.namespace = attr_or_empty(a, attr::NAMESPACE);
            e.pod = attr_or_empty(a, attr::POD);
            e.workload_kind = attr_or_empty(a, attr::WORKLOAD_KIND);
            e.workload = attr_or_empty(a, attr::WORKLOAD);
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
    }
    Some(dns)
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
    /// Rise of the agent's unanswered-queries counter in the latest window and the one before.
    pub unanswered_latest: u64,
    pub unanswered_previous: u64,
    pub queries_latest: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QnameCount {
    pub qname: String,
    pub queries: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SourceCount {
    pub source: String,
    pub namespace: String,
    pub pod: String,
    pub workload_kind: String,
    pub workload: String,
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
