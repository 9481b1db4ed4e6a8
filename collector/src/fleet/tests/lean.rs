//! The lean snapshot each report makes for its node (what every evaluation reads).

use super::*;
use crate::fleet::LEAN_FRESH;

/// The lean snapshot's JSON beside the full one without history, less what only the full one
/// has (the node here sends no other metrics and no listeners, so nothing).
fn lean_and_made(f: &Fleet, now: SystemTime) -> (String, String) {
    let lean = serde_json::to_string(&f.snapshot_lean(now)).unwrap();
    let made = serde_json::to_string(&f.snapshot_with(now, false)).unwrap();
    (lean, made)
}

fn probe(f: &mut Fleet, t0: u64, w: u64, ok: f64) {
    let (start, end) = ((t0 + 10 * w) * S, (t0 + 10 * (w + 1)) * S);
    let counts = [("ok", ok), ("slow", 0.0), ("timeout", 0.0), ("error", 0.0)];
    let req = probe_window(start, end, t0 * S, counts, 0.0, Some(0.2));
    f.apply_metrics(&req, at(t0 + 10 * (w + 1)));
}

#[test]
fn a_nodes_lean_snapshot_is_made_at_its_report_and_shared_until_the_next() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits {
        workload_history: Duration::from_secs(60),
        node_expiry: Duration::from_secs(300),
        ..Limits::default()
    });
    f.apply_metrics(
        &dns_window(t0 * S, (t0 + 10) * S, t0 * S, &[("pps", 1.0)], 1.0),
        at(t0 + 10),
    );
    for w in 0..3 {
        probe(&mut f, t0, w, 10.0 * (w + 1) as f64);
    }
    let report = t0 + 30;
    // At the report's instant it is the snapshot made then, interfaces, DNS and probes.
    let (lean, made) = lean_and_made(&f, at(report));
    assert_eq!(lean, made);
    let a = f.snapshot_lean(at(report));
    let n = &a.clusters[0].nodes[0];
    assert_eq!(n.probes[0].attempts["ok"], 30, "{n:?}");
    assert!(n.interfaces[0].dns.is_some(), "{n:?}");

    // Later, without a report, the same one is read (shared, not made again): its probe
    // counts are those of the report's history, where one made now would drop the window
    // that left the 60 s history since (ended at t0 + 10: its rise of 10).
    let later = at(report + 50);
    let b = f.snapshot_lean(later);
    assert!(Arc::ptr_eq(
        &a.clusters[0].nodes[0],
        &b.clusters[0].nodes[0]
    ));
    let now_made = f.snapshot_with(later, false);
    assert_eq!(now_made.clusters[0].nodes[0].probes[0].attempts["ok"], 20);
    assert_eq!(b.clusters[0].nodes[0].probes[0].attempts["ok"], 30);

    // A report makes it again.
    probe(&mut f, t0, 3, 40.0);
    let c = f.snapshot_lean(at(report + 10));
    assert!(!Arc::ptr_eq(
        &a.clusters[0].nodes[0],
        &c.clusters[0].nodes[0]
    ));
    assert_eq!(c.clusters[0].nodes[0].probes[0].attempts["ok"], 40);
    assert_eq!(
        lean_and_made(&f, at(report + 10)).0,
        lean_and_made(&f, at(report + 10)).1
    );

    // Silent for longer than LEAN_FRESH: made at the refresh's instant (the history slid past
    // every window: no attempts left in it).
    let silent = at(report + 10 + LEAN_FRESH.as_secs() + 1);
    let (lean, made) = lean_and_made(&f, silent);
    assert_eq!(lean, made);
    assert_eq!(
        f.snapshot_lean(silent).clusters[0].nodes[0].probes[0].attempts["ok"],
        0
    );

    // Spans count at once (a traces export is a report too).
    f.apply_traces(&spans("n1", 3), at(report + 20));
    assert_eq!(
        f.snapshot_lean(at(report + 20)).clusters[0].nodes[0].spans_received,
        3
    );
}

/// A probe expired while its node goes on reporting leaves the lean snapshot at the expiry,
/// not at the node's next report.
#[test]
fn an_expired_probe_leaves_the_lean_snapshot_at_once() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits {
        node_expiry: Duration::from_secs(60),
        ..Limits::default()
    });
    probe(&mut f, t0, 0, 1.0);
    // The interface goes on; the probe's pod went away after its one window.
    for w in 1..=8 {
        f.apply_metrics(&window("n1", t0 + 10 * w, 1.0, 0.0), at(t0 + 10 * w + 10));
    }
    let now = at(t0 + 90);
    assert_eq!(f.snapshot_lean(now).clusters[0].nodes[0].probes.len(), 1);
    f.expire(now);
    assert!(f.snapshot_lean(now).clusters[0].nodes[0].probes.is_empty());
    assert_eq!(
        f.snapshot_lean(now).clusters[0].nodes[0].interfaces.len(),
        1
    );
}

/// A traces export of `n` spans from one node.
fn spans(node: &str, n: usize) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: request(node, vec![]).resource_metrics[0].resource.clone(),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
