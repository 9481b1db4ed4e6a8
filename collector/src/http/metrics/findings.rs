//! The findings' families: findings by rule, severity and state, how long evaluations take,
//! and each sink's counters.

use super::descriptors::{self as d, register};
use crate::findings::Findings;
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
    url: String,
}

/// The findings' part of `/metrics`: findings by rule, severity and state, and each sink's
/// counters (text format 0.0.4, appended to the fleet's exposition).
pub fn encode(f: &Findings) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let mut r = prometheus_client::registry::Registry::default();
    let findings = Family::<FindingLabels, Gauge>::default();
    for rec in f.lock().records() {
        findings
            .get_or_create(&FindingLabels {
                rule: rec.rule.clone(),
                severity: rec.severity.as_str().into(),
                state: rec.state.as_str().into(),
            })
            .inc();
    }
    register(&mut r, &d::FINDINGS, findings);
    let dropped: Counter = Counter::default();
    dropped.inc_by(f.lock().dropped());
    register(&mut r, &d::FINDINGS_DROPPED, dropped);
    let t = f.timing();
    for (desc, v) in [
        (&d::EVALUATION_SECONDS, t.last),
        (&d::EVALUATION_SECONDS_MAX, t.max),
        (&d::EVALUATION_CPU_SECONDS, t.last_cpu),
    ] {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(v);
        register(&mut r, desc, g);
    }
    let sent = Family::<SinkLabels, Counter>::default();
    let failed = Family::<SinkLabels, Counter>::default();
    let dropped = Family::<SinkLabels, Counter>::default();
    let queued = Family::<SinkLabels, Gauge>::default();
    for st in f.sinks.stats() {
        let l = SinkLabels {
            sink: st.kind.into(),
            url: st.url.clone(),
        };
        sent.get_or_create(&l).inc_by(st.sent);
        failed.get_or_create(&l).inc_by(st.failed_attempts);
        dropped.get_or_create(&l).inc_by(st.dropped);
        queued.get_or_create(&l).set(st.queued as i64);
    }
    register(&mut r, &d::ALERTS_SENT, sent);
    register(&mut r, &d::ALERT_SEND_FAILURES, failed);
    register(&mut r, &d::ALERTS_DROPPED, dropped);
    register(&mut r, &d::ALERTS_QUEUED, queued);
    super::scale_down::register(&mut r, &f.lock());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)
        .expect("writing to a String cannot fail");
    headroom_signals::openmetrics_to_text(&out)
}
