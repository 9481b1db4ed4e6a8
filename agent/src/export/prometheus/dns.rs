//! DNS on /metrics: query, response, unanswered and search-expansion counters per interface,
//! and the last window's top talkers (gauges: only the window's top entries are shown).

use super::families::*;
use crate::export::identity;

#[derive(Default)]
pub struct Dns {
    queries: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    unanswered: Family<Labels, Counter>,
    expansion: Family<Labels, Counter>,
    share: Family<Labels, F64Gauge>,
    qnames: Family<Labels, Gauge>,
    sources: Family<Labels, Gauge>,
    source_expansion: Family<Labels, Gauge>,
}

impl Dns {
    pub fn register(&self, r: &mut Registry) {
        register(r, &metric::DNS_SEARCH_EXPANSION_SHARE, self.share.clone());
        register(r, &metric::DNS_TOP_QNAME_QUERIES, self.qnames.clone());
        register(r, &metric::DNS_TOP_SOURCE_QUERIES, self.sources.clone());
        let x = self.source_expansion.clone();
        register(r, &metric::DNS_TOP_SOURCE_SEARCH_EXPANSION, x);
        register(r, &metric::DNS_QUERIES, self.queries.clone());
        register(r, &metric::DNS_RESPONSES, self.responses.clone());
        register(r, &metric::DNS_UNANSWERED, self.unanswered.clone());
        register(r, &metric::DNS_SEARCH_EXPANSION, self.expansion.clone());
    }

    pub fn update(&self, report: &Report) {
        for i in &report.interfaces {
            let il = iface(i);
            let t = &i.dns_totals;
            follow(&self.queries.get_or_create(&il), t.queries);
            follow(&self.unanswered.get_or_create(&il), t.unanswered);
            follow(&self.expansion.get_or_create(&il), t.search_expansion);
            for (rcode, n) in &t.responses {
                follow(
                    &self.responses.get_or_create(&with(&il, attr::RCODE, rcode)),
                    *n,
                );
            }
        }
        self.update_talkers(report);
    }

    fn update_talkers(&self, report: &Report) {
        self.share.clear();
        self.qnames.clear();
        self.sources.clear();
        self.source_expansion.clear();
        for i in report.interfaces.iter().filter(|i| i.capturing) {
            let Some(d) = &i.dns else { continue };
            let il = iface(i);
            self.share.get_or_create(&il).set(d.search_expansion_share);
            for q in &d.top_qnames {
                let l = with(&il, attr::QNAME, &q.qname);
                self.qnames.get_or_create(&l).set(q.queries as i64);
            }
            for s in &d.top_sources {
                let (ns, pod) = identity::source_pod(s);
                let (kind, name) = identity::workload(s.workload.as_ref());
                let mut l = with(&il, attr::SOURCE, &s.source);
                l.extend([
                    (attr::NAMESPACE, ns.to_string()),
                    (attr::POD, pod.to_string()),
                    (attr::WORKLOAD_KIND, kind.to_string()),
                    (attr::WORKLOAD, name.to_string()),
                ]);
                self.sources.get_or_create(&l).set(s.queries as i64);
                let x = s.search_expansion_packets as i64;
                self.source_expansion.get_or_create(&l).set(x);
            }
        }
    }
}
