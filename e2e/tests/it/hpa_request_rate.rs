//! HPAOverScaling in the HPA's own terms (issue 26), end to end: three gunicorn pods (4 sync
//! workers each, kubelet-shaped cgroups, one Deployment) under a paced, bounded load loop of
//! 60 requests/s in total (20 per pod, a new connection per request, each holding a worker
//! 20 ms), sent from inside each pod's namespace. Ground truth: every connection the load
//! made, timed. The agent's request rate per pod must be within 5 % of the connections made
//! in its window, the collector's workload sum within 5 % of 60.
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

fn get_json(bed: &Bed, path: &str) -> Value {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}{path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn workload(bed: &Bed) -> Option<Value> {
    get_json(bed, "/api/v1/fleet")["clusters"][0]["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["namespace"] == "shop" && w["name"] == "web")
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

    // The load, bounded to 60 s; three whole report windows inside it.
    pods.load(Duration::from_secs(60));
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
    let sent = pods.stop();
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
