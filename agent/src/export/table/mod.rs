//! The report as text for people (`once --format table`, parts of `watch`): reads the report only.

pub mod listeners;
pub mod probes;
pub mod storage;

use crate::report::Report;
use crate::sources::linklocal::{Service, LIMIT_PPS};

impl Report {
    /// A human table of the report.
    pub fn table(&self) -> String {
        let mut out = format!(
            "headroom — node {}, window from {} for {} s; link-local limit {} packets/s per interface\n",
            self.node.name, self.window.start, self.window.seconds, LIMIT_PPS
        );
        out += &format!(
            "{:<16} {:<22} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7}\n",
            "INTERFACE",
            "ENI",
            "PACKETS",
            "MEAN/S",
            "PEAK/S",
            "UTIL",
            "DNS",
            "IMDS",
            "NTP",
            "DROPS"
        );
        for i in &self.interfaces {
            let svc = |s: Service| i.by_service.get(&s).map(|f| f.packets).unwrap_or(0);
            out += &format!(
                "{:<16} {:<22} {:>9} {:>9.1} {:>9} {:>6.1}% {:>8} {:>8} {:>8} {:>7}\n",
                i.name,
                i.eni_id.as_deref().unwrap_or("-"),
                i.linklocal_packets,
                i.mean_pps,
                i.peak_pps,
                i.utilization * 100.0,
                svc(Service::Dns),
                svc(Service::Imds),
                svc(Service::Ntp),
                i.kernel_drops
            );
        }
        if self.interfaces.is_empty() {
            out += "(no interfaces measured)\n";
        }
        for i in &self.interfaces {
            let Some(d) = i.dns.as_ref().filter(|d| d.queries > 0) else {
                continue;
            };
            let rcodes: Vec<String> = d.rcodes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out += &format!(
                "\nDNS on {}: {} queries, {} answered, {} unanswered, {} pending; {}; latency p50 {} ms, p99 {} ms\n",
                i.name, d.queries, d.answered, d.unanswered, d.pending, rcodes.join(", "),
                d.latency_ms.p50, d.latency_ms.p99
            );
            out += &format!(
                "  search-list walk: {} wasted queries ({:.1} % of all); ndots:2 would save {} packets/s, FQDNs (trailing dot) {} packets/s\n",
                d.search_expansion_packets,
                d.search_expansion_share * 100.0,
                d.ndots2_savings_pps,
                d.fqdn_savings_pps
            );
            out += &format!(
                "  node-local cache: {} queries cacheable ({:.1} % of all); would save {} packets/s, {} in the busiest second ({} answers pushed out of the table)\n",
                d.cacheable_queries,
                d.cacheable_share * 100.0,
                d.cache_savings_pps,
                d.cache_savings_peak_pps,
                d.cache_table_evictions
            );
            for s in &d.top_sources {
                out += &format!(
                    "  source {:<39} {:>7} queries {:>8.1}/s  wasted {:>6}  ndots:2 saves {:>7.1}/s  FQDN saves {:>7.1}/s  cache saves {:>7.1}/s\n",
                    s.source, s.queries, s.pps, s.search_expansion_packets, s.ndots2_savings_pps, s.fqdn_savings_pps, s.cache_savings_pps
                );
            }
            for n in &d.top_qnames {
                out += &format!("  name   {:<60} {:>7} queries\n", n.qname, n.queries);
            }
        }
        out += &probes::table(&self.probes);
        out += &storage::table(&self.storage);
        if !self.resolver_checks.is_empty() {
            out += "\nResolver checks:\n";
            for c in &self.resolver_checks {
                out += &format!(
                    "  {:<24} {:<40} {:<9} {:>8.2} ms  {}\n",
                    c.resolver, c.qname, c.rcode, c.elapsed_ms, c.at
                );
            }
        }
        out += "\n";
        out += &listeners::table(&self.listeners);
        out += &self.identity_and_allowance_table();
        out
    }
}

impl Report {
    /// The instance, and each interface's ENI and ENA allowance rises in the window.
    fn identity_and_allowance_table(&self) -> String {
        let n = &self.node;
        let mut out = match &n.instance_id {
            Some(id) => format!(
                "instance {id} ({}, {})\n",
                n.instance_type.as_deref().unwrap_or("-"),
                n.availability_zone.as_deref().unwrap_or("-")
            ),
            None => "instance unknown (IMDS did not answer: not on EC2?)\n".to_string(),
        };
        out += &format!(
            "{:<16} {:<22} {:>4} {:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}\n",
            "INTERFACE",
            "ENI",
            "DEV",
            "MAC",
            "LINKLOCAL",
            "PPS",
            "CONNTRACK",
            "BW_IN",
            "BW_OUT",
            "CT_AVAILABLE"
        );
        for i in &self.interfaces {
            let a = |k: &str| match &i.allowance {
                Some(m) => m
                    .get(&format!("{k}_allowance_exceeded"))
                    .map(|v| format!("+{v}"))
                    .unwrap_or_else(|| "-".into()),
                None => "-".into(),
            };
            out += &format!(
                "{:<16} {:<22} {:>4} {:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}\n",
                i.name,
                i.eni_id.as_deref().unwrap_or("-"),
                i.device_number
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                i.mac.as_deref().unwrap_or("-"),
                a("linklocal"),
                a("pps"),
                a("conntrack"),
                a("bw_in"),
                a("bw_out"),
                i.conntrack_allowance_available
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        out
    }
}
