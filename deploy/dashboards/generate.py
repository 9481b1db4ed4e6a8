#!/usr/bin/env python3
"""Grafana dashboards for headroom, generated with grafana-foundation-sdk (Grafana's own
maintained builder library: typed panels and queries, so a renamed option fails here and not in
a user's Grafana).

    .venv/bin/python deploy/dashboards/generate.py          # rewrite deploy/dashboards/*.json
    .venv/bin/python deploy/dashboards/generate.py --check  # exit 1 if a committed file is stale

Fleet-wide panels read the collector's `headroom_fleet_*` metrics (one scrape target, `cluster`
and `eni` labels); per-service, DNS-talker and probe-timing panels read the agents' own series.
Every panel that could draw one line per ENI or pod is a `topk($topk, …)`: usable at 1 000 nodes.
The e2e test `dashboards_on_a_live_bed` runs every query here against a real Prometheus.
"""

import json
import pathlib
import sys

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphTresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableOption,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = pathlib.Path(__file__).resolve().parent
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
LIMIT = 1024  # packets/s per ENI to the link-local services
WARN, CRIT = 0.8, 0.95  # the collector's DNSThrottleRisk bands


def q(expr, legend="__auto", ref="A", instant=False, fmt=None):
    d = Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    if instant:
        d = d.instant()
    if fmt is not None:
        d = d.format(fmt)
    return d


def bands(warn, crit):
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps(
            [
                Threshold(value=None, color="green"),
                Threshold(value=warn, color="orange"),
                Threshold(value=crit, color="red"),
            ]
        )
    )


def lines():
    return GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.LINE)


def ts(title, desc, *targets, unit="short", w=12, h=8):
    p = timeseries.Panel().title(title).description(desc).unit(unit).span(w).height(h)
    p = p.datasource(DS).min(0)
    for t in targets:
        p = p.with_target(t)
    return p


def tbl(title, desc, *targets, w=12, h=8):
    p = table.Panel().title(title).description(desc).span(w).height(h).datasource(DS)
    for t in targets:
        p = p.with_target(t)
    return p


def datasource():
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def labels(name, metric, label, match="", multi=True, desc=""):
    sel = "{" + match + "}" if match else ""
    v = (
        QueryVariable(name)
        .label(name)
        .description(desc)
        .datasource(DS)
        .query(f"label_values({metric}{sel}, {label})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def topk():
    return (
        CustomVariable("topk")
        .label("top")
        .description("How many lines a ranked panel draws")
        .values("10,20,50")
        .current(VariableOption(text="10", value="10", selected=True))
    )


def board(uid, title, desc):
    return (
        Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["headroom"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .editable()
    )


ENI = 'cluster=~"$cluster", node=~"$node", interface=~"$interface"'
NODE_IF = 'node=~"$node", interface=~"$interface"'


def linklocal():
    return (
        board(
            "headroom-linklocal",
            "headroom / Link-local headroom",
            "Packets each ENI sends to the EC2 link-local services (Route 53 Resolver, IMDS, Time "
            "Sync) in its busiest second, against the 1024 packets/s EC2 allows before it drops "
            "them silently.",
        )
        .with_variable(datasource())
        .with_variable(labels("cluster", "headroom_fleet_linklocal_pps_peak", "cluster"))
        .with_variable(
            labels("node", "headroom_fleet_linklocal_pps_peak", "node", 'cluster=~"$cluster"')
        )
        .with_variable(
            labels(
                "interface",
                "headroom_fleet_linklocal_pps_peak",
                "interface",
                'cluster=~"$cluster", node=~"$node"',
            )
        )
        .with_variable(topk())
        .with_row(Row("Fleet"))
        .with_panel(
            stat.Panel()
            .title("ENIs at ≥ 0.8 of the limit in the last hour")
            .description("Interfaces whose busiest second in the last hour reached 819 packets/s.")
            .datasource(DS)
            .span(6)
            .height(5)
            .no_value("0")
            .thresholds(bands(1, 1))
            .with_target(
                q(
                    f"count(headroom_fleet_linklocal_pps_peak_last_hour{{{ENI}}} >= {WARN * LIMIT})",
                    "ENIs",
                )
            )
        )
        .with_panel(
            stat.Panel()
            .title("Highest peak now")
            .description("The busiest second of the last report window, over all selected ENIs.")
            .datasource(DS)
            .unit("percentunit")
            .span(6)
            .height(5)
            .thresholds(bands(WARN, CRIT))
            .with_target(q(f"max(headroom_fleet_linklocal_utilization_ratio{{{ENI}}})", "peak"))
        )
        .with_panel(
            stat.Panel()
            .title("ENIs reporting")
            .description("Interfaces the collector holds a current window for.")
            .datasource(DS)
            .span(6)
            .height(5)
            .with_target(q(f"count(headroom_fleet_linklocal_pps_peak{{{ENI}}})", "ENIs"))
        )
        .with_panel(
            stat.Panel()
            .title("Nodes reporting")
            .description("Nodes with at least one selected ENI in the collector's fleet model.")
            .datasource(DS)
            .span(6)
            .height(5)
            .with_target(
                q(f"count(count by (cluster, node) (headroom_fleet_linklocal_pps_peak{{{ENI}}}))", "nodes")
            )
        )
        .with_panel(
            ts(
                "Busiest ENIs: packets/s in their busiest second vs 1024",
                "The top ENIs by their busiest second per report window. Lines: 0.8 and 0.95 "
                "of the limit (the DNSThrottleRisk bands). Above 1024 EC2 drops the excess.",
                q(
                    f"topk($topk, headroom_fleet_linklocal_pps_peak{{{ENI}}})",
                    "{{node}} {{interface}} {{eni}}",
                ),
                w=24,
            )
            .max(LIMIT)
            .thresholds(bands(WARN * LIMIT, CRIT * LIMIT))
            .thresholds_style(lines())
        )
        .with_panel(
            ts(
                "By service: busiest second",
                "Which link-local service the packets went to (resolver, IMDS, Time Sync), "
                "from the agents' own series.",
                q(
                    f"topk($topk, headroom_linklocal_service_pps_peak{{{NODE_IF}}})",
                    "{{node}} {{interface}} {{service}}",
                ),
                unit="pps",
            )
        )
        .with_panel(
            ts(
                "ENA allowance exceeded (packets EC2 dropped or queued)",
                "Rises of the ENA driver's *_allowance_exceeded counters: EC2's own count of "
                "packets over an allowance. linklocal is the 1024/s limit. Only on ENA interfaces.",
                q(
                    "topk($topk, sum by (node, interface, allowance) ("
                    f"increase(headroom_ena_allowance_exceeded_total{{{NODE_IF}}}[$__rate_interval])) > 0)",
                    "{{node}} {{interface}} {{allowance}}",
                ),
            )
        )
        .with_row(Row("DNS"))
        .with_panel(
            ts(
                "DNS queries with no answer (per second)",
                "Queries to the link-local resolvers with no reply within 5 s: what a throttled "
                "packet looks like from the node.",
                q(
                    "topk($topk, sum by (node, interface) ("
                    f"rate(headroom_dns_unanswered_total{{{NODE_IF}}}[$__rate_interval])))",
                    "{{node}} {{interface}}",
                ),
                unit="reqps",
            )
        )
        .with_panel(
            ts(
                "Search-list expansion share",
                "Share of queries spent on search-list suffixes answered NXDOMAIN (what ndots:5 "
                "costs). ndots:2 or a trailing dot saves them.",
                q(
                    f"topk($topk, headroom_dns_search_expansion_share_ratio{{{NODE_IF}}})",
                    "{{node}} {{interface}}",
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            tbl(
                "Top DNS talkers (last window)",
                "The busiest sources of the last report window, with the pod and workload behind "
                "them.",
                q(
                    "topk($topk, max by (node, interface, source, namespace, pod, workload) ("
                    f"headroom_dns_top_source_queries{{{NODE_IF}}}))",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
            )
        )
        .with_panel(
            tbl(
                "Most asked names (last window)",
                "The most asked names of the last report window, per node.",
                q(
                    "topk($topk, max by (node, qname) ("
                    f"headroom_dns_top_qname_queries{{{NODE_IF}}}))",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
            )
        )
        .with_panel(
            ts(
                "Capture drops (the count is low by this much)",
                "Packets the kernel matched but the agent had no room for. Non-zero means the "
                "figures above are a lower bound.",
                q(
                    "topk($topk, sum by (node, interface) ("
                    f"rate(headroom_capture_drops_total{{{NODE_IF}}}[$__rate_interval])))",
                    "{{node}} {{interface}}",
                ),
                unit="pps",
                w=24,
                h=6,
            )
        )
    )


PROBE = 'cluster=~"$cluster", namespace=~"$namespace"'


def probes():
    return (
        board(
            "headroom-probes",
            "headroom / Probes",
            "Shadow probes: each pod's readiness and liveness probe repeated by the agent with "
            "the probe's own timeout, so a probe drifting toward its timeoutSeconds shows before "
            "the kubelet takes the pod out of its Service.",
        )
        .with_variable(datasource())
        .with_variable(labels("cluster", "headroom_fleet_probe_timeout_seconds", "cluster"))
        .with_variable(
            labels(
                "namespace",
                "headroom_fleet_probe_timeout_seconds",
                "namespace",
                'cluster=~"$cluster"',
            )
        )
        .with_variable(topk())
        .with_panel(
            tbl(
                "Closest to their timeout",
                "Headroom = timeoutSeconds / p99 latency over the collector's history (below 1: "
                "the p99 attempt timed out). The 500 probes with least headroom have series.",
                q(
                    f"bottomk($topk, headroom_fleet_probe_headroom{{{PROBE}}})",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
                w=24,
            )
        )
        .with_panel(
            ts(
                "p99 latency of the probes closest to their timeout",
                "Each line is a probe's p99; compare with its timeoutSeconds (table above).",
                q(
                    f"topk($topk, headroom_fleet_probe_latency_p99_seconds{{{PROBE}}})",
                    "{{namespace}}/{{pod}} {{container}} {{probe}}",
                ),
                unit="s",
            )
        )
        .with_panel(
            ts(
                "Timeouts per minute",
                "Shadow attempts that ran into the probe's own timeout.",
                q(
                    "topk($topk, 60 * sum by (node, namespace, pod, container, probe) (rate("
                    'headroom_probe_attempts_total{result="timeout", namespace=~"$namespace"}'
                    "[$__rate_interval])))",
                    "{{namespace}}/{{pod}} {{probe}}",
                ),
            )
        )
        .with_panel(
            ts(
                "Predicted removals",
                "Runs of failureThreshold consecutive failures: times the kubelet would have "
                "taken the pod out of its Service (readiness) or restarted it (liveness).",
                q(
                    "topk($topk, sum by (node, namespace, pod, probe) (increase("
                    'headroom_probe_predicted_removals_total{namespace=~"$namespace"}'
                    "[$__rate_interval])) > 0)",
                    "{{namespace}}/{{pod}} {{probe}}",
                ),
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Probe latency (timeouts at their full timeout)")
            .description("All shadow attempts by duration, from the agents' histograms.")
            .datasource(DS)
            .span(12)
            .height(8)
            .with_target(
                q(
                    'sum by (le) (increase(headroom_probe_duration_seconds_bucket{namespace=~"$namespace"}'
                    "[$__rate_interval]))",
                    "{{le}}",
                    fmt=PromQueryFormat.HEATMAP,
                )
            )
        )
    )


WL = 'cluster=~"$cluster", namespace=~"$namespace", workload=~"$workload"'


def workers():
    return (
        board(
            "headroom-workers",
            "headroom / Workers and HPA",
            "Busy workers against capacity (workers × threads) per workload, the accept queue, "
            "and the replicas an HPA runs against the replicas the busy workers need.",
        )
        .with_variable(datasource())
        .with_variable(labels("cluster", "headroom_fleet_workload_capacity", "cluster"))
        .with_variable(
            labels(
                "namespace",
                "headroom_fleet_workload_capacity",
                "namespace",
                'cluster=~"$cluster"',
            )
        )
        .with_variable(
            labels(
                "workload",
                "headroom_fleet_workload_capacity",
                "workload",
                'cluster=~"$cluster", namespace=~"$namespace"',
            )
        )
        .with_variable(topk())
        .with_panel(
            ts(
                "Busy / capacity (p95 over the history)",
                "The workload's summed busy workers at p95 over its capacity. An HPA scaling on "
                "queued requests keeps this low: most workers idle.",
                q(
                    f"topk($topk, headroom_fleet_workload_busy_p95{{{WL}}} / "
                    f"headroom_fleet_workload_capacity{{{WL}}})",
                    "{{namespace}}/{{workload}}",
                ),
                unit="percentunit",
            )
            .max(1)
            .thresholds(bands(0.7, 0.9))
            .thresholds_style(lines())
        )
        .with_panel(
            ts(
                "Replicas running vs replicas the busy workers need",
                "needed = ceil(p95 busy / (capacity per pod × 0.7)), the HPAOverScaling rule's "
                "own figure with its default target utilization.",
                q(f"topk($topk, headroom_fleet_workload_pods{{{WL}}})", "{{workload}} running"),
                q(
                    f"topk($topk, ceil(headroom_fleet_workload_busy_p95{{{WL}}} / "
                    f"(0.7 * headroom_fleet_workload_capacity{{{WL}}} / headroom_fleet_workload_pods{{{WL}}})))",
                    "{{workload}} needed",
                    ref="B",
                ),
            )
        )
        .with_panel(
            ts(
                "Busy workers and capacity",
                "Summed over the workload's pods: busy now and what they can serve at once.",
                q(f"topk($topk, headroom_fleet_workload_busy{{{WL}}})", "{{workload}} busy"),
                q(
                    f"topk($topk, headroom_fleet_workload_capacity{{{WL}}})",
                    "{{workload}} capacity",
                    ref="B",
                ),
            )
        )
        .with_panel(
            ts(
                "Deepest accept queue",
                "Connections waiting for a free worker: requests queue here, and probes behind them.",
                q(
                    f"topk($topk, headroom_fleet_workload_queue_max{{{WL}}})",
                    "{{namespace}}/{{workload}}",
                ),
            )
        )
        .with_panel(
            ts(
                "Requests per second",
                "Measured from accepted connections where each request opens one.",
                q(
                    f"topk($topk, headroom_fleet_workload_requests_per_second{{{WL}}})",
                    "{{namespace}}/{{workload}}",
                ),
                unit="reqps",
            )
        )
        .with_panel(
            bargauge.Panel()
            .title("Pods: busy workers over workers (last window)")
            .description("Per pod and listener, from the agents' own series.")
            .datasource(DS)
            .unit("percentunit")
            .min(0)
            .max(1)
            .span(12)
            .height(8)
            .thresholds(bands(0.7, 0.9))
            .with_target(
                q(
                    'topk($topk, headroom_workers_utilization_ratio{namespace=~"$namespace"})',
                    "{{namespace}}/{{pod}}:{{port}}",
                )
            )
        )
    )


def findings():
    return (
        board(
            "headroom-findings",
            "headroom / Findings",
            "What the collector found, by rule and severity, and how the collector itself is "
            "doing.",
        )
        .with_variable(datasource())
        .with_panel(
            stat.Panel()
            .title("Firing findings by severity")
            .datasource(DS)
            .span(12)
            .height(5)
            .with_target(
                q('sum by (severity) (headroom_collector_findings{state="firing"})', "{{severity}}")
            )
        )
        .with_panel(
            stat.Panel()
            .title("Nodes reporting")
            .datasource(DS)
            .span(12)
            .height(5)
            .with_target(q("sum(headroom_fleet_nodes)", "nodes"))
        )
        .with_panel(
            ts(
                "Findings by rule",
                "Findings the collector holds, by rule, severity and state.",
                q(
                    "sum by (rule, severity, state) (headroom_collector_findings)",
                    "{{rule}} {{severity}} {{state}}",
                ),
                w=24,
            )
        )
        .with_panel(
            ts(
                "Points accepted and rejected per second",
                "OTLP points the collector folded into its fleet model, and the ones it refused.",
                q("sum(rate(headroom_collector_points_accepted_total[$__rate_interval]))", "accepted"),
                q(
                    "sum(rate(headroom_collector_points_rejected_total[$__rate_interval]))",
                    "rejected",
                    ref="B",
                ),
            )
        )
        .with_panel(
            ts(
                "Rule evaluation time",
                "Wall time of the latest evaluation of every rule and the slowest since the "
                "collector started; CPU is what the evaluation's thread used of the latest: far "
                "below its wall time means it waited for a core (raise the CPU limit).",
                q("max(headroom_collector_evaluation_seconds)", "latest"),
                q("max(headroom_collector_evaluation_cpu_seconds)", "CPU of the latest", ref="B"),
                q("max(headroom_collector_evaluation_seconds_max)", "slowest", ref="C"),
                unit="s",
            )
        )
    )


BOARDS = {
    "linklocal.json": linklocal,
    "probes.json": probes,
    "workers.json": workers,
    "findings.json": findings,
}


def render(build):
    d = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    # The SDK writes `"options": null` for a panel whose options were left at the plugin's
    # defaults; Grafana fills an absent key with those defaults, a null one it keeps.
    for p in d["panels"]:
        if p.get("options") is None:
            p.pop("options", None)
    return json.dumps(d, sort_keys=True, indent=2) + "\n"


def round_trips(d):
    """The SDK's schema check: the file read into the SDK's dashboard model and written back is
    the same JSON (an unknown or mistyped key would be dropped or changed)."""
    back = json.loads(json.dumps(DashboardModel.from_json(d), cls=JSONEncoder))
    for p in back["panels"]:
        if p.get("options") is None:
            p.pop("options", None)
    return back == d


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print("usage: generate.py [--check]", file=sys.stderr)
        return 64
    stale = []
    for name, build in BOARDS.items():
        text = render(build)
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            elif not round_trips(json.loads(text)):
                print(f"deploy/dashboards/{name}: not a dashboard the SDK reads back", file=sys.stderr)
                return 1
        else:
            path.write_text(text)
    if stale:
        print(
            f"deploy/dashboards: {', '.join(stale)} out of date; run "
            ".venv/bin/python deploy/dashboards/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
