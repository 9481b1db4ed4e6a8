//! What every per-signal Prometheus encoder shares: registration from the metric's
//! `headroom-signals` descriptor, label sets, and counters that follow a running total.

pub use crate::report::{InterfaceReport, Report};
pub use headroom_signals::{attr, metric, Metric as Descriptor};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

pub type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels in exposition order, keyed by the attribute names OTLP uses too.
pub type Labels = Vec<(&'static str, String)>;

/// Registers `family` under the descriptor's Prometheus name and help text.
pub fn register(
    registry: &mut Registry,
    d: &Descriptor,
    family: impl prometheus_client::registry::Metric,
) {
    registry.register(d.prom, d.help, family);
}

/// Moves a counter up to the agent's running total, so a window never double counts.
pub fn follow(c: &Counter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

/// `interface`, `eni`.
pub fn iface(i: &InterfaceReport) -> Labels {
    vec![
        (attr::INTERFACE, i.name.clone()),
        (attr::ENI, i.eni_id.clone().unwrap_or_default()),
    ]
}

/// `labels` and one more.
pub fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key, value.to_string()));
    l
}
