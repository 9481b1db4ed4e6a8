//! One report window → one OTLP `ExportMetricsServiceRequest`, built directly with the
//! opentelemetry-proto types from the per-signal encoders (each metric named, described and
//! typed by its `headroom-signals` descriptor). Every figure is a data point whose
//! `start_time_unix_nano` is the window's start and `time_unix_nano` its end, so a window sent
//! late (after an outage) lands where it belongs.

use super::points::{number, point, AsDouble, AsInt, Span};
use super::probes;
use crate::export::figures::{self, To, Value};
use crate::report::Report;
use headroom_signals::resource;
use headroom_signals::{metric, Kind, Metric as Descriptor};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use super::points::{kv, kv_double, kv_int};
pub use super::spans::{probe_spans, spans};

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-encoded).
pub fn parse_resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Decodes `%XX` escapes (as the OpenTelemetry environment variables use them).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resource for this agent: `service.name`, `k8s.node.name`, `host.id`, `host.type`,
/// `cloud.provider`, `cloud.availability_zone` (the EC2 ones once known),
/// `headroom.agent.mode`, a sidecar's `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`,
/// `k8s.pod.ip`, then any
/// `OTEL_RESOURCE_ATTRIBUTES` entries (e.g. `k8s.cluster.name=prod`) for keys not set here.
pub fn resource(report: &Report, extra: &[(String, String)]) -> Resource {
    let n = &report.node;
    let mut attrs = vec![
        kv(resource::SERVICE_NAME, resource::AGENT_SERVICE),
        kv("service.version", env!("CARGO_PKG_VERSION")),
        kv(resource::K8S_NODE_NAME, &n.name),
        kv(resource::CLOUD_PROVIDER, "aws"),
    ];
    attrs.push(kv(resource::AGENT_MODE, n.mode.as_str()));
    if let Some(p) = &n.pod {
        for (k, v) in [
            (resource::K8S_NAMESPACE_NAME, &p.namespace),
            (resource::K8S_POD_NAME, &p.name),
            (resource::K8S_POD_UID, &p.uid),
            (resource::K8S_POD_IP, &p.ip),
        ] {
            if let Some(v) = v {
                attrs.push(kv(k, v));
            }
        }
    }
    for (k, v) in [
        (resource::HOST_ID, &n.instance_id),
        (resource::HOST_TYPE, &n.instance_type),
        (resource::CLOUD_AVAILABILITY_ZONE, &n.availability_zone),
    ] {
        if let Some(v) = v {
            attrs.push(kv(k, v));
        }
    }
    for (k, v) in extra {
        if !attrs.iter().any(|a| &a.key == k) {
            attrs.push(kv(k, v));
        }
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

/// Families sent in every request, even without points (a receiver sees them before any
/// interface captures).
const ALWAYS: [&Descriptor; 10] = [
    &metric::LINKLOCAL_PPS_PEAK,
    &metric::LINKLOCAL_PPS_MEAN,
    &metric::LINKLOCAL_PPS_LIMIT,
    &metric::LINKLOCAL_UTILIZATION,
    &metric::LINKLOCAL_PACKETS,
    &metric::CAPTURE_DROPS,
    &metric::DNS_QUERIES,
    &metric::DNS_RESPONSES,
    &metric::DNS_UNANSWERED,
    &metric::DNS_SEARCH_EXPANSION,
];

/// The report's figures as gauges (over the window) and cumulative sums (since the agent
/// started), one metric per descriptor in the order first seen.
fn numbers(report: &Report, w: Span) -> Vec<Metric> {
    let mut out: Vec<(&Descriptor, Vec<NumberDataPoint>)> =
        ALWAYS.iter().map(|d| (*d, Vec::new())).collect();
    for f in figures::of(report)
        .into_iter()
        .filter(|f| f.to != To::Prometheus)
    {
        let attrs: Vec<_> = f.labels.iter().map(|(k, v)| kv(k, v)).collect();
        let start = match f.metric.kind {
            Kind::Gauge => w.start,
            Kind::Counter | Kind::Histogram => w.process_start,
        };
        let v = match f.value {
            Value::Int(i) => AsInt(i),
            Value::Float(x) => AsDouble(x),
        };
        let p = point(&attrs, start, w.end, v);
        match out.iter_mut().find(|(d, _)| *d == f.metric) {
            Some((_, points)) => points.push(p),
            None => out.push((f.metric, vec![p])),
        }
    }
    out.into_iter()
        .map(|(d, points)| number(d, points))
        .collect()
}

/// The request for one report. `process_start_ns` is the start of the cumulative counters.
pub fn request(
    report: &Report,
    res: Resource,
    process_start_ns: u64,
) -> ExportMetricsServiceRequest {
    let start = report.window.start_ns;
    let w = Span {
        start,
        end: start + (report.window.seconds * 1e9).round() as u64,
        process_start: process_start_ns,
    };
    let mut metrics = numbers(report, w);
    metrics.extend(probes::metrics(report, w));
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(res),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "headroom-agent".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
