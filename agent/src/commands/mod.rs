//! The agent's commands: `once`, `watch`, `run`.

pub mod once;
pub mod run;
pub mod watch;

use crate::config::Settings;
use crate::interfaces::{self, Selection};
use crate::report::Node;
use crate::sources::linklocal::capture::{Capture, CaptureSpec};
use crate::sources::linklocal::meter::Meter;
use crate::sources::linklocal::Targets;
use crate::sys::packet::RingConfig;
use crate::AgentError;
use std::time::Duration;

/// How long after a window's end its packets are surely in user space: the ring hands over a
/// partly filled block after 100 ms; the rest is margin for a busy machine.
pub const DRAIN: Duration = Duration::from_millis(300);

/// Starts capture on the selected interfaces. `strict`: no interface is an error (for `once`),
/// else a warning while the rescan keeps looking (for the daemon).
pub fn start_capture(
    settings: &Settings,
    meter: Meter,
    strict: bool,
) -> Result<(Capture, Vec<String>), AgentError> {
    let all = interfaces::list();
    let missing = interfaces::missing(&settings.selection, &all);
    if !missing.is_empty() {
        return Err(AgentError::Usage(format!(
            "unknown interface '{}': no such interface here; list them with `ip link` (found: {})",
            missing.join("', '"),
            all.join(", ")
        )));
    }
    let spec = CaptureSpec {
        selection: settings.selection.clone(),
        targets: Targets::new(&settings.resolvers),
        ring: RingConfig::default(),
        rescan: settings.rescan_interval,
    };
    let (cap, names) = Capture::start(spec, meter)?;
    if names.is_empty() {
        let msg = match &settings.selection {
            Selection::Physical => "no physical interface found (none has /sys/class/net/X/device); name the interfaces to measure with --interface NAME|GLOB".to_string(),
            Selection::Patterns(_) => format!(
                "no interface matches the --interface patterns; list them with `ip link` (found: {})",
                all.join(", ")
            ),
        };
        if strict {
            return Err(AgentError::Usage(msg));
        }
        tracing::warn!(message = "No interface to measure yet; looking again periodically.", reason = %msg);
    } else {
        tracing::info!(message = "Capturing.", interfaces = %names.join(","));
    }
    Ok((cap, names))
}

pub fn node(settings: &Settings) -> Node {
    Node {
        name: settings.node_name.clone(),
        ..Node::default()
    }
}

/// Teaches the meter's DNS trackers the search suffixes the node's processes really use (their
/// resolv.conf files, read through the proc root), before the defaults.
pub fn learn_search(settings: &Settings, meter: &Meter) {
    let proc = crate::sys::procfs::ProcRoot::new(&settings.workers.proc_root);
    let learned = crate::sources::dns::search::from_proc(&proc);
    tracing::debug!(message = "Search domains learned.", domains = ?learned);
    meter.set_search(crate::sources::dns::search::SearchDomains::learned(
        &learned,
    ));
}

/// How long startup waits for IMDS before capturing without the VPC resolver.
pub const IMDS_STARTUP_WAIT: Duration = Duration::from_secs(3);

/// Starts the ENI source and waits briefly for IMDS, before capture (whose kernel filter is
/// fixed at start). Returns the settings with the VPC resolver added under `--resolver auto`.
/// When capture is bound to fail at once (a named interface missing, nothing to measure in
/// `once`, no CAP_NET_RAW), IMDS is not asked: the user gets the one-line error and nothing else.
pub fn identify(settings: &Settings, strict: bool) -> (Settings, crate::sources::eni::EniSource) {
    let all = interfaces::list();
    let doomed = !interfaces::missing(&settings.selection, &all).is_empty()
        || (strict && interfaces::select(&settings.selection, &all).is_empty())
        || !has_cap_net_raw();
    if doomed {
        return (settings.clone(), crate::sources::eni::EniSource::disabled());
    }
    let eni = crate::sources::eni::EniSource::start(crate::sources::eni::Options {
        endpoint: settings.imds_endpoint.clone(),
        refresh: settings.imds_refresh_interval,
        selection: settings.selection.clone(),
    });
    let mut s = settings.clone();
    if settings.resolver_auto {
        match eni
            .wait_first(IMDS_STARTUP_WAIT)
            .and_then(|id| id.vpc_resolver())
        {
            Some(r) => {
                tracing::info!(message = "Counting the VPC resolver (primary CIDR base + 2).", resolver = %r);
                s.resolvers.push(r.into());
            }
            None => tracing::warn!(
                message = "VPC resolver unknown (IMDS gave no VPC CIDR); counting only the link-local resolvers. Restart once IMDS answers, or name it with --resolver IP."
            ),
        }
    }
    (s, eni)
}

/// Whether this process holds CAP_NET_RAW (bit 13 of CapEff in /proc/self/status).
fn has_cap_net_raw() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .map_or(true, |caps| caps & (1 << 13) != 0)
}

/// Adds what the capture does not know to a report: node identity and ENIs (IMDS), and the
/// ENA allowance rises since the previous call for each interface.
pub fn enrich(
    report: &mut crate::report::Report,
    eni: &crate::sources::eni::EniSource,
    ena: &mut crate::sources::ena::Tracker,
) {
    eni.annotate(report);
    for i in &mut report.interfaces {
        let w = if i.capturing {
            ena.sample(&i.name)
        } else {
            ena.update(&i.name, None)
        };
        apply_allowance(i, w);
    }
}

fn apply_allowance(
    i: &mut crate::report::InterfaceReport,
    w: crate::sources::ena::AllowanceWindow,
) {
    i.allowance = w.deltas;
    i.allowance_totals = w.totals;
    i.conntrack_allowance_available = w.conntrack_available;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use crate::sources::ena::{allowances, Tracker};
    use crate::sources::eni::{annotate, EniInfo, Identity};
    use crate::sources::linklocal::meter::InterfaceWindow;
    use crate::sources::linklocal::series::Figures;
    use std::collections::BTreeMap;

    fn ena(linklocal: u64) -> Vec<(String, u64)> {
        [
            ("tx_timeout", 0),
            ("bw_in_allowance_exceeded", 0),
            ("bw_out_allowance_exceeded", 0),
            ("pps_allowance_exceeded", 0),
            ("conntrack_allowance_exceeded", 0),
            ("linklocal_allowance_exceeded", linklocal),
            ("conntrack_allowance_available", 9000),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A rise of `linklocal_allowance_exceeded` shows the same in `once` (JSON and table),
    /// `watch` and `/metrics`, with the ENI id from IMDS.
    #[test]
    fn allowance_rise_is_visible_in_every_exporter() {
        let w = InterfaceWindow {
            name: "ens5".into(),
            mac: Some("02:AA:00:00:00:01".into()),
            figures: Figures {
                packets: [1100, 0, 0],
                peak: 1100,
                peak_by_service: [1100, 0, 0],
            },
            packets_total: [1100, 0, 0],
            capturing: true,
            ..Default::default()
        };
        let id = Identity {
            instance_id: "i-0abc".into(),
            instance_type: "c6i.large".into(),
            availability_zone: "eu-west-1b".into(),
            enis: BTreeMap::from([(
                "02:aa:00:00:00:01".into(),
                EniInfo::parse(
                    "eni-0f00",
                    "0",
                    "10.0.0.0/24",
                    "10.0.0.0/16",
                    "10.0.0.0/16",
                    "10.0.0.5",
                )
                .unwrap(),
            )]),
        };
        let mut t = Tracker::default();
        t.update("ens5", allowances(&ena(100)));
        let mut r = Report::new(Node::default(), 0, 1_000_000_000, &[w]);
        annotate(&mut r, &id);
        apply_allowance(
            &mut r.interfaces[0],
            t.update("ens5", allowances(&ena(176))),
        );

        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["node"]["instance_id"], "i-0abc");
        assert_eq!(v["node"]["availability_zone"], "eu-west-1b");
        let i = &v["interfaces"][0];
        assert_eq!(i["eni_id"], "eni-0f00");
        assert_eq!(i["device_number"], 0);
        assert_eq!(i["allowance"]["linklocal_allowance_exceeded"], 76);
        assert_eq!(i["allowance"]["pps_allowance_exceeded"], 0);
        assert_eq!(i["conntrack_allowance_available"], 9000);

        let table = r.table();
        let row = table.lines().rfind(|l| l.starts_with("ens5")).unwrap();
        assert!(row.contains("eni-0f00") && row.contains("+76"), "{table}");

        let frame = watch::allowance_frame(&r);
        assert!(frame.contains("linklocal +76/76 DROPPING"), "{frame}");
        assert!(frame.contains("eni-0f00"), "{frame}");

        let m = crate::export::prometheus::Metrics::new();
        m.update(&r);
        let text = m.encode();
        assert!(
            text.contains(r#"headroom_ena_allowance_exceeded_total{interface="ens5",eni="eni-0f00",allowance="linklocal"} 76"#),
            "{text}"
        );
        assert!(
            text.contains(r#"headroom_linklocal_pps_peak{interface="ens5",eni="eni-0f00"} 1100"#)
        );
        assert!(text.contains(
            r#"headroom_ena_conntrack_allowance_available{interface="ens5",eni="eni-0f00"} 9000"#
        ));
    }
}
