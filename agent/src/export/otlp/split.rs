//! An oversized window split into requests a receiver takes. One pod binding thousands of
//! ports (within the listener caps) can make a window larger than a receiver's limit (the
//! collector's `max_request_bytes`, 8 MiB by default; an OpenTelemetry Collector's gRPC
//! receiver, 4 MiB): refused whole, it would cost the node its DNS and interface figures. So
//! a window over [`MAX_REQUEST_BYTES`] goes as several requests, each with the same resource
//! and scope, metrics kept in order (the interface and DNS families come first, so they are in
//! the first request), a metric with too many points split by points. Every point carries its
//! window's start and end, so the receiver puts the parts back together.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Metric, ResourceMetrics, ScopeMetrics,
};
use prost::Message;

/// The largest metrics request sent: below the 4 MiB gRPC message limit most receivers keep.
pub const MAX_REQUEST_BYTES: usize = 3 << 20;

/// `req` as requests of at most `max` encoded bytes each (one over `max` only where a single
/// data point with the resource is already larger). A request within `max` comes back as is.
pub fn split(req: ExportMetricsServiceRequest, max: usize) -> Vec<ExportMetricsServiceRequest> {
    if req.encoded_len() <= max {
        return vec![req];
    }
    let mut out = Vec::new();
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics.iter() {
            let shell = |metrics: Vec<Metric>| ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: rm.resource.clone(),
                    scope_metrics: vec![ScopeMetrics {
                        scope: sm.scope.clone(),
                        metrics,
                        schema_url: sm.schema_url.clone(),
                    }],
                    schema_url: rm.schema_url.clone(),
                }],
            };
            let overhead = shell(Vec::new()).encoded_len();
            let budget = max.saturating_sub(overhead).max(1);
            let mut chunk: Vec<Metric> = Vec::new();
            let mut used = 0;
            for m in sm.metrics.iter().flat_map(|m| by_points(m, budget)) {
                // A metric's share of the request: its bytes plus its field tag and length.
                let len = m.encoded_len();
                let len = len + prost::length_delimiter_len(len) + 1;
                if used + len > budget && !chunk.is_empty() {
                    out.push(shell(std::mem::take(&mut chunk)));
                    used = 0;
                }
                used += len;
                chunk.push(m);
            }
            if !chunk.is_empty() || out.is_empty() {
                out.push(shell(chunk));
            }
        }
    }
    out
}

/// `m` as one metric, or as several of the same name and kind over runs of its points when
/// it alone is larger than `budget`.
fn by_points(m: &Metric, budget: usize) -> Vec<Metric> {
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, Sum};
    if m.encoded_len() <= budget {
        return vec![m.clone()];
    }
    let with = |data: Data| Metric {
        data: Some(data),
        ..m.clone()
    };
    // What the metric costs without points: its name, help, unit and kind fields.
    let room = |empty: Data| budget.saturating_sub(with(empty).encoded_len());
    match &m.data {
        Some(Data::Gauge(g)) => {
            let room = room(Data::Gauge(Gauge::default()));
            runs(&g.data_points, room)
                .map(|p| {
                    with(Data::Gauge(Gauge {
                        data_points: p.to_vec(),
                    }))
                })
                .collect()
        }
        Some(Data::Sum(s)) => {
            let room = room(Data::Sum(Sum {
                data_points: vec![],
                ..s.clone()
            }));
            runs(&s.data_points, room)
                .map(|p| {
                    with(Data::Sum(Sum {
                        data_points: p.to_vec(),
                        ..s.clone()
                    }))
                })
                .collect()
        }
        Some(Data::Histogram(h)) => {
            let room = room(Data::Histogram(Histogram {
                data_points: vec![],
                ..h.clone()
            }));
            runs(&h.data_points, room)
                .map(|p| {
                    with(Data::Histogram(Histogram {
                        data_points: p.to_vec(),
                        ..h.clone()
                    }))
                })
                .collect()
        }
        // The agent sends no other kinds.
        _ => vec![m.clone()],
    }
}

/// `points` in consecutive runs of at most `room` encoded bytes each (a point larger than
/// that alone in its run).
fn runs<P: Message>(points: &[P], room: usize) -> impl Iterator<Item = &[P]> {
    let mut rest = points;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let mut n = 0;
        for p in rest {
            let len = p.encoded_len();
            let len = len + prost::length_delimiter_len(len) + 1;
            if n > 0 && used + len > room {
                break;
            }
            used += len;
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::otlp::encode;
    use crate::report::{Node, Report};
    use crate::sources::linklocal::meter::InterfaceWindow;
    use crate::sources::listeners::ListenerReport;
    use opentelemetry_proto::tonic::metrics::v1::NumberDataPoint;
    use std::collections::BTreeMap;

    /// A node with one DNS-busy interface and `n` listeners.
    fn request(n: u16) -> ExportMetricsServiceRequest {
        let w = InterfaceWindow::with_dns_talkers("Deployment");
        let mut r = Report::new(Node::default(), 0, 10_000_000_000, &[w]);
        r.listeners = (0..n).map(|p| ListenerReport::test(1000 + p)).collect();
        encode::request(&r, encode::resource(&r, &[]), 0)
    }

    /// Every number point by metric name, each as its encoded bytes (attributes, times, value).
    fn points(reqs: &[ExportMetricsServiceRequest]) -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for m in reqs
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
        {
            let ps: Vec<&NumberDataPoint> = match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().collect(),
                Some(Data::Sum(s)) => s.data_points.iter().collect(),
                _ => vec![],
            };
            let e = out.entry(m.name.clone()).or_default();
            e.extend(ps.iter().map(|p| p.encode_to_vec()));
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }

    #[test]
    fn a_window_within_the_limit_is_one_request_unchanged() {
        let req = request(3);
        assert_eq!(split(req.clone(), MAX_REQUEST_BYTES), vec![req]);
    }

    /// 2 000 listeners (~0.9 MB) at a 64 KiB limit: every part within it, every point sent
    /// exactly once under its own metric, the same resource and scope on each, and the
    /// interface and DNS families whole in the first request.
    #[test]
    fn an_oversized_window_is_split_with_every_point_once_and_dns_first() {
        const MAX: usize = 64 << 10;
        let req = request(2000);
        assert!(req.encoded_len() > 10 * MAX, "{}", req.encoded_len());
        let parts = split(req.clone(), MAX);
        assert!(parts.len() >= 10, "{} parts", parts.len());
        for p in &parts {
            assert!(p.encoded_len() <= MAX, "{} > {MAX}", p.encoded_len());
            let rm = &p.resource_metrics[0];
            assert_eq!(rm.resource, req.resource_metrics[0].resource);
            assert_eq!(
                rm.scope_metrics[0].scope,
                req.resource_metrics[0].scope_metrics[0].scope
            );
        }
        assert_eq!(points(&parts), points(std::slice::from_ref(&req)));
        let first = points(&parts[..1]);
        let whole = points(std::slice::from_ref(&req));
        let early: Vec<_> = whole
            .keys()
            .filter(|n| n.starts_with("headroom.linklocal") || n.starts_with("headroom.dns"))
            .collect();
        assert!(early.len() >= 8, "{early:?}");
        for n in early {
            assert_eq!(
                first.get(n),
                whole.get(n),
                "{n} not whole in the first part"
            );
        }
    }
}
