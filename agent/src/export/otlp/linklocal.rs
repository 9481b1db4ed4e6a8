//! Link-local packets per interface: peaks, means, the limit, utilization, packet and capture
//! drop counters, and each service's peak.

use super::points::*;
use crate::sources::linklocal::Service;

/// `interface` and `eni` of each capturing interface.
pub fn interface_attributes(i: &crate::report::InterfaceReport) -> [KeyValue; 2] {
    [
        kv(attr::INTERFACE, &i.name),
        kv(attr::ENI, i.eni_id.as_deref().unwrap_or("")),
    ]
}

/// The families sent in every request (a receiver sees them before any interface captures),
/// then each service's peak when there is one.
pub fn metrics(report: &Report, w: Span) -> Vec<Metric> {
    let (mut peak, mut mean, mut limit, mut util, mut packets, mut drops, mut service_peak) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let a = interface_attributes(i);
        peak.push(point(&a, w.start, w.end, AsInt(i.peak_pps as i64)));
        mean.push(point(&a, w.start, w.end, AsDouble(i.mean_pps)));
        limit.push(point(&a, w.start, w.end, AsInt(i.limit_pps as i64)));
        util.push(point(&a, w.start, w.end, AsDouble(i.utilization)));
        let total = AsInt(i.drops_total as i64);
        drops.push(point(&a, w.process_start, w.end, total));
        for s in Service::ALL {
            let sa = with(&a, attr::SERVICE, s.as_str());
            if let Some(f) = i.by_service.get(&s) {
                let p = AsInt(f.peak_pps as i64);
                service_peak.push(point(&sa, w.start, w.end, p));
            }
            let total = AsInt(i.packets_total[s.index()] as i64);
            packets.push(point(&sa, w.process_start, w.end, total));
        }
    }
    let mut out = vec![
        number(&metric::LINKLOCAL_PPS_PEAK, peak),
        number(&metric::LINKLOCAL_PPS_MEAN, mean),
        number(&metric::LINKLOCAL_PPS_LIMIT, limit),
        number(&metric::LINKLOCAL_UTILIZATION, util),
        number(&metric::LINKLOCAL_PACKETS, packets),
        number(&metric::CAPTURE_DROPS, drops),
    ];
    if !service_peak.is_empty() {
        out.push(number(&metric::LINKLOCAL_SERVICE_PPS_PEAK, service_peak));
    }
    out
}
