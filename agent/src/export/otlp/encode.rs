//! One report window → one OTLP `ExportMetricsServiceRequest`, built directly with the
//! opentelemetry-proto types. Every figure is a data point whose `start_time_unix_nano` is the
//! window's start and `time_unix_nano` its end, so a window sent late (after an outage) lands
//! where it belongs. Names: see the `headroom-signals` crate.

use crate::report::Report;
use crate::sources::linklocal::Service;
use headroom_signals::{attr, otlp, resource, span as span_attr};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use std::hash::{BuildHasher, Hasher};

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn kv_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv_value(key, any_value::Value::IntValue(value))
}

pub fn kv_double(key: &str, value: f64) -> KeyValue {
    kv_value(key, any_value::Value::DoubleValue(value))
}

/// Probe attributes (signals crate docs): namespace, pod, container, probe, target, workload.
pub fn probe_attributes(p: &crate::sources::probes::ProbeReport) -> Vec<KeyValue> {
    let (kind, name) = workload_pair(p.workload.as_ref());
    vec![
        kv(attr::NAMESPACE, &p.pod.namespace),
        kv(attr::POD, &p.pod.name),
        kv(attr::CONTAINER, &p.container),
        kv(attr::PROBE, p.kind.as_str()),
        kv(attr::TARGET, &p.target),
        kv(attr::WORKLOAD_KIND, kind),
        kv(attr::WORKLOAD, name),
    ]
}

/// (kind, name) of a workload; empty strings when unknown.
fn workload_pair(w: Option<&crate::pod::Workload>) -> (&str, &str) {
    w.map(|w| (w.kind.as_str(), w.name.as_str()))
        .unwrap_or(("", ""))
}

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
/// `cloud.provider`, `cloud.availability_zone` (the EC2 ones once known), then any
/// `OTEL_RESOURCE_ATTRIBUTES` entries (e.g. `k8s.cluster.name=prod`) for keys not set here.
pub fn resource(report: &Report, extra: &[(String, String)]) -> Resource {
    let n = &report.node;
    let mut attrs = vec![
        kv(resource::SERVICE_NAME, resource::AGENT_SERVICE),
        kv("service.version", env!("CARGO_PKG_VERSION")),
        kv(resource::K8S_NODE_NAME, &n.name),
        kv(resource::CLOUD_PROVIDER, "aws"),
    ];
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

fn point(attrs: &[KeyValue], start: u64, end: u64, v: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(v),
        ..Default::default()
    }
}

fn gauge(name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn counter(name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn histogram(name: &str, desc: &str, unit: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

/// Listener attributes (signals crate docs); empty strings where unknown.
fn listener_attributes(l: &crate::sources::listeners::ListenerReport) -> Vec<KeyValue> {
    let pod = l.pod.as_ref();
    let (kind, name) = workload_pair(l.workload.as_ref());
    vec![
        kv(
            attr::NAMESPACE,
            pod.and_then(|p| p.namespace.as_deref()).unwrap_or(""),
        ),
        kv(attr::POD, pod.and_then(|p| p.name.as_deref()).unwrap_or("")),
        kv(attr::CONTAINER, l.container.as_deref().unwrap_or("")),
        kv(attr::PORT, &l.port.to_string()),
        kv(attr::PROCESS, &l.process),
        kv(attr::WORKLOAD_KIND, kind),
        kv(attr::WORKLOAD, name),
    ]
}

/// Listener, probe and DNS top-talker metrics of one window (`start`..`end`);
/// `process_start_ns` starts the listeners' cumulative saturated seconds.
fn workload_metrics(report: &Report, start: u64, end: u64, process_start_ns: u64) -> Vec<Metric> {
    use number_data_point::Value::{AsDouble, AsInt};
    // Listeners sharing attributes (an IPv4 and an IPv6 socket on one port) are one series:
    // the one with the most workers, then the busiest, as on /metrics.
    let mut listeners: Vec<(Vec<KeyValue>, &crate::sources::listeners::ListenerReport)> =
        Vec::new();
    for l in &report.listeners {
        let a = listener_attributes(l);
        match listeners.iter_mut().find(|(b, _)| *b == a) {
            Some(e) if (l.workers, l.busy_mean) > (e.1.workers, e.1.busy_mean) => e.1 = l,
            Some(_) => {}
            None => listeners.push((a, l)),
        }
    }
    let (mut workers, mut busy, mut busy_max, mut queue, mut backlog, mut saturated) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (a, l) in &listeners {
        workers.push(point(a, start, end, AsInt(l.workers.into())));
        busy.push(point(a, start, end, AsDouble(l.busy_mean)));
        busy_max.push(point(a, start, end, AsInt(l.busy_max.into())));
        queue.push(point(a, start, end, AsInt(l.queue_max.into())));
        backlog.push(point(a, start, end, AsInt(l.backlog.into())));
        saturated.push(point(
            a,
            process_start_ns,
            end,
            AsDouble(l.saturated_seconds_total),
        ));
    }
    let (mut duration, mut attempts, mut timeout, mut p99, mut max, mut removals) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in report.probes.iter().filter(|p| p.reason.is_none()) {
        let a = probe_attributes(p);
        let t = &p.totals;
        let since = t.since_ns.max(process_start_ns).min(end);
        duration.push(HistogramDataPoint {
            attributes: a.clone(),
            start_time_unix_nano: since,
            time_unix_nano: end,
            count: t.count(),
            sum: Some(t.sum),
            bucket_counts: t.buckets.to_vec(),
            explicit_bounds: crate::sources::probes::stats::BUCKETS.to_vec(),
            ..Default::default()
        });
        for (i, o) in crate::sources::probes::stats::Outcome::ALL
            .iter()
            .enumerate()
        {
            let mut ra = a.clone();
            ra.push(kv(attr::RESULT, o.as_str()));
            attempts.push(point(&ra, since, end, AsInt(t.by_outcome[i] as i64)));
        }
        removals.push(point(&a, since, end, AsInt(t.removals as i64)));
        timeout.push(point(&a, start, end, AsDouble(p.timeout_seconds as f64)));
        if let Some(l) = p.latency_ms {
            p99.push(point(&a, start, end, AsDouble(l.p99 / 1000.0)));
            max.push(point(&a, start, end, AsDouble(l.max / 1000.0)));
        }
    }
    let (mut qnames, mut sources, mut source_expansion) = (vec![], vec![], vec![]);
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let Some(d) = &i.dns else { continue };
        let eni = i.eni_id.as_deref().unwrap_or("");
        for q in &d.top_qnames {
            let a = [
                kv(attr::INTERFACE, &i.name),
                kv(attr::ENI, eni),
                kv(attr::QNAME, &q.qname),
            ];
            qnames.push(point(&a, start, end, AsInt(q.queries as i64)));
        }
        for s in &d.top_sources {
            let (ns, pod) = s
                .pod
                .as_deref()
                .and_then(|p| p.split_once('/'))
                .unwrap_or(("", ""));
            let (kind, name) = workload_pair(s.workload.as_ref());
            let a = [
                kv(attr::INTERFACE, &i.name),
                kv(attr::ENI, eni),
                kv(attr::SOURCE, &s.source),
                kv(attr::NAMESPACE, ns),
                kv(attr::POD, pod),
                kv(attr::WORKLOAD_KIND, kind),
                kv(attr::WORKLOAD, name),
            ];
            sources.push(point(&a, start, end, AsInt(s.queries as i64)));
            source_expansion.push(point(
                &a,
                start,
                end,
                AsInt(s.search_expansion_packets as i64),
            ));
        }
    }
    let mut out = vec![
        gauge(
            otlp::WORKERS,
            "Worker processes of a listening socket (masters excluded)",
            "{worker}",
            workers,
        ),
        gauge(
            otlp::WORKERS_BUSY,
            "Mean number of workers holding an accepted connection over the report window",
            "{worker}",
            busy,
        ),
        gauge(
            otlp::WORKERS_BUSY_MAX,
            "Most workers busy at once in the report window",
            "{worker}",
            busy_max,
        ),
        gauge(
            otlp::ACCEPT_QUEUE_DEPTH_MAX,
            "Deepest accept queue (connections waiting for a worker) in the report window",
            "{connection}",
            queue,
        ),
        gauge(
            otlp::ACCEPT_QUEUE_BACKLOG,
            "Accept queue limit of the listening socket (listen backlog)",
            "{connection}",
            backlog,
        ),
        Metric {
            data: Some(metric::Data::Sum(Sum {
                data_points: saturated,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..gauge(
                otlp::WORKERS_SATURATED_SECONDS,
                "Time with every worker of the listening socket busy",
                "s",
                vec![],
            )
        },
        histogram(
            otlp::PROBE_DURATION,
            "Shadow probe attempts by duration, timeouts included (as their full timeout)",
            "s",
            duration,
        ),
        counter(
            otlp::PROBE_ATTEMPTS,
            "Shadow probe attempts by result (ok, slow, timeout, error)",
            "{attempt}",
            attempts,
        ),
        gauge(
            otlp::PROBE_TIMEOUT,
            "The probe's own timeoutSeconds",
            "s",
            timeout,
        ),
        gauge(
            otlp::PROBE_LATENCY_P99,
            "99th percentile of the window's shadow attempts, timeouts included",
            "s",
            p99,
        ),
        gauge(
            otlp::PROBE_LATENCY_MAX,
            "Slowest shadow attempt of the window",
            "s",
            max,
        ),
        counter(
            otlp::PROBE_PREDICTED_REMOVALS,
            "Runs of failureThreshold consecutive failures: times the kubelet would take the pod out",
            "{removal}",
            removals,
        ),
        gauge(
            otlp::DNS_TOP_QNAME_QUERIES,
            "Queries for one of the window's most asked names",
            "{query}",
            qnames,
        ),
        gauge(
            otlp::DNS_TOP_SOURCE_QUERIES,
            "Queries from one of the window's busiest sources",
            "{query}",
            sources,
        ),
        gauge(
            otlp::DNS_TOP_SOURCE_SEARCH_EXPANSION,
            "Packets one of the window's busiest sources spent on search-list suffixes",
            "{packet}",
            source_expansion,
        ),
    ];
    out.retain(|m| data_points(m) > 0);
    out
}

fn data_points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        _ => 0,
    }
}

/// Metrics sent even without data points (as before: a receiver sees the families).
const LINKLOCAL_ALWAYS: [&str; 10] = [
    otlp::LINKLOCAL_PPS_PEAK,
    otlp::LINKLOCAL_PPS_MEAN,
    otlp::LINKLOCAL_PPS_LIMIT,
    otlp::LINKLOCAL_UTILIZATION,
    otlp::LINKLOCAL_PACKETS,
    otlp::CAPTURE_DROPS,
    otlp::DNS_QUERIES,
    otlp::DNS_RESPONSES,
    otlp::DNS_UNANSWERED,
    otlp::DNS_SEARCH_EXPANSION,
];

/// The request for one report. `process_start_ns` is the start of the cumulative counters.
pub fn request(
    report: &Report,
    res: Resource,
    process_start_ns: u64,
) -> ExportMetricsServiceRequest {
    use number_data_point::Value::{AsDouble, AsInt};
    let start = report.window.start_ns;
    let end = start + (report.window.seconds * 1e9).round() as u64;
    let (mut peak, mut mean, mut limit, mut util, mut packets, mut drops) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut queries, mut responses, mut unanswered, mut expansion) =
        (vec![], vec![], vec![], vec![]);
    let (mut service_peak, mut allowance, mut share) = (vec![], vec![], vec![]);
    for i in report.interfaces.iter().filter(|i| i.capturing) {
        let a = [
            kv(attr::INTERFACE, &i.name),
            kv(attr::ENI, i.eni_id.as_deref().unwrap_or("")),
        ];
        peak.push(point(&a, start, end, AsInt(i.peak_pps as i64)));
        mean.push(point(&a, start, end, AsDouble(i.mean_pps)));
        limit.push(point(&a, start, end, AsInt(i.limit_pps as i64)));
        util.push(point(&a, start, end, AsDouble(i.utilization)));
        drops.push(point(
            &a,
            process_start_ns,
            end,
            AsInt(i.drops_total as i64),
        ));
        let t = &i.dns_totals;
        let total = |v: u64| point(&a, process_start_ns, end, AsInt(v as i64));
        queries.push(total(t.queries));
        unanswered.push(total(t.unanswered));
        expansion.push(total(t.search_expansion));
        for (rcode, n) in &t.responses {
            let mut ra = a.to_vec();
            ra.push(kv(attr::RCODE, rcode));
            responses.push(point(&ra, process_start_ns, end, AsInt(*n as i64)));
        }
        if let Some(d) = &i.dns {
            share.push(point(&a, start, end, AsDouble(d.search_expansion_share)));
        }
        for (name, total) in &i.allowance_totals {
            let mut aa = a.to_vec();
            aa.push(kv(
                attr::ALLOWANCE,
                name.trim_end_matches("_allowance_exceeded"),
            ));
            allowance.push(point(&aa, process_start_ns, end, AsInt(*total as i64)));
        }
        for s in Service::ALL {
            let mut sa = a.to_vec();
            sa.push(kv(attr::SERVICE, s.as_str()));
            if let Some(f) = i.by_service.get(&s) {
                service_peak.push(point(&sa, start, end, AsInt(f.peak_pps as i64)));
            }
            packets.push(point(
                &sa,
                process_start_ns,
                end,
                AsInt(i.packets_total[s.index()] as i64),
            ));
        }
    }
    let mut metrics = vec![
        gauge(
            otlp::LINKLOCAL_PPS_PEAK,
            "Highest packets in any one second of the report window, all link-local services together",
            "{packet}/s",
            peak,
        ),
        gauge(
            otlp::LINKLOCAL_PPS_MEAN,
            "Mean packets per second to link-local services over the report window",
            "{packet}/s",
            mean,
        ),
        gauge(
            otlp::LINKLOCAL_PPS_LIMIT,
            "Packets per second an interface may send to link-local services before EC2 drops them",
            "{packet}/s",
            limit,
        ),
        gauge(
            otlp::LINKLOCAL_UTILIZATION,
            "Peak packets per second over the link-local limit, report window",
            "1",
            util,
        ),
        counter(
            otlp::LINKLOCAL_PACKETS,
            "Packets sent to EC2 link-local services (Route 53 Resolver, IMDS, Time Sync)",
            "{packet}",
            packets,
        ),
        counter(
            otlp::CAPTURE_DROPS,
            "Packets the kernel matched but the agent's capture ring had no room for",
            "{packet}",
            drops,
        ),
        counter(
            otlp::DNS_QUERIES,
            "DNS queries sent to counted resolvers",
            "{query}",
            queries,
        ),
        counter(
            otlp::DNS_RESPONSES,
            "DNS responses from counted resolvers, by rcode",
            "{response}",
            responses,
        ),
        counter(
            otlp::DNS_UNANSWERED,
            "DNS queries without a response in time",
            "{query}",
            unanswered,
        ),
        counter(
            otlp::DNS_SEARCH_EXPANSION,
            "DNS packets spent on search-list suffixes before the name that answered",
            "{packet}",
            expansion,
        ),
        gauge(
            otlp::LINKLOCAL_SERVICE_PPS_PEAK,
            "Highest packets in any one second of the report window to one link-local service",
            "{packet}/s",
            service_peak,
        ),
        counter(
            otlp::ENA_ALLOWANCE_EXCEEDED,
            "Packets EC2 dropped or queued because an allowance was exceeded (ENA driver counters)",
            "{packet}",
            allowance,
        ),
        gauge(
            otlp::DNS_SEARCH_EXPANSION_SHARE,
            "Share of the window's DNS queries spent on search-list suffixes that failed",
            "1",
            share,
        ),
    ];
    metrics.retain(|m| data_points(m) > 0 || LINKLOCAL_ALWAYS.contains(&m.name.as_str()));
    metrics.extend(workload_metrics(report, start, end, process_start_ns));
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
        let base = probe_attributes(p);
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
                (None, crate::sources::probes::stats::Outcome::Timeout) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose one probe (readiness of shop/web, timeout 1 s) had a fast success, a
    /// slow one, a timeout while both workers were busy, and a 503.
    fn probe_report() -> Report {
        use crate::sources::probes::shadow::Attempt;
        use crate::sources::probes::stats::Outcome;
        use crate::sources::probes::{ProbeLog, Saturation};
        use std::time::{Duration, UNIX_EPOCH};
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-7d9f8b6c5-x2k4p", "uid": "u1",
                         "labels": {"pod-template-hash": "7d9f8b6c5"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "web-7d9f8b6c5", "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 8080, "path": "/h"}}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        let spec = crate::sources::probes::spec::probes_of(&pod).remove(0);
        let log = ProbeLog::default();
        log.set_specs(std::slice::from_ref(&spec));
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
        let a = |ms: u64, outcome, elapsed: u64, status, error: Option<&str>| Attempt {
            started: at(ms),
            outcome,
            elapsed: Duration::from_millis(elapsed),
            status,
            error: error.map(str::to_string),
        };
        let busy = Saturation {
            busy: 2,
            workers: 2,
            queue: 3,
        };
        let k = spec.key();
        log.record(&k, &a(0, Outcome::Ok, 10, Some(200), None), None);
        log.record(&k, &a(1000, Outcome::Slow, 700, Some(200), None), None);
        log.record(&k, &a(2000, Outcome::Timeout, 1000, None, None), Some(busy));
        log.record(
            &k,
            &a(3000, Outcome::Error, 4, Some(503), Some("HTTP status 503")),
            None,
        );
        let mut r = Report::new(
            Node::default(),
            1_700_000_000_000_000_000,
            1_700_000_010_000_000_000,
            &[],
        );
        r.probes = log.cut();
        let idx = crate::enrich::pods::PodIndex::default();
        idx.rebuild([&pod]);
        r.probes[0].workload = idx.workload("u1");
        r
    }

    fn attr_of<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn numbers(m: &Metric) -> Vec<&NumberDataPoint> {
        match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic, "{} is monotonic", m.name);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                s.data_points.iter().collect()
            }
            _ => panic!("{} is not a number metric", m.name),
        }
    }

    fn value(p: &NumberDataPoint) -> f64 {
        match p.value {
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            Some(number_data_point::Value::AsDouble(v)) => v,
            None => f64::NAN,
        }
    }

    /// The one point whose attributes include every `(key, value)` of `with`.
    fn only<'a>(m: &'a Metric, with: &[(&str, &str)]) -> &'a NumberDataPoint {
        let hits: Vec<_> = numbers(m)
            .into_iter()
            .filter(|p| with.iter().all(|(k, v)| p.attributes.contains(&kv(k, v))))
            .collect();
        assert_eq!(hits.len(), 1, "{} {with:?}: {hits:?}", m.name);
        hits[0]
    }

    const START: u64 = 1_700_000_000_000_000_000;
    const END: u64 = 1_700_000_010_000_000_000;

    #[test]
    fn probes_become_histograms_counters_and_gauges() {
        let r = probe_report();
        let req = request(&r, resource(&r, &[]), 1_600_000_000_000_000_000);
        let h = metric(&req, "headroom.probe.duration.seconds");
        let Some(metric::Data::Histogram(h)) = &h.data else {
            panic!("a histogram")
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(p.count, 4);
        assert_eq!(
            p.explicit_bounds,
            crate::sources::probes::stats::BUCKETS.to_vec()
        );
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        // 0.004 and 0.01 s ≤ 0.05; 0.7 s ≤ 0.75; the timeout at its timeout, 1 s.
        assert_eq!(p.bucket_counts[0], 2);
        assert_eq!(p.bucket_counts[4], 1);
        assert_eq!(p.bucket_counts[5], 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 4);
        assert!((p.sum.unwrap() - 1.714).abs() < 1e-9);
        assert!(p.attributes.contains(&kv("workload", "web")));
        assert_eq!(p.time_unix_nano, END);
        // Cumulative: from when the probe was first counted, never before the process.
        assert!(p.start_time_unix_nano >= 1_600_000_000_000_000_000);
        assert!(p.start_time_unix_nano <= END);
        let attempts = metric(&req, "headroom.probe.attempts");
        for (result, n) in [("ok", 1.0), ("slow", 1.0), ("timeout", 1.0), ("error", 1.0)] {
            assert_eq!(value(only(attempts, &[("result", result)])), n, "{result}");
        }
        let removals = metric(&req, "headroom.probe.predicted.removals");
        assert_eq!(value(only(removals, &[("probe", "readiness")])), 0.0);
        let g = |name: &str| {
            let p = only(metric(&req, name), &[("pod", "web-7d9f8b6c5-x2k4p")]);
            assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (START, END));
            value(p)
        };
        assert_eq!(g("headroom.probe.timeout.seconds"), 1.0);
        assert_eq!(g("headroom.probe.latency.p99.seconds"), 1.0);
        assert_eq!(g("headroom.probe.latency.max.seconds"), 1.0);
    }

    #[test]
    fn listeners_dns_talkers_services_and_allowances_are_exported() {
        let w = InterfaceWindow::with_dns_talkers("StatefulSet");
        let mut r = Report::new(Node::default(), START, END, &[w]);
        r.interfaces[0].eni_id = Some("eni-1".into());
        r.interfaces[0].allowance_totals = [("linklocal_allowance_exceeded".to_string(), 17)]
            .into_iter()
            .collect();
        let listener = |address: &str, workers: u32, busy_max: u32| {
            crate::sources::listeners::ListenerReport {
                pod: Some(crate::sources::listeners::PodRef {
                    namespace: Some("shop".into()),
                    name: Some("web-1".into()),
                    uid: "u".into(),
                }),
                container: Some("c0ffee".into()),
                address: address.into(),
                port: 8000,
                process: "gunicorn".into(),
                workers,
                busy_mean: 1.5,
                busy_max,
                queue_max: 3,
                backlog: 128,
                utilization: 0.75,
                saturated_seconds: 2.0,
                cpu_periods: None,
                cpu_throttled_periods: None,
                cpu_throttled_seconds: None,
                samples: 50,
                netns: 1,
                worker_pids: vec![],
                workload: Some(crate::pod::Workload {
                    kind: "StatefulSet".into(),
                    name: "web".into(),
                }),
                saturated_seconds_total: 5.5,
            }
        };
        // The same port over IPv4 and IPv6: one series, the one with the workers.
        r.listeners = vec![listener("0.0.0.0", 2, 2), listener("::", 0, 0)];
        let req = request(&r, resource(&r, &[]), 42);
        let ll = [("namespace", "shop"), ("pod", "web-1"), ("port", "8000")];
        let lw = [("workload_kind", "StatefulSet"), ("workload", "web")];
        for (name, want) in [
            ("headroom.workers", 2.0),
            ("headroom.workers.busy", 1.5),
            ("headroom.workers.busy.max", 2.0),
            ("headroom.accept.queue.depth.max", 3.0),
            ("headroom.accept.queue.backlog", 128.0),
        ] {
            let p = only(metric(&req, name), &ll);
            assert_eq!(value(p), want, "{name}");
            assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (START, END));
            assert!(lw.iter().all(|(k, v)| p.attributes.contains(&kv(k, v))));
            assert!(p.attributes.contains(&kv("process", "gunicorn")));
            assert!(p.attributes.contains(&kv("container", "c0ffee")));
        }
        let sat = only(metric(&req, "headroom.workers.saturated.seconds"), &ll);
        assert_eq!((value(sat), sat.start_time_unix_nano), (5.5, 42));
        let svc = metric(&req, "headroom.linklocal.service.pps.peak");
        assert_eq!(
            value(only(svc, &[("service", "dns"), ("eni", "eni-1")])),
            6.0
        );
        assert_eq!(value(only(svc, &[("service", "imds")])), 2.0);
        let ena = only(
            metric(&req, "headroom.ena.allowance.exceeded"),
            &[("allowance", "linklocal")],
        );
        assert_eq!((value(ena), ena.start_time_unix_nano), (17.0, 42));
        let share = only(metric(&req, "headroom.dns.search.expansion.share"), &[]);
        assert_eq!(value(share), 0.75);
        let q = only(
            metric(&req, "headroom.dns.top.qname.queries"),
            &[("qname", "db.shop.svc.cluster.local")],
        );
        assert_eq!(
            (value(q), q.start_time_unix_nano, q.time_unix_nano),
            (25.0, START, END)
        );
        let src = [
            ("source", "10.0.0.5"),
            ("namespace", "shop"),
            ("pod", "web-1"),
            ("workload_kind", "StatefulSet"),
            ("workload", "web"),
        ];
        assert_eq!(
            value(only(metric(&req, "headroom.dns.top.source.queries"), &src)),
            40.0
        );
        assert_eq!(
            value(only(
                metric(&req, "headroom.dns.top.source.search.expansion.packets"),
                &src
            )),
            30.0
        );
        // No probes in this report: no probe metrics at all.
        let names: Vec<&str> = req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("headroom.probe.")),
            "{names:?}"
        );
    }

    #[test]
    fn not_ok_probe_attempts_are_probe_spans_at_their_real_times() {
        use any_value::Value::{DoubleValue, IntValue, StringValue};
        let r = probe_report();
        let t = spans(&r, resource(&r, &[])).expect("probe spans without resolver checks");
        let sp = &t.resource_spans[0].scope_spans[0].spans;
        assert_eq!(sp.len(), 3, "slow, timeout and error; not the ok one");
        let s = |v: &str| Some(StringValue(v.into()));
        for x in sp {
            assert_eq!(x.name, "probe");
            assert_eq!(attr_of(&x.attributes, "namespace"), s("shop").as_ref());
            assert_eq!(
                attr_of(&x.attributes, "pod"),
                s("web-7d9f8b6c5-x2k4p").as_ref()
            );
            assert_eq!(attr_of(&x.attributes, "container"), s("app").as_ref());
            assert_eq!(attr_of(&x.attributes, "probe"), s("readiness").as_ref());
            assert_eq!(
                attr_of(&x.attributes, "target"),
                s("http://10.0.0.5:8080/h").as_ref()
            );
            assert_eq!(
                attr_of(&x.attributes, "workload_kind"),
                s("Deployment").as_ref()
            );
            assert_eq!(attr_of(&x.attributes, "workload"), s("web").as_ref());
            assert_eq!(
                attr_of(&x.attributes, "probe.timeout_seconds"),
                Some(&DoubleValue(1.0))
            );
        }
        let (slow, tmo, err) = (&sp[0], &sp[1], &sp[2]);
        assert_eq!(slow.start_time_unix_nano, 1_700_000_001_000_000_000);
        assert_eq!(slow.end_time_unix_nano, 1_700_000_001_700_000_000);
        assert_eq!(
            attr_of(&slow.attributes, "probe.outcome"),
            s("slow").as_ref()
        );
        assert_eq!(
            attr_of(&slow.attributes, "http.response.status_code"),
            Some(&IntValue(200))
        );
        assert_eq!(
            slow.status.as_ref().unwrap().code,
            status::StatusCode::Unset as i32
        );
        assert!(
            attr_of(&slow.attributes, "workers.busy").is_none(),
            "no listener known"
        );
        assert_eq!(tmo.start_time_unix_nano, 1_700_000_002_000_000_000);
        assert_eq!(
            tmo.end_time_unix_nano - tmo.start_time_unix_nano,
            1_000_000_000
        );
        assert_eq!(
            attr_of(&tmo.attributes, "probe.elapsed_seconds"),
            Some(&DoubleValue(1.0))
        );
        assert_eq!(attr_of(&tmo.attributes, "workers.busy"), Some(&IntValue(2)));
        assert_eq!(
            attr_of(&tmo.attributes, "workers.total"),
            Some(&IntValue(2))
        );
        assert_eq!(
            attr_of(&tmo.attributes, "accept_queue.depth"),
            Some(&IntValue(3))
        );
        let st = tmo.status.as_ref().unwrap();
        assert_eq!(st.code, status::StatusCode::Error as i32);
        assert_eq!(st.message, "timed out after 1 s");
        assert_eq!(
            attr_of(&err.attributes, "probe.error"),
            s("HTTP status 503").as_ref()
        );
        assert_eq!(
            err.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_ne!(tmo.trace_id, err.trace_id);
    }
    use crate::report::Node;
    use crate::sources::linklocal::meter::InterfaceWindow;
    use crate::sources::linklocal::series::Figures;

    #[test]
    fn a_window_becomes_gauges_at_its_end() {
        let w = InterfaceWindow {
            name: "eth0".into(),
            figures: Figures {
                packets: [10, 0, 0],
                peak: 7,
                peak_by_service: [7, 0, 0],
            },
            packets_total: [25, 1, 0],
            drops_total: 4,
            capturing: true,
            dns_totals: crate::sources::dns::tracker::DnsTotals {
                queries: 12,
                responses: [("NOERROR".to_string(), 11)].into_iter().collect(),
                unanswered: 1,
                search_expansion: 0,
            },
            ..Default::default()
        };
        let node = Node {
            name: "ip-10-0-0-1".into(),
            ..Node::default()
        };
        let r = Report::new(node, 5_000_000_000, 15_000_000_000, &[w]);
        let extra = parse_resource_attributes("k8s.cluster.name=prod%2Deu,service.name=x");
        let req = request(&r, resource(&r, &extra), 1);
        let rm = &req.resource_metrics[0];
        let res = &rm.resource.as_ref().unwrap().attributes;
        let get = |k: &str| {
            res.iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        let s = |v: &str| Some(any_value::Value::StringValue(v.into()));
        assert_eq!(get("service.name"), s("headroom-agent"));
        assert_eq!(get("k8s.node.name"), s("ip-10-0-0-1"));
        assert_eq!(get("k8s.cluster.name"), s("prod-eu"));
        assert_eq!(get("cloud.provider"), s("aws"));
        let m = &rm.scope_metrics[0].metrics;
        let peak = m
            .iter()
            .find(|m| m.name == "headroom.linklocal.pps.peak")
            .unwrap();
        let Some(metric::Data::Gauge(g)) = &peak.data else {
            panic!("peak is a gauge")
        };
        let p = &g.data_points[0];
        assert_eq!(p.start_time_unix_nano, 5_000_000_000);
        assert_eq!(p.time_unix_nano, 15_000_000_000);
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(7)));
        let packets = m
            .iter()
            .find(|m| m.name == "headroom.linklocal.packets")
            .unwrap();
        let Some(metric::Data::Sum(s)) = &packets.data else {
            panic!("packets is a sum")
        };
        assert_eq!(s.data_points.len(), 3);
        assert!(s.is_monotonic);
        let responses = m
            .iter()
            .find(|m| m.name == "headroom.dns.responses")
            .unwrap();
        let Some(metric::Data::Sum(s)) = &responses.data else {
            panic!("responses is a sum")
        };
        let p = &s.data_points[0];
        assert!(p.attributes.contains(&kv("rcode", "NOERROR")));
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(11)));
        assert!(
            spans(&r, resource(&r, &[])).is_none(),
            "no checks, no spans"
        );
        let mut r = r;
        r.resolver_checks
            .push(crate::sources::resolver_checks::ResolverCheck {
                resolver: "169.254.169.253".into(),
                qname: "example.com".into(),
                rcode: "TIMEOUT".into(),
                elapsed_ms: 2000.0,
                attempt: 1,
                at: "2026-01-01T00:00:00.000Z".into(),
                answers: vec![],
            });
        let t = spans(&r, resource(&r, &[])).unwrap();
        let sp = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(sp.name, "dns.resolve");
        assert_eq!(
            sp.end_time_unix_nano - sp.start_time_unix_nano,
            2_000_000_000
        );
        assert_eq!(sp.trace_id.len(), 16);
        assert_eq!(sp.span_id.len(), 8);
        assert_eq!(
            sp.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
    }
}
