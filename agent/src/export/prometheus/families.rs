//! What every per-signal Prometheus encoder shares: registration from the metric's
//! `headroom-signals` descriptor, label sets, and counters that follow a running total.

pub use headroom_signals::{attr, metric, Kind, Metric as Descriptor};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

pub type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub use crate::export::figures::Labels;

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

/// A new family of `M`, registered from its descriptor.
pub fn register_new<M>(registry: &mut Registry, d: &Descriptor) -> Family<Labels, M>
where
    M: Default
        + prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric,
    Family<Labels, M>: prometheus_client::registry::Metric,
{
    let f = Family::<Labels, M>::default();
    register(registry, d, f.clone());
    f
}

/// `labels` and one more.
pub fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key, value.to_string()));
    l
}
