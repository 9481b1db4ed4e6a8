//! Who a figure belongs to, as both exporters label it: empty strings where unknown.

use crate::sources::dns::tracker::TopSource;
use crate::sources::listeners::ListenerReport;

/// (kind, name) of a workload.
pub fn workload(w: Option<&crate::pod::Workload>) -> (&str, &str) {
    w.map(|w| (w.kind.as_str(), w.name.as_str()))
        .unwrap_or(("", ""))
}

/// (namespace, pod, container) of a listener.
pub fn listener(l: &ListenerReport) -> (&str, &str, &str) {
    let pod = l.pod.as_ref();
    (
        pod.and_then(|p| p.namespace.as_deref()).unwrap_or(""),
        pod.and_then(|p| p.name.as_deref()).unwrap_or(""),
        l.container.as_deref().unwrap_or(""),
    )
}

/// (namespace, pod) of a DNS top source (`pod` is `namespace/name`).
pub fn source_pod(s: &TopSource) -> (&str, &str) {
    s.pod
        .as_deref()
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", ""))
}
