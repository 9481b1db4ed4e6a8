//! The report's figures, walked once for both exporters: each is one metric (its
//! `headroom-signals` descriptor), one label set and one value. Gauges are the window's;
//! counters are running totals since the agent started. Probes, with their histograms, have
//! encoders of their own.
//!
//! Adding a metric: its descriptor in `headroom-signals`, one line here.

mod pod_use;

use crate::export::identity;
use crate::report::{InterfaceReport, Report};
use crate::sources::linklocal::Service;
use crate::sources::listeners::model::Model;
use crate::sources::listeners::ListenerReport;
use headroom_signals::{attr, metric, Metric};

/// Labels in exposition order, keyed by the attribute names both exporters use.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

/// Which exporter a figure is for: most are for both; where /metrics and OTLP label or
/// select differently (capture drops, listeners), each gets its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Both,
    Prometheus,
    Otlp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub metric: &'static Metric,
    pub labels: Labels,
    pub value: Value,
    pub to: To,
}

struct Out(Vec<Figure>);

impl Out {
    fn push(&mut self, metric: &'static Metric, labels: &Labels, value: Value, to: To) {
        self.0.push(Figure {
            metric,
            labels: labels.clone(),
            value,
            to,
        });
    }
    fn int(&mut self, m: &'static Metric, labels: &Labels, v: u64) {
        self.push(
            m,
            labels,
            Value::Int(v.min(i64::MAX as u64) as i64),
            To::Both,
        );
    }
    fn float(&mut self, m: &'static Metric, labels: &Labels, v: f64) {
        self.push(m, labels, Value::Float(v), To::Both);
    }
}

fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key, value.to_string()));
    l
}

/// `interface`, `eni`.
pub fn iface(i: &InterfaceReport) -> Labels {
    vec![
        (attr::INTERFACE, i.name.clone()),
        (attr::ENI, i.eni_id.clone().unwrap_or_default()),
    ]
}

/// Every figure of the report but the probes'.
pub fn of(report: &Report) -> Vec<Figure> {
    let mut out = Out(Vec::new());
    for i in &report.interfaces {
        interface(&mut out, i);
    }
    listeners(&mut out, &report.listeners);
    out.int(
        &metric::LISTENERS_OMITTED,
        &Vec::new(),
        report.listeners_omitted.total(),
    );
    storage(&mut out, report);
    pod_use::figures(&mut out, report);
    out.0
}

/// Per pod, mount and procedure: the kernel's cumulative counters (counters) and the window's
/// rate and mean execute time (gauges).
fn storage(out: &mut Out, report: &Report) {
    for m in &report.storage {
        let (ns, pod) = m
            .pod
            .as_ref()
            .map(|p| {
                (
                    p.namespace.clone().unwrap_or_default(),
                    p.name.clone().unwrap_or_else(|| p.uid.clone()),
                )
            })
            .unwrap_or_default();
        let (kind, name) = identity::workload(m.workload.as_ref());
        let ml: Labels = vec![
            (attr::NAMESPACE, ns),
            (attr::POD, pod),
            (attr::WORKLOAD_KIND, kind.to_string()),
            (attr::WORKLOAD, name.to_string()),
            (attr::MOUNT, m.mount_point.clone()),
            (attr::SERVER, m.server.clone()),
            (
                attr::EFS_FILESYSTEM,
                m.efs_filesystem_id.clone().unwrap_or_default(),
            ),
            (attr::VOLUME, m.volume.clone().unwrap_or_default()),
            (attr::PVC, m.pvc.clone().unwrap_or_default()),
            (
                attr::DATABASE_IMAGE,
                m.database_image.clone().unwrap_or_default(),
            ),
        ];
        for t in &m.totals {
            let ol = with(&ml, attr::OP, &t.op);
            out.int(&metric::NFS_OPS, &ol, t.ops);
            out.float(&metric::NFS_RTT_SECONDS, &ol, t.rtt_ms as f64 / 1e3);
            out.float(&metric::NFS_EXECUTE_SECONDS, &ol, t.execute_ms as f64 / 1e3);
            out.int(
                &metric::NFS_BYTES,
                &with(&ol, attr::DIRECTION, "sent"),
                t.bytes_sent,
            );
            out.int(
                &metric::NFS_BYTES,
                &with(&ol, attr::DIRECTION, "received"),
                t.bytes_recv,
            );
        }
        if !m.measured {
            continue;
        }
        for o in &m.by_op {
            let ol = with(&ml, attr::OP, &o.op);
            out.float(&metric::NFS_OPS_PER_SECOND, &ol, o.ops_per_s);
            out.float(&metric::NFS_BYTES_PER_SECOND, &ol, o.bytes_per_s);
            if let Some(e) = o.execute_ms_mean {
                // ms to s without binary noise (4.1 ms → 0.0041 s).
                out.float(
                    &metric::NFS_EXECUTE_MEAN_SECONDS,
                    &ol,
                    (e * 1e3).round() / 1e6,
                );
            }
        }
    }
    out.int(
        &metric::NFS_MOUNTS_OMITTED,
        &Vec::new(),
        report.storage_omitted as u64,
    );
}

fn interface(out: &mut Out, i: &InterfaceReport) {
    let il = iface(i);
    // Counters follow the running totals; /metrics keeps those of interfaces that stopped
    // capturing, OTLP sends capturing interfaces only.
    let total = if i.capturing {
        To::Both
    } else {
        To::Prometheus
    };
    let count = |out: &mut Out, m, l: &Labels, v: u64| out.push(m, l, Value::Int(v as i64), total);
    for s in Service::ALL {
        let sl = with(&il, attr::SERVICE, s.as_str());
        count(
            out,
            &metric::LINKLOCAL_PACKETS,
            &sl,
            i.packets_total[s.index()],
        );
        if let Some(f) = i.by_service.get(&s).filter(|_| i.capturing) {
            out.int(&metric::LINKLOCAL_SERVICE_PPS_PEAK, &sl, f.peak_pps);
        }
    }
    let drops = Value::Int(i.drops_total as i64);
    if i.capturing {
        out.push(&metric::CAPTURE_DROPS, &il, drops, To::Otlp);
    }
    let by_name = vec![(attr::INTERFACE, i.name.clone())];
    out.push(&metric::CAPTURE_DROPS, &by_name, drops, To::Prometheus);
    let t = &i.dns_totals;
    count(out, &metric::DNS_QUERIES, &il, t.queries);
    count(out, &metric::DNS_UNANSWERED, &il, t.unanswered);
    count(out, &metric::DNS_SEARCH_EXPANSION, &il, t.search_expansion);
    count(
        out,
        &metric::DNS_CACHE_TABLE_EVICTIONS,
        &il,
        t.cache_evictions,
    );
    for (rcode, n) in &t.responses {
        count(
            out,
            &metric::DNS_RESPONSES,
            &with(&il, attr::RCODE, rcode),
            *n,
        );
    }
    for (name, n) in &i.allowance_totals {
        let a = with(
            &il,
            attr::ALLOWANCE,
            name.trim_end_matches("_allowance_exceeded"),
        );
        count(out, &metric::ENA_ALLOWANCE_EXCEEDED, &a, *n);
    }
    if !i.capturing {
        return;
    }
    out.int(&metric::LINKLOCAL_PPS_PEAK, &il, i.peak_pps);
    out.float(&metric::LINKLOCAL_PPS_MEAN, &il, i.mean_pps);
    out.int(&metric::LINKLOCAL_PPS_LIMIT, &il, i.limit_pps.into());
    out.float(&metric::LINKLOCAL_UTILIZATION, &il, i.utilization);
    if let Some(v) = i.conntrack_allowance_available {
        let v = Value::Int(v.min(i64::MAX as u64) as i64);
        out.push(&metric::ENA_CONNTRACK_AVAILABLE, &il, v, To::Prometheus);
    }
    let Some(d) = &i.dns else { return };
    out.float(
        &metric::DNS_SEARCH_EXPANSION_SHARE,
        &il,
        d.search_expansion_share,
    );
    out.float(&metric::DNS_CACHEABLE_SHARE, &il, d.cacheable_share);
    out.float(&metric::DNS_CACHE_SAVINGS_PPS, &il, d.cache_savings_pps);
    out.float(
        &metric::DNS_CACHE_SAVINGS_PPS_PEAK,
        &il,
        d.cache_savings_peak_pps,
    );
    out.float(&metric::DNS_NDOTS2_SAVINGS_PPS, &il, d.ndots2_savings_pps);
    out.float(&metric::DNS_FQDN_SAVINGS_PPS, &il, d.fqdn_savings_pps);
    for q in &d.top_qnames {
        out.int(
            &metric::DNS_TOP_QNAME_QUERIES,
            &with(&il, attr::QNAME, &q.qname),
            q.queries,
        );
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
        out.int(&metric::DNS_TOP_SOURCE_QUERIES, &l, s.queries);
        let x = s.search_expansion_packets;
        out.int(&metric::DNS_TOP_SOURCE_SEARCH_EXPANSION, &l, x);
        out.float(
            &metric::DNS_TOP_SOURCE_CACHE_SAVINGS_PPS,
            &l,
            s.cache_savings_pps,
        );
    }
}

/// Listeners sharing a label set (an IPv4 and an IPv6 socket on one port, or host processes
/// on one port in several namespaces) are one series: the one with the most workers, then the
/// busiest; the report lists each. /metrics labels by pod, container and port; OTLP also by
/// process and workload.
fn listeners(out: &mut Out, listeners: &[ListenerReport]) {
    for (to, full) in [(To::Prometheus, false), (To::Otlp, true)] {
        let mut series: Vec<(Labels, &ListenerReport)> = Vec::new();
        for l in listeners {
            let lb = listener_labels(l, full);
            match series.iter_mut().find(|(b, _)| *b == lb) {
                Some(e) if (l.workers, l.busy_mean) > (e.1.workers, e.1.busy_mean) => e.1 = l,
                Some(_) => {}
                None => series.push((lb, l)),
            }
        }
        for (lb, l) in &series {
            let (int, float) = (|v: u32| Value::Int(v.into()), Value::Float);
            out.push(
                &metric::LISTENER_CONNECTIONS,
                lb,
                float(l.connections_mean),
                to,
            );
            out.push(
                &metric::LISTENER_CONNECTIONS_MAX,
                lb,
                int(l.connections_max),
                to,
            );
            if let (Some(mean), Some(max)) = (l.accepts_per_second, l.accepts_per_second_max) {
                out.push(&metric::LISTENER_ACCEPTS, lb, float(mean), to);
                out.push(&metric::LISTENER_ACCEPTS_MAX, lb, float(max), to);
            }
            // An event loop's load is its connections: no worker figures, so no rule or
            // ranking takes it for a saturated pool.
            if l.model == Model::EventLoop {
                continue;
            }
            out.push(&metric::WORKERS, lb, int(l.workers), to);
            out.push(&metric::WORKERS_THREADS, lb, int(l.threads), to);
            out.push(&metric::WORKERS_CAPACITY, lb, int(l.capacity), to);
            out.push(&metric::WORKERS_BUSY, lb, float(l.busy_mean), to);
            out.push(&metric::WORKERS_BUSY_MAX, lb, int(l.busy_max), to);
            out.push(&metric::WORKERS_UTILIZATION, lb, float(l.utilization), to);
            out.push(&metric::ACCEPT_QUEUE_DEPTH_MAX, lb, int(l.queue_max), to);
            out.push(&metric::ACCEPT_QUEUE_BACKLOG, lb, int(l.backlog), to);
            let s = Value::Float(l.saturated_seconds_total);
            out.push(&metric::WORKERS_SATURATED_SECONDS, lb, s, to);
        }
    }
}

fn listener_labels(l: &ListenerReport, full: bool) -> Labels {
    let (ns, pod, container) = identity::listener(l);
    let mut lb = vec![
        (attr::NAMESPACE, ns.to_string()),
        (attr::POD, pod.to_string()),
        (attr::CONTAINER, container.to_string()),
        (
            attr::PORT,
            l.port.map(|p| p.to_string()).unwrap_or_default(),
        ),
    ];
    if l.port.is_none() {
        lb.push((attr::ADDRESS, l.address.clone()));
    }
    if full {
        let (kind, name) = identity::workload(l.workload.as_ref());
        lb.extend([
            (attr::PROCESS, l.process.clone()),
            (attr::WORKLOAD_KIND, kind.to_string()),
            (attr::WORKLOAD, name.to_string()),
            (attr::MODEL, l.model.as_str().to_string()),
            (attr::THREADS_KNOWN, l.threads_known.to_string()),
            (
                attr::REQUESTS_ARE_CONNECTIONS,
                l.requests_are_connections.to_string(),
            ),
        ]);
    }
    lb
}
