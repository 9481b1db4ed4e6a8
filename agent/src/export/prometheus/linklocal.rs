//! Link-local packets per interface on /metrics.

use super::families::*;
use crate::sources::linklocal::Service;

#[derive(Default)]
pub struct LinkLocal {
    packets: Family<Labels, Counter>,
    peak: Family<Labels, Gauge>,
    service_peak: Family<Labels, Gauge>,
    mean: Family<Labels, F64Gauge>,
    limit: Family<Labels, Gauge>,
    utilization: Family<Labels, F64Gauge>,
    drops: Family<Labels, Counter>,
}

impl LinkLocal {
    pub fn register(&self, r: &mut Registry) {
        register(
            r,
            &metric::LINKLOCAL_SERVICE_PPS_PEAK,
            self.service_peak.clone(),
        );
        register(r, &metric::LINKLOCAL_PACKETS, self.packets.clone());
        register(r, &metric::LINKLOCAL_PPS_PEAK, self.peak.clone());
        register(r, &metric::LINKLOCAL_PPS_MEAN, self.mean.clone());
        register(r, &metric::LINKLOCAL_PPS_LIMIT, self.limit.clone());
        register(r, &metric::LINKLOCAL_UTILIZATION, self.utilization.clone());
        register(r, &metric::CAPTURE_DROPS, self.drops.clone());
    }

    pub fn update(&self, report: &Report) {
        for i in &report.interfaces {
            let il = iface(i);
            for s in Service::ALL {
                let l = with(&il, attr::SERVICE, s.as_str());
                match i.by_service.get(&s) {
                    Some(f) if i.capturing => {
                        self.service_peak.get_or_create(&l).set(f.peak_pps as i64);
                    }
                    _ => {
                        self.service_peak.remove(&l);
                    }
                };
                follow(&self.packets.get_or_create(&l), i.packets_total[s.index()]);
            }
            if !i.capturing {
                self.peak.remove(&il);
                self.mean.remove(&il);
                self.limit.remove(&il);
                self.utilization.remove(&il);
            } else {
                self.peak.get_or_create(&il).set(i.peak_pps as i64);
                self.mean.get_or_create(&il).set(i.mean_pps);
                self.limit.get_or_create(&il).set(i.limit_pps as i64);
                self.utilization.get_or_create(&il).set(i.utilization);
            }
            let d = vec![(attr::INTERFACE, i.name.clone())];
            follow(&self.drops.get_or_create(&d), i.drops_total);
        }
    }
}
