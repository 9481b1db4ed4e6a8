//! Spans: each resolver check as a `dns.resolve` client span, each slow, timed-out or failed
//! probe attempt as a `probe` client span, one trace each.

use super::points::{kv, kv_double, kv_int};
use crate::report::Report;
use crate::sources::probes::stats::Outcome;
use headroom_signals::span as span_attr;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use std::hash::{BuildHasher, Hasher};

/// `n` bytes unlikely to repeat (trace and span ids): std's randomly keyed hasher over a
/// counter and the time; no cryptographic need here.
fn random_id(n: usize) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u64(crate::time::now_ns());
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Each slow, timed-out or failed probe attempt of the window as a `probe` client span (one
/// trace each): start = when the attempt began, end = start + elapsed; the probe attributes,
/// the attempt's (timeout, elapsed, outcome, HTTP status, error) and the pod's worker
/// saturation at that moment when known; status ERROR for timeouts and errors.
pub fn probe_spans(report: &Report) -> Vec<Span> {
    let mut out = Vec::new();
    for p in &report.probes {
        let base = super::probes::attributes(p);
        for n in &p.not_ok {
            let mut attributes = base.clone();
            attributes.push(kv_double(
                span_attr::PROBE_TIMEOUT_SECONDS,
                p.timeout_seconds as f64,
            ));
            attributes.push(kv_double(
                span_attr::PROBE_ELAPSED_SECONDS,
                n.elapsed.as_secs_f64(),
            ));
            attributes.push(kv(span_attr::PROBE_OUTCOME, n.outcome.as_str()));
            if let Some(status) = n.status {
                attributes.push(kv_int(span_attr::HTTP_STATUS, status.into()));
            }
            if let Some(e) = &n.error {
                attributes.push(kv(span_attr::PROBE_ERROR, e));
            }
            if let Some(s) = n.saturation {
                attributes.push(kv_int(span_attr::WORKERS_BUSY, s.busy.into()));
                attributes.push(kv_int(span_attr::WORKERS_TOTAL, s.workers.into()));
                attributes.push(kv_int(span_attr::ACCEPT_QUEUE, s.queue.into()));
            }
            let failed = n.outcome.is_failure();
            let message = match (&n.error, n.outcome) {
                (Some(e), _) => e.clone(),
                (None, Outcome::Timeout) => {
                    format!("timed out after {} s", p.timeout_seconds)
                }
                _ => String::new(),
            };
            out.push(Span {
                trace_id: random_id(16),
                span_id: random_id(8),
                name: span_attr::PROBE.into(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: n.start_ns,
                end_time_unix_nano: n.start_ns + n.elapsed.as_nanos() as u64,
                attributes,
                status: Some(Status {
                    message: if failed { message } else { String::new() },
                    code: if failed {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                }),
                ..Default::default()
            });
        }
    }
    out
}

/// The window's resolver checks as `dns.resolve` client spans (one trace each) and its
/// not-ok probe attempts as `probe` spans ([`probe_spans`]); None when there were none.
/// `dns.resolve` attributes: `dns.resolver`, `dns.question.name`, `dns.rcode`,
/// `dns.attempt`, `dns.answers`; status ERROR unless the resolver answered.
pub fn spans(report: &Report, res: Resource) -> Option<ExportTraceServiceRequest> {
    let probes = probe_spans(report);
    if report.resolver_checks.is_empty() && probes.is_empty() {
        return None;
    }
    let mut spans: Vec<Span> = report
        .resolver_checks
        .iter()
        .map(|c| {
            let start = humantime::parse_rfc3339(&c.at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(report.window.start_ns);
            let failed = c.rcode == "TIMEOUT" || c.rcode == "ERROR";
            Span {
                trace_id: random_id(16),
                span_id: random_id(8),
                name: span_attr::DNS_RESOLVE.into(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (c.elapsed_ms * 1e6) as u64,
                attributes: vec![
                    kv("dns.resolver", &c.resolver),
                    kv("dns.question.name", &c.qname),
                    kv("dns.rcode", &c.rcode),
                    kv("dns.attempt", &c.attempt.to_string()),
                    kv("dns.answers", &c.answers.join(",")),
                ],
                status: Some(Status {
                    message: if failed {
                        c.rcode.clone()
                    } else {
                        String::new()
                    },
                    code: if failed {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                }),
                ..Default::default()
            }
        })
        .collect();
    spans.extend(probes);
    Some(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(res),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "headroom-agent".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}
