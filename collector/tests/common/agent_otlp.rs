//! OTLP metrics shaped as headroom-agent sends them (agent/src/otlp/encode.rs and the contract
//! in headroom-signals): the agent's resource, one scope, gauges with the window's start and
//! end, cumulative monotonic sums from the agent's start, the names and attributes of
//! `headroom_signals::{metric, attr}`.

use headroom_signals::{attr, metric as desc, resource};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub const S: u64 = 1_000_000_000;

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn point(attrs: &[KeyValue], start: u64, end: u64, v: f64, int: bool) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(if int {
            number_data_point::Value::AsInt(v.round() as i64)
        } else {
            number_data_point::Value::AsDouble(v)
        }),
        ..Default::default()
    }
}

/// One agent report window under construction.
pub struct Window {
    pub node: String,
    pub start: u64,
    pub end: u64,
    /// When the agent's cumulative counters started (its process start).
    pub counter_start: u64,
    metrics: Vec<Metric>,
}

impl Window {
    pub fn new(node: &str, start: u64, end: u64, counter_start: u64) -> Window {
        Window {
            node: node.into(),
            start,
            end,
            counter_start,
            metrics: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, unit: &str, sum: bool, p: NumberDataPoint) {
        if let Some(m) = self.metrics.iter_mut().find(|m| m.name == name) {
            match &mut m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.push(p),
                Some(metric::Data::Sum(s)) => s.data_points.push(p),
                _ => unreachable!(),
            }
            return;
        }
        let data = if sum {
            metric::Data::Sum(Sum {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })
        } else {
            metric::Data::Gauge(Gauge {
                data_points: vec![p],
            })
        };
        self.metrics.push(Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        });
    }

    fn gauge(&mut self, name: &str, unit: &str, a: &[KeyValue], v: f64, int: bool) {
        let p = point(a, self.start, self.end, v, int);
        self.push(name, unit, false, p);
    }

    fn counter(&mut self, name: &str, unit: &str, a: &[KeyValue], v: f64, int: bool) {
        let p = point(a, self.counter_start, self.end, v, int);
        self.push(name, unit, true, p);
    }

    /// The interface gauges the agent always sends.
    pub fn interface(&mut self, iface: &str, eni: &str, peak: u64, dns_peak: u64) -> &mut Self {
        let a = [kv(attr::INTERFACE, iface), kv(attr::ENI, eni)];
        let secs = (self.end - self.start) as f64 / S as f64;
        self.gauge(
            desc::LINKLOCAL_PPS_PEAK.otlp,
            "{packet}/s",
            &a,
            peak as f64,
            true,
        );
        self.gauge(
            desc::LINKLOCAL_PPS_MEAN.otlp,
            "{packet}/s",
            &a,
            peak as f64 / secs,
            false,
        );
        self.gauge(
            desc::LINKLOCAL_PPS_LIMIT.otlp,
            "{packet}/s",
            &a,
            1024.0,
            true,
        );
        self.gauge(
            desc::LINKLOCAL_UTILIZATION.otlp,
            "1",
            &a,
            peak as f64 / 1024.0,
            false,
        );
        let mut s = a.to_vec();
        s.push(kv(attr::SERVICE, "dns"));
        self.gauge(
            desc::LINKLOCAL_SERVICE_PPS_PEAK.otlp,
            "{packet}/s",
            &s,
            dns_peak as f64,
            true,
        );
        self
    }

    /// ENA allowance counters (cumulative rises since the agent started); `name` as the agent
    /// sends it: the driver's counter name without `_allowance_exceeded`.
    pub fn allowance(&mut self, iface: &str, eni: &str, name: &str, total: u64) -> &mut Self {
        let a = [
            kv(attr::INTERFACE, iface),
            kv(attr::ENI, eni),
            kv(attr::ALLOWANCE, name),
        ];
        self.counter(
            desc::ENA_ALLOWANCE_EXCEEDED.otlp,
            "{packet}",
            &a,
            total as f64,
            true,
        );
        self
    }

    /// The window's DNS: share, top names, one top source, cumulative totals.
    #[allow(clippy::too_many_arguments)]
    pub fn dns(
        &mut self,
        iface: &str,
        eni: &str,
        share: f64,
        qnames: &[(&str, u64)],
        source: (&str, &str, &str, &str, u64, u64),
        queries_total: u64,
        unanswered_total: u64,
    ) -> &mut Self {
        let a = [kv(attr::INTERFACE, iface), kv(attr::ENI, eni)];
        self.gauge(desc::DNS_SEARCH_EXPANSION_SHARE.otlp, "1", &a, share, false);
        for (q, n) in qnames {
            let mut qa = a.to_vec();
            qa.push(kv(attr::QNAME, q));
            self.gauge(
                desc::DNS_TOP_QNAME_QUERIES.otlp,
                "{query}",
                &qa,
                *n as f64,
                true,
            );
        }
        let (src, ns, pod, workload, queries, expansion) = source;
        let mut sa = a.to_vec();
        sa.extend([
            kv(attr::SOURCE, src),
            kv(attr::NAMESPACE, ns),
            kv(attr::POD, pod),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, workload),
        ]);
        self.gauge(
            desc::DNS_TOP_SOURCE_QUERIES.otlp,
            "{query}",
            &sa,
            queries as f64,
            true,
        );
        self.gauge(
            desc::DNS_TOP_SOURCE_SEARCH_EXPANSION.otlp,
            "{packet}",
            &sa,
            expansion as f64,
            true,
        );
        self.counter(
            desc::DNS_QUERIES.otlp,
            "{query}",
            &a,
            queries_total as f64,
            true,
        );
        self.counter(
            desc::DNS_UNANSWERED.otlp,
            "{query}",
            &a,
            unanswered_total as f64,
            true,
        );
        self
    }

    /// The window's measured fix savings on an interface: (cacheable share, cache mean pps,
    /// cache busiest-second pps, ndots:2 pps, FQDN pps), and one top source's cache pps.
    pub fn savings(
        &mut self,
        iface: &str,
        eni: &str,
        figures: (f64, f64, f64, f64, f64),
        source: (&str, &str, &str, &str, f64),
    ) -> &mut Self {
        let a = [kv(attr::INTERFACE, iface), kv(attr::ENI, eni)];
        let (share, mean, peak, ndots2, fqdn) = figures;
        self.gauge(desc::DNS_CACHEABLE_SHARE.otlp, "1", &a, share, false);
        for (m, v) in [
            (&desc::DNS_CACHE_SAVINGS_PPS, mean),
            (&desc::DNS_CACHE_SAVINGS_PPS_PEAK, peak),
            (&desc::DNS_NDOTS2_SAVINGS_PPS, ndots2),
            (&desc::DNS_FQDN_SAVINGS_PPS, fqdn),
        ] {
            self.gauge(m.otlp, "{packet}/s", &a, v, false);
        }
        let (src, ns, pod, workload, cache) = source;
        let mut sa = a.to_vec();
        sa.extend([
            kv(attr::SOURCE, src),
            kv(attr::NAMESPACE, ns),
            kv(attr::POD, pod),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, workload),
        ]);
        self.gauge(
            desc::DNS_TOP_SOURCE_CACHE_SAVINGS_PPS.otlp,
            "{packet}/s",
            &sa,
            cache,
            false,
        );
        self
    }

    /// One prefork listener of a Deployment's pod.
    #[allow(clippy::too_many_arguments)]
    pub fn listener(
        &mut self,
        ns: &str,
        pod: &str,
        workload: &str,
        workers: u32,
        busy_mean: f64,
        busy_max: u32,
        queue_max: u32,
        saturated_total: f64,
    ) -> &mut Self {
        let a = [
            kv(attr::NAMESPACE, ns),
            kv(attr::POD, pod),
            kv(attr::CONTAINER, "app"),
            kv(attr::PORT, "8000"),
            kv(attr::PROCESS, "gunicorn"),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, workload),
        ];
        self.gauge(desc::WORKERS.otlp, "{worker}", &a, workers as f64, true);
        self.gauge(desc::WORKERS_BUSY.otlp, "{worker}", &a, busy_mean, false);
        self.gauge(
            desc::WORKERS_BUSY_MAX.otlp,
            "{worker}",
            &a,
            busy_max as f64,
            true,
        );
        self.gauge(
            desc::ACCEPT_QUEUE_DEPTH_MAX.otlp,
            "{connection}",
            &a,
            queue_max as f64,
            true,
        );
        self.gauge(
            desc::ACCEPT_QUEUE_BACKLOG.otlp,
            "{connection}",
            &a,
            128.0,
            true,
        );
        self.counter(
            desc::WORKERS_SATURATED_SECONDS.otlp,
            "s",
            &a,
            saturated_total,
            false,
        );
        self
    }

    /// One readiness probe: cumulative attempts by result and removals, the timeout, and the
    /// window's p99/max when there were attempts.
    pub fn probe(
        &mut self,
        ns: &str,
        pod: &str,
        attempts: [(&str, u64); 4],
        removals: u64,
        timeout: f64,
        p99_max: Option<(f64, f64)>,
    ) -> &mut Self {
        let a = [
            kv(attr::NAMESPACE, ns),
            kv(attr::POD, pod),
            kv(attr::CONTAINER, "app"),
            kv(attr::PROBE, "readiness"),
            kv(attr::TARGET, "http://10.0.1.5:8000/healthz"),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, "web"),
        ];
        for (result, n) in attempts {
            let mut ra = a.to_vec();
            ra.push(kv(attr::RESULT, result));
            self.counter(desc::PROBE_ATTEMPTS.otlp, "{attempt}", &ra, n as f64, true);
        }
        self.counter(
            desc::PROBE_PREDICTED_REMOVALS.otlp,
            "{removal}",
            &a,
            removals as f64,
            true,
        );
        self.gauge(desc::PROBE_TIMEOUT.otlp, "s", &a, timeout, false);
        if let Some((p99, max)) = p99_max {
            self.gauge(desc::PROBE_LATENCY_P99.otlp, "s", &a, p99, false);
            self.gauge(desc::PROBE_LATENCY_MAX.otlp, "s", &a, max, false);
        }
        self
    }

    /// One container's pod use in the window (CPU cores mean and busiest second, memory peak
    /// bytes, requests), as the agent's pod-use figures send it.
    #[allow(clippy::too_many_arguments)]
    pub fn pod_use(
        &mut self,
        ns: &str,
        pod: &str,
        workload: &str,
        container: &str,
        cpu: f64,
        busiest: f64,
        memory_peak: u64,
        requests: (f64, u64),
    ) -> &mut Self {
        let a = [
            kv(attr::NAMESPACE, ns),
            kv(attr::POD, pod),
            kv(attr::CONTAINER, container),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, workload),
        ];
        self.gauge(desc::POD_CPU.otlp, "{core}", &a, cpu, false);
        self.gauge(
            desc::POD_CPU_BUSIEST_SECOND.otlp,
            "{core}",
            &a,
            busiest,
            false,
        );
        self.gauge(desc::POD_CPU_REQUEST.otlp, "{core}", &a, requests.0, false);
        let m = memory_peak as f64;
        self.gauge(desc::POD_MEMORY_PEAK.otlp, "By", &a, m, true);
        self.gauge(
            desc::POD_MEMORY_REQUEST.otlp,
            "By",
            &a,
            requests.1 as f64,
            true,
        );
        self
    }

    /// A workload's co-burst on this node: pods measured, and the p95 of those above request.
    pub fn co_burst(&mut self, ns: &str, workload: &str, pods: u32, p95: u32) -> &mut Self {
        let a = [
            kv(attr::NAMESPACE, ns),
            kv(attr::WORKLOAD_KIND, "Deployment"),
            kv(attr::WORKLOAD, workload),
        ];
        self.gauge(desc::WORKLOAD_PODS.otlp, "{pod}", &a, pods as f64, true);
        let p = p95 as f64;
        self.gauge(
            desc::WORKLOAD_PODS_ABOVE_REQUEST_P95.otlp,
            "{pod}",
            &a,
            p,
            true,
        );
        self
    }

    pub fn request(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv(resource::SERVICE_NAME, resource::AGENT_SERVICE),
                        kv(resource::K8S_NODE_NAME, &self.node),
                        kv(resource::K8S_CLUSTER_NAME, "prod"),
                        kv(resource::CLOUD_PROVIDER, "aws"),
                        kv(resource::HOST_ID, "i-0123456789abcdef0"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "headroom-agent".into(),
                        ..Default::default()
                    }),
                    metrics: self.metrics.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}
