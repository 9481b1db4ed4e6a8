//! Pod use and co-burst figures (the report's `pod_use`, `pod_use_omitted`, `co_burst`).

use super::{Labels, Out};
use crate::report::Report;
use crate::sources::pod_use::{CpuUse, MemoryUse};
use headroom_signals::{attr, metric};

pub(super) fn figures(out: &mut Out, report: &Report) {
    for p in &report.pod_use {
        let (kind, workload) = match &p.workload {
            Some(w) => (w.kind.as_str(), w.name.as_str()),
            None => ("", ""),
        };
        let labels = |container: &str| -> Labels {
            vec![
                (attr::NAMESPACE, p.namespace.clone().unwrap_or_default()),
                (attr::POD, p.name.clone().unwrap_or_else(|| p.uid.clone())),
                (attr::CONTAINER, container.to_string()),
                (attr::WORKLOAD_KIND, kind.to_string()),
                (attr::WORKLOAD, workload.to_string()),
            ]
        };
        cgroup(out, &labels(""), &p.cpu, &p.memory);
        for c in &p.containers {
            let name = c.name.as_deref().unwrap_or(&c.id);
            cgroup(out, &labels(name), &c.cpu, &c.memory);
        }
    }
    out.int(
        &metric::POD_USE_OMITTED,
        &Vec::new(),
        report.pod_use_omitted.total(),
    );
    let Some(co) = &report.co_burst else { return };
    let none = Vec::new();
    out.float(
        &metric::NODE_POD_CPU_BUSIEST_SECOND,
        &none,
        co.cpu_busiest_second_cores,
    );
    out.float(&metric::NODE_POD_CPU_REQUESTS, &none, co.cpu_requests_cores);
    out.float(&metric::NODE_POD_CPU_LIMITS, &none, co.cpu_limits_cores);
    for w in &co.workloads {
        let l = vec![
            (attr::NAMESPACE, w.namespace.clone()),
            (attr::WORKLOAD_KIND, w.workload.kind.clone()),
            (attr::WORKLOAD, w.workload.name.clone()),
        ];
        out.int(&metric::WORKLOAD_PODS, &l, w.pods.into());
        let max = w.above_request_max.into();
        out.int(&metric::WORKLOAD_PODS_ABOVE_REQUEST_MAX, &l, max);
        let p95 = w.above_request_p95.into();
        out.int(&metric::WORKLOAD_PODS_ABOVE_REQUEST_P95, &l, p95);
    }
}

fn cgroup(out: &mut Out, l: &Labels, cpu: &CpuUse, mem: &MemoryUse) {
    let floats = [
        (&metric::POD_CPU, cpu.mean_cores),
        (&metric::POD_CPU_BUSIEST_SECOND, cpu.busiest_second_cores),
        (&metric::POD_CPU_REQUEST, cpu.request_cores),
        (&metric::POD_CPU_LIMIT, cpu.limit_cores),
        (&metric::POD_CPU_THROTTLED, cpu.throttled_seconds),
    ];
    for (m, v) in floats {
        if let Some(v) = v {
            out.float(m, l, v);
        }
    }
    let ints = [
        (&metric::POD_MEMORY, mem.current_bytes),
        (&metric::POD_MEMORY_PEAK, mem.peak_bytes),
        (&metric::POD_MEMORY_REQUEST, mem.request_bytes),
        (&metric::POD_MEMORY_LIMIT, mem.limit_bytes),
    ];
    for (m, v) in ints {
        if let Some(v) = v {
            out.int(m, l, v);
        }
    }
}
