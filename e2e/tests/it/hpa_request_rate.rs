//! HPAOverScaling in the HPA's own terms (issue 26), end to end: three gunicorn pods (4 sync
//! workers each, kubelet-shaped cgroups, one Deployment) under a paced, bounded load loop of
//! 60 requests/s in total (20 per pod, a new connection per request, each holding a worker
//! 20 ms), sent from inside each pod's namespace. Ground truth: every connection the load
//! made, timed. The agent's request rate per pod must be within 5 % of the connections made
//! in its window, the collector's workload sum within 5 % of 60. The Deployment's HPA scales on
//! an External metric `envoy.upstream_rq_total` (averageValue 1, 12 replicas): HPAOverScaling
//! must give the new averageValue = measured requests/s ÷ needed replicas, computed here from
//! the collector's own figures (within 5 %), as a patch of the HPA that kubernetes-validate
//! accepts (--strict); with a CPU-utilization HPA instead, the finding says why no target can
//! be computed. Then a keep-alive front: the finding says the request-rate target cannot be
//! trusted.
//! Needs root; skips with a reason outside CI, fails in CI.

use crate::procs::{self, Agent, API, OTLP_HTTP};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::bed::Bed;
use headroom_testbed::cgroup::KubeCgroup;
use headroom_testbed::load::{Conn, Load, Sent};
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{children, Server};
use headroom_testbed::scrape;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

const NODE: &str = "node-1";
const UIDS: [&str; 3] = [
    "7c1d2e3f-0001-4a5b-8c6d-9e0f1a2b3c01",
    "7c1d2e3f-0002-4a5b-8c6d-9e0f1a2b3c02",
    "7c1d2e3f-0003-4a5b-8c6d-9e0f1a2b3c03",
];
/// The load loop's total rate, spread evenly over the pods.
const RATE: f64 = 60.0;

fn pod_name(i: usize) -> String {
    format!("web-6c9d8f7b5-p{i}")
}

/// Pod `i` of Deployment shop/web (through its ReplicaSet).
fn pod(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": pod_name(i), "uid": UIDS[i],
            "labels": {"app": "web", "pod-template-hash": "6c9d8f7b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-6c9d8f7b5", "uid": "rs-web", "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": format!("10.244.0.{}", 10 + i)}
    })
}

fn deployment(replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"namespace": "shop", "name": "web", "uid": "d-web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
        "status": {"replicas": replicas, "readyReplicas": replicas}})
}

/// The HPA of Deployment `name` at `replicas`, scaling on `metrics`.
fn hpa(name: &str, replicas: u32, metrics: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"namespace": "shop", "name": name, "uid": format!("h-{name}")},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2, "maxReplicas": 40, "metrics": metrics},
        "status": {"currentReplicas": replicas, "desiredReplicas": replicas}})
}

fn envoy_rq() -> Value {
    json!([{"type": "External", "external": {
        "metric": {"name": "envoy.upstream_rq_total",
            "selector": {"matchLabels": {"envoy_cluster_name": "web"}}},
        "target": {"type": "AverageValue", "averageValue": "1"}}}])
}

/// A Kubernetes quantity as a number (`2`, `60011m`).
fn quantity(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
        None => q.parse().unwrap(),
    }
}

/// The firing HPAOverScaling finding for `workload` that passes `ok`.
fn finding(bed: &Bed, workload: &str, ok: &dyn Fn(&Value) -> bool) -> Option<Value> {
    get_json(bed, "/api/v1/findings")["findings"]
        .as_array()?
        .iter()
        .find(|f| {
            f["rule"] == "HPAOverScaling"
                && f["state"] == "firing"
                && f["subject"]["workload"] == workload
                && ok(f)
        })
        .cloned()
}

fn get_json(bed: &Bed, path: &str) -> Value {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}{path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn workload(bed: &Bed) -> Option<Value> {
    named_workload(bed, "web")
}

fn named_workload(bed: &Bed, name: &str) -> Option<Value> {
    get_json(bed, "/api/v1/fleet")["clusters"][0]["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["namespace"] == "shop" && w["name"] == name)
        .cloned()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b
}

/// The report's window as wall-clock times.
fn window(report: &Value) -> (SystemTime, SystemTime) {
    let start = humantime::parse_rfc3339(report["window"]["start"].as_str().unwrap()).unwrap();
    let secs = report["window"]["seconds"].as_f64().unwrap();
    (start, start + Duration::from_secs_f64(secs))
}

/// The pods, their cgroups and servers, and the load on them; dropped in reverse order.
struct Pods {
    loads: Vec<Load>,
    servers: Vec<Server>,
    _cgroups: Vec<KubeCgroup>,
    nss: Vec<Netns>,
}

impl Pods {
    fn start() -> Pods {
        let nss: Vec<Netns> = (0..3).map(|_| Netns::new("pod").unwrap()).collect();
        let cgroups: Vec<KubeCgroup> = (0..3)
            .map(|i| KubeCgroup::new(UIDS[i], &format!("{}", 4 + i).repeat(64)).unwrap())
            .collect();
        let servers: Vec<Server> = nss
            .iter()
            .map(|ns| Server::gunicorn(Some(ns), 4, 64).unwrap())
            .collect();
        for (s, cg) in servers.iter().zip(&cgroups) {
            let master = s.master_pid();
            for pid in std::iter::once(master).chain(children(master)) {
                cg.add(pid as u32).unwrap();
            }
        }
        Pods {
            loads: Vec::new(),
            servers,
            _cgroups: cgroups,
            nss,
        }
    }

    /// [`RATE`] in total for at most `limit`.
    fn load(&mut self, limit: Duration) {
        let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let per_pod = RATE / self.nss.len() as f64;
        let max = (per_pod * limit.as_secs_f64()).ceil() as usize;
        self.loads = self
            .nss
            .iter()
            .map(|ns| {
                Load::start(
                    Some(&ns.name),
                    addr,
                    "/work?ms=20",
                    per_pod,
                    Conn::PerRequest,
                    max,
                    limit,
                )
                .unwrap()
            })
            .collect();
    }

    fn stop(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.loads)
            .into_iter()
            .map(|l| l.stop().unwrap())
            .collect()
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.loads.clear();
        self.servers.clear();
    }
}

/// The pod's listener on :8000 in `report`.
fn listener(report: &Value, i: usize) -> Option<Value> {
    report["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["pod"]["uid"] == UIDS[i] && l["port"] == 8000)
        .cloned()
}

#[test]
fn request_rate_per_pod_and_per_workload_match_the_load() {
    let needs = headroom_testbed::root_and(&["ip", "gunicorn"]);
    headroom_testbed::require_or_return!(
        "request_rate_per_pod_and_per_workload_match_the_load",
        &needs
    );
    let bed = Bed::new(1).unwrap();
    let mut pods = Pods::start();
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    for i in 0..3 {
        api.apply(pod(i));
    }
    api.apply(deployment(12));
    api.apply(hpa("web", 12, envoy_rq()));
    let _collector = procs::start_judging_collector(&bed, &kubeconfig);
    let agent = Agent::exporting(
        &bed,
        NODE,
        "5s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    headroom_testbed::wait_for(
        "the three pods' listeners, named, in a report",
        Duration::from_secs(30),
        || {
            agent.reports().last().and_then(|r| {
                (0..3)
                    .all(|i| {
                        listener(r, i).is_some_and(|l| l["pod"]["name"] == pod_name(i).as_str())
                    })
                    .then_some(())
            })
        },
    );

    // The load, bounded to 90 s; three whole report windows inside it.
    pods.load(Duration::from_secs(90));
    let since = agent.reports().len();
    let started = SystemTime::now();
    let inside = |r: &Value| window(r).0 > started;
    headroom_testbed::wait_for(
        "three report windows inside the load",
        Duration::from_secs(30),
        || {
            (agent.reports()[since..]
                .iter()
                .filter(|r| inside(r))
                .count()
                >= 3)
                .then_some(())
        },
    );
    // The collector's workload at its latest window end, while the load still runs.
    let w = headroom_testbed::wait_for(
        "the workload's request rate over a window inside the load",
        Duration::from_secs(15),
        || {
            let w = workload(&bed)?;
            (w["requests_per_second_latest"].as_f64()? > RATE / 2.0).then_some(w)
        },
    );
    let (code, metrics) = scrape::get(&bed.node, &format!("http://{API}/metrics"));
    assert_eq!(code, 200);
    let reports = agent.reports();

    // HPAOverScaling in the HPA's own metric, once the rate's p95 is the load's.
    let f = headroom_testbed::wait_for(
        "HPAOverScaling with the External metric's new target",
        Duration::from_secs(30),
        || {
            finding(&bed, "web", &|f| {
                f["evidence"]["requests_per_second_p95"]
                    .as_f64()
                    .is_some_and(|r| r >= RATE * 0.95)
                    && f["evidence"]["new_target_average_value"].is_string()
            })
        },
    );
    let w_now = workload(&bed).unwrap();
    let sent = pods.stop();
    eprintln!("finding: {f:#}");
    let e = &f["evidence"];
    let capacity = w_now["capacity_per_pod"].as_f64().unwrap();
    let needed = (w_now["busy_p95"].as_f64().unwrap() / (capacity * 0.7) - 1e-9)
        .ceil()
        .max(1.0);
    let expected = w_now["requests_per_second_p95"].as_f64().unwrap() / needed;
    let got = quantity(e["new_target_average_value"].as_str().unwrap());
    eprintln!("new averageValue {got} vs {expected} from the fleet's figures (needed {needed})");
    assert!(rel(got, expected) <= 0.05, "{got} vs {expected}");
    assert_eq!(e["needed_replicas"].as_f64(), Some(needed), "{e}");
    assert_eq!(e["replicas"], 12, "{e}");
    assert_eq!(e["hpa_metric"]["name"], "envoy.upstream_rq_total", "{e}");
    let fix = f["fix"].as_str().unwrap();
    let patch = fix
        .split_once("with hpa.yaml:\n")
        .and_then(|(_, p)| p.split_once("\nOr: "))
        .map(|(p, _)| p)
        .unwrap_or_else(|| panic!("no patch in {fix}"));
    for line in [
        "name: envoy.upstream_rq_total",
        "envoy_cluster_name: web",
        &format!(
            "averageValue: \"{}\"",
            e["new_target_average_value"].as_str().unwrap()
        ),
        "minReplicas: 2",
        "maxReplicas: 40",
    ] {
        assert!(patch.contains(line), "{line} not in {patch}");
    }
    validate(&bed, patch);
    // The same workload under a CPU-utilization HPA: why no target can be computed.
    api.apply(hpa(
        "web",
        12,
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 60}}}]),
    ));
    let f = headroom_testbed::wait_for(
        "HPAOverScaling in cpu utilization terms",
        Duration::from_secs(20),
        || {
            finding(&bed, "web", &|f| {
                f["evidence"]["hpa_metric_terms"] == "utilization"
            })
        },
    );
    let why = f["evidence"]["new_target_why_not"].as_str().unwrap();
    assert!(why.contains("cannot be computed"), "{why}");
    assert!(f["fix"].as_str().unwrap().contains(why), "{f}");
    let last = reports[since..].iter().rev().find(|r| inside(r)).unwrap();
    let (from, to) = window(last);
    let secs = last["window"]["seconds"].as_f64().unwrap();
    let mut agent_sum = 0.0;
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(s.failed, 0, "pod {i}: every request answered");
        let truth = s.connects_between(from, to) as f64 / secs;
        let l = listener(last, i).unwrap();
        let rate = l["accepts_per_second"].as_f64().unwrap();
        eprintln!(
            "pod {i}: load {truth:.2}/s, agent {rate}/s (busiest second {})",
            l["accepts_per_second_max"]
        );
        assert!(
            rel(rate, truth) <= 0.05,
            "pod {i}: agent {rate} vs load {truth}"
        );
        assert_eq!(l["requests_are_connections"], true, "{l}");
        agent_sum += rate;
    }
    let sum = w["requests_per_second_latest"].as_f64().unwrap();
    eprintln!("workload: {w:#}");
    assert!(rel(sum, RATE) <= 0.05, "workload sum {sum} vs {RATE}");
    assert!(
        rel(sum, agent_sum) <= 0.05,
        "workload sum {sum} vs the agent's pods {agent_sum}"
    );
    assert_eq!(w["requests_are_connections"], true, "{w}");
    assert_eq!(w["pods"].as_array().unwrap().len(), 3, "{w}");

    // /metrics carries the sum (scraped while the load ran).
    let exposed = metrics
        .lines()
        .find_map(|l| {
            (l.starts_with("headroom_fleet_workload_requests_per_second{")
                && l.contains("workload=\"web\""))
            .then(|| l.rsplit(' ').next()?.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no workload request rate in {metrics}"));
    assert!(rel(exposed, RATE) <= 0.05, "/metrics {exposed}");
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
}

/// `kubernetes-validate --strict` (Kubernetes 1.32's own schemas) accepts `yaml`.
fn validate(bed: &Bed, yaml: &str) {
    let file = bed.path("hpa-patch.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.32.0"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{}{}\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// gunicorn on a unix socket behind nginx in a pod of Deployment shop/front, its HPA on an
/// External request-rate metric at 12 replicas; the clients keep one connection alive for
/// every request. The agents say connections are not requests, so the finding must not
/// give a request-rate target: it says why.
#[test]
fn a_keep_alive_front_makes_the_request_rate_target_untrusted() {
    let needs = headroom_testbed::root_and(&["ip", "gunicorn", "nginx"]);
    headroom_testbed::require_or_return!(
        "a_keep_alive_front_makes_the_request_rate_target_untrusted",
        &needs
    );
    let bed = Bed::new(1).unwrap();
    let ns = Netns::new("pod").unwrap();
    let cg = KubeCgroup::new(UIDS[0], &"f".repeat(64)).unwrap();
    let server = Server::gunicorn_behind_nginx(&ns, 4, 64).unwrap();
    let front = server.front.as_ref().unwrap().pid() as i32;
    for master in [server.master_pid(), front] {
        for pid in std::iter::once(master).chain(children(master)) {
            cg.add(pid as u32).unwrap();
        }
    }
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let mut p = pod(0);
    p["metadata"]["name"] = json!("front-6c9d8f7b5-p0");
    p["metadata"]["labels"]["app"] = json!("front");
    p["metadata"]["ownerReferences"][0]["name"] = json!("front-6c9d8f7b5");
    api.apply(p);
    let mut d = deployment(12);
    d["metadata"]["name"] = json!("front");
    api.apply(d);
    let mut metrics = envoy_rq();
    metrics[0]["external"]["metric"]["selector"]["matchLabels"]["envoy_cluster_name"] =
        json!("front");
    api.apply(hpa("front", 12, metrics));
    let _collector = procs::start_judging_collector(&bed, &kubeconfig);
    let load = Load::start(
        Some(&ns.name),
        "127.0.0.1:8080".parse().unwrap(),
        "/work?ms=20",
        20.0,
        Conn::KeepAlive,
        20 * 90,
        Duration::from_secs(90),
    )
    .unwrap();
    let agent = Agent::exporting(
        &bed,
        NODE,
        "2s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let f = headroom_testbed::wait_for(
        "HPAOverScaling saying the request-rate target cannot be trusted",
        Duration::from_secs(45),
        || {
            finding(&bed, "front", &|f| {
                f["evidence"]["new_target_why_not"]
                    .as_str()
                    .is_some_and(|w| w.contains("cannot be trusted"))
            })
        },
    );
    let w = named_workload(&bed, "front").unwrap();
    let sent = load.stop().unwrap();
    eprintln!("finding: {f:#}\nworkload: {w:#}");
    assert_eq!(sent.connects.len(), 1, "one kept-alive connection");
    assert!(sent.answered.len() >= 100 && sent.failed == 0, "{sent:?}");
    assert_eq!(w["requests_are_connections"], false, "{w}");
    let e = &f["evidence"];
    assert!(e["new_target_average_value"].is_null(), "{e}");
    assert_eq!(e["requests_are_connections"], false, "{e}");
    assert_eq!(e["hpa_metric_terms"], "request_rate", "{e}");
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains("the request-rate target cannot be trusted"),
        "{fix}"
    );
    assert!(
        !fix.contains("--patch-file"),
        "no patch with an untrusted rate: {fix}"
    );
    assert!(fix.contains("Or: Scale on busy workers instead"), "{fix}");
    // The agent said so on every listener of the pod.
    let l = agent
        .reports()
        .iter()
        .rev()
        .find_map(|r| {
            r["listeners"]
                .as_array()?
                .iter()
                .find(|l| l["port"] == 8080 && l["pod"]["uid"] == UIDS[0])
                .cloned()
        })
        .unwrap();
    assert_eq!(
        (&l["requests_are_connections"], &l["model"]),
        (&false.into(), &"event_loop".into()),
        "{l}"
    );
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
    drop(server);
    drop(cg);
}
