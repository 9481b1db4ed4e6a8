//! DNS per interface: query, response, unanswered and search-expansion counters (sent in every
//! request), the search-expansion share, and the window's top names and sources.

use super::linklocal::interface_attributes;
use super::points::*;

pub fn metrics(report: &Report, w: Span) -> Vec<Metric> {
    let (mut queries, mut responses, mut unanswered, mut expansion, mut share) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let a = interface_attributes(i);
        let t = &i.dns_totals;
        let total = |v: u64| point(&a, w.process_start, w.end, AsInt(v as i64));
        queries.push(total(t.queries));
        unanswered.push(total(t.unanswered));
        expansion.push(total(t.search_expansion));
        for (rcode, n) in &t.responses {
            let ra = with(&a, attr::RCODE, rcode);
            responses.push(point(&ra, w.process_start, w.end, AsInt(*n as i64)));
        }
        if let Some(d) = &i.dns {
            let s = AsDouble(d.search_expansion_share);
            share.push(point(&a, w.start, w.end, s));
        }
    }
    let mut out = vec![
        number(&metric::DNS_QUERIES, queries),
        number(&metric::DNS_RESPONSES, responses),
        number(&metric::DNS_UNANSWERED, unanswered),
        number(&metric::DNS_SEARCH_EXPANSION, expansion),
    ];
    if !share.is_empty() {
        out.push(number(&metric::DNS_SEARCH_EXPANSION_SHARE, share));
    }
    out
}

/// The window's top names and sources (gauges: only its top entries).
pub fn top_talkers(report: &Report, w: Span) -> Vec<Metric> {
    let (mut qnames, mut sources, mut source_expansion) = (vec![], vec![], vec![]);
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let Some(d) = &i.dns else { continue };
        let a = interface_attributes(i);
        for q in &d.top_qnames {
            let qa = with(&a, attr::QNAME, &q.qname);
            qnames.push(point(&qa, w.start, w.end, AsInt(q.queries as i64)));
        }
        for s in &d.top_sources {
            let (ns, pod) = identity::source_pod(s);
            let (kind, name) = identity::workload(s.workload.as_ref());
            let mut sa = with(&a, attr::SOURCE, &s.source);
            sa.extend([
                kv(attr::NAMESPACE, ns),
                kv(attr::POD, pod),
                kv(attr::WORKLOAD_KIND, kind),
                kv(attr::WORKLOAD, name),
            ]);
            sources.push(point(&sa, w.start, w.end, AsInt(s.queries as i64)));
            let x = AsInt(s.search_expansion_packets as i64);
            source_expansion.push(point(&sa, w.start, w.end, x));
        }
    }
    [
        number(&metric::DNS_TOP_QNAME_QUERIES, qnames),
        number(&metric::DNS_TOP_SOURCE_QUERIES, sources),
        number(&metric::DNS_TOP_SOURCE_SEARCH_EXPANSION, source_expansion),
    ]
    .into_iter()
    .filter(|m| super::points::data_points(m) > 0)
    .collect()
}
