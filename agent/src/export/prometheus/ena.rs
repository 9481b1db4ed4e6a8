//! ENA allowance counters and the conntrack allowance gauge on /metrics.

use super::families::*;

#[derive(Default)]
pub struct Ena {
    exceeded: Family<Labels, Counter>,
    conntrack_available: Family<Labels, Gauge>,
}

impl Ena {
    pub fn register(&self, r: &mut Registry) {
        register(r, &metric::ENA_ALLOWANCE_EXCEEDED, self.exceeded.clone());
        register(
            r,
            &metric::ENA_CONNTRACK_AVAILABLE,
            self.conntrack_available.clone(),
        );
    }

    pub fn update(&self, report: &Report) {
        for i in &report.interfaces {
            let il = iface(i);
            for (name, total) in &i.allowance_totals {
                let a = name.trim_end_matches("_allowance_exceeded");
                follow(
                    &self.exceeded.get_or_create(&with(&il, attr::ALLOWANCE, a)),
                    *total,
                );
            }
            match i.conntrack_allowance_available {
                Some(v) if i.capturing => {
                    self.conntrack_available
                        .get_or_create(&il)
                        .set(v.min(i64::MAX as u64) as i64);
                }
                _ => {
                    self.conntrack_available.remove(&il);
                }
            }
        }
    }
}
