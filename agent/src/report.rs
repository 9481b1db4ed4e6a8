//! The node report: one struct that feeds every exporter (`once`, `watch`, `/metrics`, OTLP),
//! so they can never disagree. Field names are a public contract (docs/reference.md, "Report").

use crate::sources::dns::tracker::{DnsFigures, DnsTotals};
use crate::sources::linklocal::meter::InterfaceWindow;
use crate::sources::linklocal::{Service, LIMIT_PPS};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

pub const SCHEMA: &str = "headroom.report/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub node: Node,
    pub window: Window,
    pub interfaces: Vec<InterfaceReport>,
    /// Listening sockets with their workers, busy workers and accept queues (worker source).
    pub listeners: Vec<crate::sources::listeners::report::ListenerReport>,
    /// Listeners the `[listeners]` caps left out of `listeners`, by cap.
    pub listeners_omitted: crate::sources::listeners::Omitted,
    /// Each pod's CPU and memory use from its cgroups (pod-use source).
    pub pod_use: Vec<crate::sources::pod_use::PodUse>,
    /// Pods and containers the `[pod_use]` caps left out.
    pub pod_use_omitted: crate::sources::pod_use::PodUseOmitted,
    /// Whether the node's pods burst together in the window; null before a second is covered.
    pub co_burst: Option<crate::sources::pod_use::CoBurst>,
    /// Shadowed probes of this node's pods (empty without Kubernetes access).
    pub probes: Vec<crate::sources::probes::report::ProbeReport>,
    /// Resolver checks run in the window (none unless names are configured).
    pub resolver_checks: Vec<crate::sources::resolver_checks::report::ResolverCheck>,
    /// Pods' NFS mounts (EFS included): calls, round trip and execute time per procedure.
    pub storage: Vec<crate::sources::storage::StorageMount>,
    /// NFS mounts the bounds left out of `storage`.
    pub storage_omitted: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Node {
    pub name: String,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    /// `node` (a DaemonSet agent) or `sidecar` (inside one pod: a one-pod "node").
    pub mode: crate::mode::Mode,
    /// A sidecar's own pod (downward API); null in node mode.
    pub pod: Option<crate::mode::OwnPod>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// RFC 3339, UTC.
    pub start: String,
    pub seconds: f64,
    #[serde(skip)]
    pub start_ns: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceFigures {
    pub packets: u64,
    pub mean_pps: f64,
    pub peak_pps: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceReport {
    pub name: String,
    pub mac: Option<String>,
    pub eni_id: Option<String>,
    pub device_number: Option<u32>,
    /// Packets sent to link-local services in the window.
    pub linklocal_packets: u64,
    pub by_service: BTreeMap<Service, ServiceFigures>,
    pub mean_pps: f64,
    /// Highest count in any one-second window (sliding in 10 ms steps).
    pub peak_pps: u64,
    pub limit_pps: u32,
    /// peak_pps / limit_pps.
    pub utilization: f64,
    /// Packets the kernel matched but the agent's ring had no room for (undercount).
    pub kernel_drops: u64,
    /// ENA allowance counters' deltas; null where the driver has none.
    pub allowance: Option<BTreeMap<String, u64>>,
    /// Who asks what, what goes unanswered, what the search list costs; null in live views.
    pub dns: Option<DnsFigures>,
    /// ENA `conntrack_allowance_available` at the window's end (a gauge); null where absent.
    pub conntrack_allowance_available: Option<u64>,
    /// False when capture stopped on this interface during the window (it disappeared).
    pub capturing: bool,
    /// The tap counting here: `ebpf` (tcx programs counting in-line) or `af_packet`.
    pub tap: Option<&'static str>,
    /// Counters since the agent started (for Prometheus counters), not serialized.
    #[serde(skip)]
    pub packets_total: [u64; 3],
    #[serde(skip)]
    pub drops_total: u64,
    #[serde(skip)]
    pub dns_totals: DnsTotals,
    /// ENA allowance rises since the agent started, per counter (Prometheus counters).
    #[serde(skip)]
    pub allowance_totals: BTreeMap<String, u64>,
}

pub use crate::time::now_ns;

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl InterfaceReport {
    pub fn from_window(w: &InterfaceWindow, seconds: f64) -> Self {
        let f = &w.figures;
        let by_service = Service::ALL
            .iter()
            .map(|s| {
                let i = s.index();
                let fig = ServiceFigures {
                    packets: f.packets[i],
                    mean_pps: round1(f.packets[i] as f64 / seconds),
                    peak_pps: f.peak_by_service[i],
                };
                (*s, fig)
            })
            .collect();
        InterfaceReport {
            name: w.name.clone(),
            mac: w.mac.clone(),
            eni_id: None,
            device_number: None,
            linklocal_packets: f.total(),
            by_service,
            mean_pps: round1(f.total() as f64 / seconds),
            peak_pps: f.peak,
            limit_pps: LIMIT_PPS,
            utilization: (f.peak as f64 / LIMIT_PPS as f64 * 1000.0).round() / 1000.0,
            kernel_drops: w.kernel_drops,
            allowance: None,
            dns: w.dns.clone(),
            capturing: w.capturing,
            tap: w.tap,
            packets_total: w.packets_total,
            drops_total: w.drops_total,
            dns_totals: w.dns_totals.clone(),
            conntrack_allowance_available: None,
            allowance_totals: BTreeMap::new(),
        }
    }
}

impl Report {
    pub fn new(node: Node, start_ns: u64, end_ns: u64, windows: &[InterfaceWindow]) -> Self {
        let seconds = (end_ns.saturating_sub(start_ns)) as f64 / 1e9;
        let start = UNIX_EPOCH + Duration::from_nanos(start_ns);
        Report {
            schema: SCHEMA,
            node,
            window: Window {
                start: humantime::format_rfc3339_millis(start).to_string(),
                seconds: (seconds * 1000.0).round() / 1000.0,
                start_ns,
            },
            interfaces: windows
                .iter()
                .map(|w| InterfaceReport::from_window(w, seconds.max(1e-9)))
                .collect(),
            listeners: Vec::new(),
            listeners_omitted: Default::default(),
            pod_use: Vec::new(),
            pod_use_omitted: Default::default(),
            co_burst: None,
            probes: Vec::new(),
            resolver_checks: Vec::new(),
            storage: Vec::new(),
            storage_omitted: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fields_follow_the_contract() {
        let w = InterfaceWindow {
            mac: Some("02:00:00:00:00:01".into()),
            kernel_drops: 2,
            ..InterfaceWindow::capturing(
                "eth0",
                [900, 90, 10],
                512,
                [400, 100, 12],
                [900, 90, 10],
                2,
            )
        };
        let r = Report::new(Node::default(), 1_000_000_000, 11_000_000_000, &[w]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["schema"], "headroom.report/v1");
        assert_eq!(v["window"]["seconds"], 10.0);
        assert_eq!(v["window"]["start"], "1970-01-01T00:00:01.000Z");
        let i = &v["interfaces"][0];
        assert_eq!(i["linklocal_packets"], 1000);
        assert_eq!(i["mean_pps"], 100.0);
        assert_eq!(i["peak_pps"], 512);
        assert_eq!(i["limit_pps"], 1024);
        assert_eq!(i["utilization"], 0.5);
        assert_eq!(i["by_service"]["imds"]["packets"], 90);
        assert_eq!(i["by_service"]["dns"]["peak_pps"], 400);
        assert_eq!(i["kernel_drops"], 2);
        assert!(i["eni_id"].is_null() && i["allowance"].is_null());
        for k in ["listeners", "probes", "resolver_checks"] {
            assert!(v[k].as_array().unwrap().is_empty());
        }
        assert!(r.table().contains("eth0"));
    }
}
