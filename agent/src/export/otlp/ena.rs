//! ENA allowance counters per interface (the driver's cumulative drop counts).

use super::linklocal::interface_attributes;
use super::points::*;

pub fn metrics(report: &Report, w: Span) -> Vec<Metric> {
    let mut allowance = vec![];
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let a = interface_attributes(i);
        for (name, total) in &i.allowance_totals {
            let aa = with(
                &a,
                attr::ALLOWANCE,
                name.trim_end_matches("_allowance_exceeded"),
            );
            allowance.push(point(&aa, w.process_start, w.end, AsInt(*total as i64)));
        }
    }
    match allowance.is_empty() {
        true => vec![],
        false => vec![number(&metric::ENA_ALLOWANCE_EXCEEDED, allowance)],
    }
}
