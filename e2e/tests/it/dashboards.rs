//! The Grafana dashboards (deploy/dashboards) and the prometheus-adapter rules on a real
//! Prometheus: Debian's Prometheus scrapes a real agent in a bed and the collector it exports
//! to, while (1) dnsperf sends 900 queries/s to 169.254.169.253 with every 10th dropped by
//! nftables, (2) both workers of a probed gunicorn pod are held, so its readiness probe
//! (timeoutSeconds 1) times out, and (3) a second pod of the same Deployment serves a paced,
//! bounded load. Then every template variable's `label_values` query and **every panel query
//! of every dashboard** is run through Prometheus's HTTP API as Grafana would (range query, the
//! variables set to their first value): each must succeed and return data. The one exception
//! is checked, not assumed: ENA allowance counters exist only on ENA interfaces, so that panel
//! may be empty only while the agent exports no `headroom_ena_*` series at all.
//! The adapter's seriesQuery must find the probed pod's busy series with the labels it maps to
//! pods, and its metricsQuery (templated as the adapter does) must give that pod's busy
//! workers = the two the test holds; the KEDA form's query must sum both pods of the Deployment.
//! Needs root; skips with a reason outside CI, fails in CI.

use crate::procs::{self, Agent, AGENT_METRICS, API, OTLP_HTTP};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::cgroup::KubeCgroup;
use headroom_testbed::load::{Conn, Load};
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{children, Server};
use headroom_testbed::proc::{run, Guard};
use headroom_testbed::scrape;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NODE: &str = "node-1";
const PROMETHEUS: &str = "127.0.0.1:19090";
/// The probed pod (bed.pod's address) and the loaded one (its own namespace).
const PROBED_IP: &str = "10.244.0.5";
const PROBED: (&str, &str) = ("web-6c9d8f7b5-a", "5a1d2e3f-0001-4a5b-8c6d-9e0f1a2b3c01");
const LOADED: (&str, &str) = ("web-6c9d8f7b5-b", "5a1d2e3f-0002-4a5b-8c6d-9e0f1a2b3c02");
/// A bare pod whose one process serves alone (Python's threading WSGI server).
const LONE: (&str, &str) = ("lone-py", "5a1d2e3f-0003-4a5b-8c6d-9e0f1a2b3c03");
/// dnsperf's rate (queries/s) and seconds.
const DNS_RATE: u32 = 900;

/// The probed pod's app: `/slow` holds its worker 40 s, anything else answers at once.
const WSGI: &str = r#"
import time
def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(40)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
"#;

fn root() -> PathBuf {
    headroom_testbed::bins::workspace_root()
}

/// Python from the project's virtualenv (first on PATH under scripts/test.sh) reads YAML and
/// the dashboards' JSON is plain JSON: both as serde values.
fn yaml(path: &str) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join(path))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 yaml {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn api(ns: &Netns, path: &str, params: &[(&str, String)]) -> Value {
    let mut cmd = ns.command("curl");
    cmd.args(["-s", "--max-time", "10", "-G"])
        .arg(format!("http://{PROMETHEUS}{path}"));
    for (k, v) in params {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{path} {params:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A panel query as Grafana sends it: a range query over the last `secs` seconds.
fn range(ns: &Netns, expr: &str, secs: f64) -> Result<Vec<Value>, String> {
    let end = now();
    let v = api(
        ns,
        "/api/v1/query_range",
        &[
            ("query", expr.to_string()),
            ("start", format!("{:.3}", end - secs)),
            ("end", format!("{end:.3}")),
            ("step", "2".to_string()),
        ],
    );
    if v["status"] != "success" {
        return Err(format!("{v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// `label_values(metric{sel}, label)` as Grafana's Prometheus data source runs it.
fn label_values(ns: &Netns, query: &str) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {query}"));
    let (series, label) = inner.rsplit_once(',').unwrap();
    let v = api(
        ns,
        &format!("/api/v1/label/{}/values", label.trim()),
        &[("match[]", series.trim().to_string())],
    );
    assert_eq!(v["status"], "success", "{query}: {v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Puts each `$name` / `${name}` of `vars` into `expr` (longest names first) and Grafana's
/// `$__rate_interval` (4 × the 1 s scrape interval is Grafana's floor; 10 s spans five of
/// the agent's 2 s windows).
fn interpolate(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.replace("$__rate_interval", "10s");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &vars[n])
            .replace(&format!("${n}"), &vars[n]);
    }
    assert!(!out.contains('$'), "uninterpolated variable in {out}");
    out
}

/// The probed pod and the loaded pod of Deployment shop/web.
fn pod(name: &str, uid: &str, ip: &str, probe: bool) -> Value {
    let mut container = json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}]});
    if probe {
        container["readinessProbe"] = json!({"httpGet": {"path": "/healthz", "port": "http"},
            "timeoutSeconds": 1, "periodSeconds": 1, "failureThreshold": 3});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": name, "uid": uid,
            "labels": {"app": "web", "pod-template-hash": "6c9d8f7b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-6c9d8f7b5", "uid": "rs-web", "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [container]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

#[test]
fn dashboards_on_a_live_bed() {
    headroom_testbed::require_or_return!(
        "dashboards_on_a_live_bed",
        &headroom_testbed::root_and(&[
            "ip",
            "unbound",
            "dnsperf",
            "nft",
            "gunicorn",
            "curl",
            "prometheus",
            "python3",
            "chromium",
        ])
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    bed.node.sysctl("net.ipv4.ip_forward=1").unwrap();

    // The probed pod: gunicorn, 2 sync workers on its pod IP, in its kubelet-shaped cgroup.
    let probed_ns = bed.pod(PROBED_IP).unwrap();
    let probed_cg = KubeCgroup::new(PROBED.1, &"e".repeat(64)).unwrap();
    std::fs::write(bed.path("wsgiapp.py"), WSGI).unwrap();
    let mut cmd = probed_ns.command("gunicorn");
    cmd.args([
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--timeout",
        "60",
    ])
    .args(["--bind", &format!("{PROBED_IP}:8080"), "--chdir"])
    .arg(bed.dir.path())
    .arg("wsgiapp:app")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let probed_server = Guard::spawn("gunicorn (probed pod)", &mut cmd).unwrap();
    scrape::wait_ok(
        &bed.node,
        &format!("http://{PROBED_IP}:8080/"),
        "gunicorn",
        Duration::from_secs(30),
    );
    let master = probed_server.pid() as i32;
    for pid in std::iter::once(master).chain(children(master)) {
        probed_cg.add(pid as u32).unwrap();
    }
    // The loaded pod: gunicorn on 127.0.0.1:8000 in its own namespace.
    let loaded_ns = Netns::new("pod").unwrap();
    let loaded_cg = KubeCgroup::new(LOADED.1, &"f".repeat(64)).unwrap();
    let loaded_server = Server::gunicorn(Some(&loaded_ns), 2, 64).unwrap();
    let master = loaded_server.master_pid();
    for pid in std::iter::once(master).chain(children(master)) {
        loaded_cg.add(pid as u32).unwrap();
    }

    // The lone pod: one process serving alone, no thread count stated (a Go, Java or asyncio
    // server is the same to the agent). Holding a request it is no prefork pool of one at
    // 100 %: counted by connections and not ranked.
    let lone_ns = Netns::new("lonepy").unwrap();
    let lone_cg = KubeCgroup::new(LONE.1, &"d".repeat(64)).unwrap();
    let lone = Server::python_threading(&lone_ns, |pid| lone_cg.add(pid)).unwrap();

    let kube = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).unwrap();
    kube.apply(pod(PROBED.0, PROBED.1, PROBED_IP, true));
    kube.apply(pod(LOADED.0, LOADED.1, "10.244.0.6", false));
    kube.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": LONE.0, "uid": LONE.1},
        "spec": {"nodeName": NODE, "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}]}
    }));
    kube.apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"namespace": "shop", "name": "web", "uid": "d-web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
        "status": {"replicas": 2, "readyReplicas": 2}}));
    let _collector = procs::start_judging_collector(&bed, &kubeconfig);
    let _agent = Agent::exporting(
        &bed,
        NODE,
        "2s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    scrape::wait_ok(
        &bed.node,
        &format!("http://{AGENT_METRICS}/readyz"),
        "agent",
        Duration::from_secs(30),
    );

    // Prometheus as the prometheus overlay configures it: honor_labels on both, a `node` label
    // on the agent (the PodMonitor's relabeling); every second.
    let config = bed.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             \x20 - job_name: headroom-agent\n    honor_labels: true\n    static_configs:\n\
             \x20     - targets: ['{AGENT_METRICS}']\n        labels: {{node: {NODE}}}\n\
             \x20 - job_name: headroom-collector\n    honor_labels: true\n    static_configs:\n\
             \x20     - targets: ['{API}']\n"
        ),
    )
    .unwrap();
    let _prometheus = headroom_testbed::prometheus::start(
        &bed.node,
        &config,
        &bed.path("prometheus-data"),
        PROMETHEUS,
    );
    std::thread::sleep(Duration::from_secs(3));

    // The load, all bounded: DNS for 45 s, both probed workers held 40 s, 10 requests/s on
    // the loaded pod for at most 60 s.
    let nft = |args: &str| {
        run(bed.vpc.command("nft").args(args.split(' '))).unwrap();
    };
    nft("add table inet hr");
    nft("add chain inet hr in { type filter hook input priority 0 ; }");
    nft("add rule inet hr in udp dport 53 numgen inc mod 10 == 0 drop");
    let mut dnsperf = bed
        .dnsperf(bed::LINKLOCAL_RESOLVER, DNS_RATE, 45, None)
        .unwrap();
    let lone_held = lone.hold("k", 1, 1).unwrap();
    let dns = std::thread::spawn(move || bed::run_dnsperf(&mut dnsperf));
    let _hold: Vec<Guard> = (0..2)
        .map(|_| {
            let mut c = bed.node.command("curl");
            c.args(["-s", "-o", "/dev/null", "--max-time", "45"])
                .arg(format!("http://{PROBED_IP}:8080/slow"))
                .stdout(Stdio::null());
            Guard::spawn("curl /slow", &mut c).unwrap()
        })
        .collect();
    let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    let load = Load::start(
        Some(&loaded_ns.name),
        addr,
        "/work?ms=20",
        10.0,
        Conn::PerRequest,
        600,
        Duration::from_secs(60),
    )
    .unwrap();

    // Everything measured at least once under load: the collector's workload with a request
    // rate and a firing finding, the probe's timeouts on the agent.
    headroom_testbed::wait_for(
        "workload figures, a firing finding and probe timeouts in Prometheus",
        Duration::from_secs(40),
        || {
            let ok = |q: &str| range(&bed.node, q, 5.0).is_ok_and(|r| !r.is_empty());
            (ok("headroom_fleet_workload_requests_per_second")
                && ok("headroom_collector_findings{state=\"firing\"}")
                && ok("headroom_probe_predicted_removals_total > 0")
                && ok("headroom_fleet_probe_headroom"))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(6));

    // The ENA exception holds only while the agent has no ENA series at all (a veth has none).
    let (_, agent_text) = scrape::get(&bed.node, &format!("http://{AGENT_METRICS}/metrics"));
    let has_ena = agent_text.lines().any(|l| l.starts_with("headroom_ena_"));
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in [
        "linklocal.json",
        "probes.json",
        "workers.json",
        "findings.json",
    ] {
        let d: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("deploy/dashboards").join(file)).unwrap(),
        )
        .unwrap();
        // Variables in their order (later ones may use earlier ones), each set to its first
        // value, as Grafana does on a dashboard's first load.
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap().to_string();
            let value = match v["type"].as_str().unwrap() {
                "datasource" => "prometheus".to_string(),
                "custom" => v["current"]["value"].as_str().unwrap().to_string(),
                "query" => {
                    let q = interpolate(v["query"].as_str().unwrap(), &vars);
                    let values = label_values(&bed.node, &q);
                    match values.first() {
                        Some(first) => first.clone(),
                        None => {
                            failures.push(format!("{file} variable {name}: {q} has no values"));
                            ".*".to_string()
                        }
                    }
                }
                t => panic!("{file}: variable type {t} not handled here"),
            };
            vars.insert(name, value);
        }
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap_or("");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = interpolate(t["expr"].as_str().unwrap(), &vars);
                ran += 1;
                match range(&bed.node, &expr, 60.0) {
                    Err(e) => failures.push(format!("{file} «{title}»: {expr}: {e}")),
                    Ok(r) if r.is_empty() => {
                        let ena = expr.contains("headroom_ena_");
                        if !ena || has_ena {
                            failures.push(format!("{file} «{title}»: {expr}: no data"));
                        } else {
                            eprintln!("{file} «{title}»: empty, as it must be without ENA");
                        }
                    }
                    Ok(r) => eprintln!("{file} «{title}»: {} series", r.len()),
                }
            }
        }
        eprintln!("{file}: variables {vars:?}");
    }
    assert!(ran >= 30, "only {ran} panel queries found");

    // prometheus-adapter: discovery finds the probed pod's series with namespace and pod; the
    // metrics query, templated as the adapter templates it for pods/headroom_workers_busy on
    // both pods, gives the probed pod's two held workers.
    let adapter = yaml("deploy/overlays/prometheus/prometheus-adapter.yaml");
    let config: Value = {
        let text = adapter["data"]["config.yaml"].as_str().unwrap();
        let file = bed.path("adapter-config.yaml");
        std::fs::write(&file, text).unwrap();
        yaml(file.to_str().unwrap())
    };
    let rule = &config["rules"][0];
    assert_eq!(rule["name"]["as"], "headroom_workers_busy", "{rule}");
    let series = api(
        &bed.node,
        "/api/v1/series",
        &[
            ("match[]", rule["seriesQuery"].as_str().unwrap().to_string()),
            ("start", format!("{:.3}", now() - 30.0)),
        ],
    );
    let series = series["data"].as_array().unwrap();
    assert!(
        series
            .iter()
            .any(|s| s["namespace"] == "shop" && s["pod"] == PROBED.0),
        "seriesQuery found no busy series of {}: {series:?}",
        PROBED.0
    );
    let metrics_query = rule["metricsQuery"]
        .as_str()
        .unwrap()
        .replace("<<.Series>>", "headroom_workers_busy")
        .replace(
            "<<.LabelMatchers>>",
            &format!("namespace=\"shop\",pod=~\"{}|{}\"", PROBED.0, LOADED.0),
        )
        .replace("<<.GroupBy>>", "pod");
    let v = api(
        &bed.node,
        "/api/v1/query",
        &[("query", metrics_query.clone())],
    );
    let busy = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"]["pod"] == PROBED.0)
        .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .unwrap_or_else(|| panic!("{metrics_query}: no value for {}: {v}", PROBED.0));

    // KEDA's form of the fix (collector rules/hpa.rs `keda_yaml`, pinned by its unit test) for
    // Deployment shop/web: its query picks both pods by name and sums their busy workers.
    let keda = "sum(max by (pod) (headroom_workers_busy{namespace=\"shop\",pod=~\"web-[a-z0-9]+-[a-z0-9]+\"}))";
    let per_pod = format!(
        "max by (pod) (headroom_workers_busy{{namespace=\"shop\",pod=~\"{}|{}\"}})",
        PROBED.0, LOADED.0
    );
    let at = format!("{:.3}", now());
    let value = |q: &str| -> Vec<f64> {
        let v = api(
            &bed.node,
            "/api/v1/query",
            &[("query", q.to_string()), ("time", at.clone())],
        );
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let (keda_sum, pods) = (value(keda), value(&per_pod));
    assert_eq!(pods.len(), 2, "{per_pod}: {pods:?}");
    assert_eq!(keda_sum.len(), 1, "{keda}: {keda_sum:?}");
    assert!(
        (keda_sum[0] - pods.iter().sum::<f64>()).abs() < 1e-9,
        "KEDA query {keda} = {keda_sum:?}, the two pods' busy workers {pods:?}"
    );

    // The status page in this bed (no IMDS): the missing ENI ids said once, no column of
    // dashes in any table; the Deployment's workload ranked, and neither the agent's nor the
    // collector's own listener (single processes holding keep-alive scrapes) nor the lone pod
    // holding its request taken for a saturated pool.
    let (code, page) = scrape::get(&bed.node, &format!("http://{API}/"));
    assert_eq!(code, 200);
    assert_eq!(
        page.matches("No interface has an ENI id").count(),
        1,
        "{page}"
    );
    let interfaces = page
        .split_once("<h2>Interfaces by peak utilization</h2>")
        .and_then(|(_, rest)| rest.split_once("</table>"))
        .map(|(table, _)| table)
        .unwrap_or_else(|| panic!("no interfaces table: {page}"));
    assert!(!interfaces.contains("<th>ENI</th>"), "{interfaces}");
    // The same page in Chromium (Playwright): every section with rows, sparklines drawn, links
    // and anchors working, no console error, no sideways scrolling at 1280 px or on a phone,
    // and its 10 s refresh keeping the scroll. Screenshots go to the bed's directory, or to
    // HEADROOM_PAGE_SHOTS (docs/status-page makes the README's).
    let shots = std::env::var("HEADROOM_PAGE_SHOTS")
        .unwrap_or_else(|_| bed.path("status-page").display().to_string());
    let out = bed
        .node
        .command("python3")
        .arg(root().join("e2e/tests/page_in_browser.py"))
        .arg(format!("http://{API}/"))
        .arg(&shots)
        .args(["--sections", "Open findings,Interfaces by peak utilization,Most saturated workloads,Probes closest to their timeout,Top DNS names,Top DNS sources,Nodes", "--refresh"])
        .args(["--no-column", "ENI", "--once", "No interface has an ENI id"])
        .args(["--expect", "Most saturated workloads=shop/web"])
        .args(["--reject", &format!("Most saturated workloads={}", LONE.0)])
        .args(["--reject", "Most saturated workloads=headroom-agent"])
        .args(["--reject", "Most saturated workloads=headroom-collec"])
        .output()
        .unwrap();
    eprintln!(
        "page in Chromium: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the status page in Chromium: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (_, fleet) = scrape::get(
        &bed.node,
        &format!("http://{API}/api/v1/fleet?history=false"),
    );
    let fleet: Value = serde_json::from_str(&fleet).unwrap();
    let workloads: Vec<String> = fleet["clusters"][0]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{} {}/{}",
                w["kind"].as_str().unwrap_or(""),
                w["namespace"].as_str().unwrap_or(""),
                w["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    eprintln!("workloads: {workloads:?}");
    assert!(
        workloads.iter().any(|w| w == "Deployment shop/web"),
        "{workloads:?}"
    );
    assert!(
        !workloads.iter().any(|w| w.contains("headroom-agent")
            || w.contains("headroom-collec")
            || w.contains(LONE.0)),
        "{workloads:?}"
    );
    // The lone pod's listener: an event loop whose load is the one connection the test holds
    // (ground truth: the one request its server started).
    let (_, full) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    let full: Value = serde_json::from_str(&full).unwrap();
    let lone_l = full["clusters"][0]["nodes"][0]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["pod"] == LONE.0 && l["port"] == 8080)
        .cloned()
        .unwrap_or_else(|| panic!("no listener of {}: {full}", LONE.0));
    assert_eq!(lone.started("k").len(), 1, "ground truth: one request held");
    assert_eq!(
        (
            &lone_l["model"],
            &lone_l["connections_max"],
            &lone_l["busy"]
        ),
        (&json!("event_loop"), &json!(1), &json!(0.0)),
        "{lone_l}"
    );
    lone_held.release().unwrap();

    let sent = load.stop().unwrap();
    let perf = dns.join().unwrap().unwrap();
    eprintln!("dnsperf {perf:?}; load sent {}", sent.answered.len());
    after_the_burst(&bed, &shots);
    assert!(
        failures.is_empty(),
        "{} of {ran} panel queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Both workers held for the whole window (the holds outlast it): exactly 2 busy, ±0.05 for
    // a sample taken as a hold's connection was being accepted.
    assert!(
        (busy - 2.0).abs() <= 0.05,
        "{metrics_query}: {} has {busy} busy workers, the test holds 2",
        PROBED.0
    );
}

/// Three report windows (2 s) after dnsperf ended: the latest window has no DNS source, yet
/// the fleet and the page still show the burst's top names and its source at the window it
/// peaked in. Ground truth: dnsperf sends at an exact rate from one source, so its busiest
/// window holds rate × window seconds queries (±10 %: the agent's window boundaries and this
/// machine's scheduling).
fn after_the_burst(bed: &Bed, shots: &str) {
    std::thread::sleep(Duration::from_secs(7));
    let (_, fleet) = scrape::get(
        &bed.node,
        &format!("http://{API}/api/v1/fleet?history=false"),
    );
    let fleet: Value = serde_json::from_str(&fleet).unwrap();
    let iface = fleet["clusters"][0]["nodes"][0]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["dns"]["top_sources_hour"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .cloned()
        .unwrap_or_else(|| panic!("no interface with the hour's DNS sources: {fleet}"));
    let dns = &iface["dns"];
    let top = &dns["top_sources_hour"][0];
    let source = top["source"].as_str().unwrap();
    assert!(
        !dns["top_sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == source),
        "the burst's source still in the latest window: {dns}"
    );
    let seconds = iface["latest"]["seconds"].as_f64().unwrap();
    let want = f64::from(DNS_RATE) * seconds;
    let peak = top["peak_queries"].as_f64().unwrap();
    eprintln!("after the burst: {source} peaked at {peak} queries in one {seconds} s window (dnsperf: {want}); latest top sources {}", dns["top_sources"]);
    assert!(
        (peak - want).abs() <= 0.1 * want,
        "{source} peaked at {peak} queries in one window, dnsperf sent {want} per {seconds} s window: {top}"
    );
    assert!(
        top["peak_window_end"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{top}"
    );
    let name = dns["top_qnames_hour"][0]["qname"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.ends_with(bed::ZONE), "{name}");
    let out = bed
        .node
        .command("python3")
        .arg(root().join("e2e/tests/page_in_browser.py"))
        .arg(format!("http://{API}/"))
        .arg(format!("{shots}-after"))
        .args(["--only-1280", "--sections", "Top DNS names,Top DNS sources"])
        .args(["--expect", &format!("Top DNS names={name}")])
        .args(["--expect", &format!("Top DNS sources={source}")])
        .args(["--no-column", "ENI"])
        .output()
        .unwrap();
    eprintln!(
        "page after the burst: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the status page after the burst: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
