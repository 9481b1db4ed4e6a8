//! The probes section of the table.

use crate::sources::probes::ProbeReport;

/// The probes section of the report's table.
pub fn table(probes: &[ProbeReport]) -> String {
    if probes.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nProbes (shadowed as the kubelet runs them):\n  {:<36} {:<10} {:<34} {:>4} {:>8} {:>5} {:>5} {:>5} {:>9} {:>9} {:>8} {:>8}\n",
        "POD/CONTAINER", "KIND", "TARGET", "TMO", "ATTEMPTS", "SLOW", "TMOUT", "ERR", "P50 MS", "P99 MS", "HEADROOM", "REMOVALS"
    );
    out.pop();
    out += "  KUBELET OK/FAILED\n";
    for p in probes {
        let who = format!("{}/{}", p.pod, p.container);
        if let Some(r) = &p.reason {
            out += &format!(
                "  {who:<36} {:<10} {:<34} not shadowed: {r}\n",
                p.kind.as_str(),
                p.target
            );
            continue;
        }
        let (p50, p99) = p
            .latency_ms
            .map(|l| (format!("{:.1}", l.p50), format!("{:.1}", l.p99)))
            .unwrap_or(("-".into(), "-".into()));
        out += &format!(
            "  {who:<36} {:<10} {:<34} {:>3}s {:>8} {:>5} {:>5} {:>5} {:>9} {:>9} {:>8} {:>8}  {}\n",
            p.kind.as_str(),
            p.target,
            p.timeout_seconds,
            p.attempts,
            p.slow,
            p.timeouts,
            p.errors,
            p50,
            p99,
            p.headroom.map(|h| format!("{h:.1}x")).unwrap_or("-".into()),
            p.predicted_removals,
            p.kubelet
                .map(|k| format!("{}/{}", k.successful, k.failed))
                .unwrap_or("-".into())
        );
    }
    out
}
