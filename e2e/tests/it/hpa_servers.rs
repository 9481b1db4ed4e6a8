//! HPAOverScaling end to end for the servers issue 18 added, sized by capacity (workers ×
//! threads): unicorn (4 workers) over a unix socket behind nginx, and Puma in cluster mode
//! (2 workers × 4 threads) over a unix socket behind nginx, each in its own pod network
//! namespace with a kubelet-shaped cgroup, each a Deployment with a CPU HPA at 12 replicas in
//! the fake API server. The test holds every request slot busy (4 and 8 slow requests, ground
//! truth: the requests that started), the agent measures them and exports over OTLP, and the
//! collector must find both HPAs over-scaled with capacity-based figures:
//! unicorn needed = ceil(4 / (4 × 0.7)) = 2, averageValue 2800m;
//! Puma needed = ceil(8 / (8 × 0.7)) = 2, averageValue 5600m (by workers alone, 8 busy over
//! 2 workers would have read as 400 % and needed 6).
//! nginx's own listeners are event loops: in the fleet's listeners, never a workload.
//! Needs root; skips with a reason outside CI, fails in CI.

use crate::procs::{self, Agent, API, OTLP_HTTP};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::bed::Bed;
use headroom_testbed::netns::Netns;
use headroom_testbed::prefork::{children, Server};
use headroom_testbed::scrape;
use headroom_testbed::Need;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NODE: &str = "node-1";
const UNICORN_UID: &str = "3a1f0c9e-5b7d-4e2a-9c8b-1d0e2f3a4b5c";
const PUMA_UID: &str = "8e7d6c5b-4a39-4281-9f0e-d1c2b3a4f5e6";

/// A pod of Deployment `name` (through its ReplicaSet, as the API server shows it).
fn pod(name: &str, uid: &str, ip: &str, container: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": format!("{name}-6c9d8f7b5-x2k4p"), "uid": uid,
            "labels": {"app": name, "pod-template-hash": "6c9d8f7b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-6c9d8f7b5"), "uid": format!("rs-{name}"), "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [{"name": container}, {"name": "nginx"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

/// Deployment `name` and its autoscaling/v2 HPA at `replicas`, scaling on CPU.
fn scale(name: &str, replicas: u32) -> [Value; 2] {
    [
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": "shop", "name": name, "uid": format!("d-{name}")},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}},
            "status": {"replicas": replicas, "readyReplicas": replicas}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": name, "uid": format!("h-{name}")},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 2, "maxReplicas": 40,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60}}}]},
            "status": {"currentReplicas": replicas, "desiredReplicas": replicas}}),
    ]
}

/// The agent's listener on unix socket `path` in the newest report that has it.
fn listener(agent: &Agent, path: &str) -> Option<Value> {
    agent.reports().iter().rev().find_map(|r| {
        r["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["address"] == path)
            .cloned()
    })
}

fn get_json(bed: &Bed, path: &str) -> Value {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}{path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn hpa_over_scaling_sized_by_capacity_for_unicorn_and_puma_on_unix_sockets() {
    let needs = [
        Need::Root,
        Need::Tool("ip"),
        Need::Tool("unicorn"),
        Need::Tool("puma"),
        Need::Tool("nginx"),
    ];
    headroom_testbed::require_or_return!(
        "hpa_over_scaling_sized_by_capacity_for_unicorn_and_puma_on_unix_sockets",
        &needs
    );
    let bed = Bed::new(1).unwrap();
    let unicorn_ns = bed.pod("10.244.0.5").unwrap();
    let puma_ns = Netns::new("pumapod").unwrap();
    // Cgroups before the servers, so they are removed after them.
    let unicorn_cg =
        headroom_testbed::cgroup::KubeCgroup::new(UNICORN_UID, &"a".repeat(64)).unwrap();
    let puma_cg = headroom_testbed::cgroup::KubeCgroup::new(PUMA_UID, &"b".repeat(64)).unwrap();
    let unicorn =
        Server::unicorn_behind_nginx(&unicorn_ns, 4, 16, |pid| unicorn_cg.add(pid)).unwrap();
    let puma = Server::puma_behind_nginx(&puma_ns, 2, 4).unwrap();
    let master = puma.master_pid();
    for pid in std::iter::once(master).chain(children(master)) {
        puma_cg.add(pid as u32).unwrap();
    }
    let unicorn_sock = unicorn.socket.clone().unwrap().display().to_string();
    let puma_sock = puma.socket.clone().unwrap().display().to_string();

    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    api.apply(pod("shop-unicorn", UNICORN_UID, "10.244.0.5", "unicorn"));
    api.apply(pod("shop-puma", PUMA_UID, "10.244.0.6", "puma"));
    for o in scale("shop-unicorn", 12)
        .into_iter()
        .chain(scale("shop-puma", 12))
    {
        api.apply(o);
    }
    let _collector = procs::start_judging_collector(&bed, &kubeconfig);
    let agent = Agent::exporting(
        &bed,
        NODE,
        "1s",
        &format!("http://{OTLP_HTTP}"),
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    headroom_testbed::wait_for(
        "both unix listeners in a report",
        Duration::from_secs(20),
        || {
            (listener(&agent, &unicorn_sock).is_some() && listener(&agent, &puma_sock).is_some())
                .then_some(())
        },
    );

    // Every request slot busy: 4 unicorn workers, 8 Puma threads.
    let held_unicorn = unicorn.hold("u", 4, 4).unwrap();
    let held_puma = puma.hold("p", 8, 8).unwrap();
    assert_eq!(
        (unicorn.started("u").len(), puma.started("p").len()),
        (4, 8),
        "ground truth: the requests in service"
    );
    // Hold until the agent has a window fully inside the hold for both, plus two more.
    let since = agent.reports().len();
    let full = |path: &str, n: f64| {
        agent.reports()[since..].iter().any(|r| {
            r["listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| l["address"] == path && l["busy_mean"].as_f64() == Some(n))
        })
    };
    headroom_testbed::wait_for("a full window of the hold", Duration::from_secs(15), || {
        (full(&unicorn_sock, 4.0) && full(&puma_sock, 8.0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (unicorn.started("u").len(), puma.started("p").len()),
        (4, 8),
        "held throughout"
    );
    held_unicorn.release().unwrap();
    held_puma.release().unwrap();

    let p = listener(&agent, &puma_sock).unwrap();
    assert_eq!(
        (&p["workers"], &p["threads"], &p["capacity"], &p["model"]),
        (&2.into(), &4.into(), &8.into(), &"threaded".into()),
        "{p}"
    );

    let firing = |workload: &str| -> Option<Value> {
        get_json(&bed, "/api/v1/findings")["findings"]
            .as_array()?
            .iter()
            .find(|f| {
                f["rule"] == "HPAOverScaling"
                    && f["state"] == "firing"
                    && f["subject"]["workload"] == workload
            })
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (u, pm) = loop {
        if let (Some(u), Some(p)) = (firing("shop-unicorn"), firing("shop-puma")) {
            break (u, p);
        }
        if Instant::now() >= deadline {
            let fleet = get_json(&bed, "/api/v1/fleet");
            panic!(
                "not both HPAs over-scaled: {:#}\nworkloads: {:#}\nlisteners: {:#}",
                get_json(&bed, "/api/v1/findings"),
                fleet["clusters"][0]["workloads"],
                fleet["clusters"][0]["nodes"][0]["listeners"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{u:#}\n{pm:#}");
    for (f, workers, threads, capacity, average) in
        [(&u, 4, 1, 4, "2800m"), (&pm, 2, 4, 8, "5600m")]
    {
        let e = &f["evidence"];
        assert_eq!(e["replicas"], 12, "{e}");
        assert_eq!(
            (
                &e["workers_per_pod"],
                &e["threads_per_worker"],
                &e["capacity_per_pod"]
            ),
            (&workers.into(), &threads.into(), &capacity.into()),
            "{e}"
        );
        assert_eq!(e["threads_known"], true, "{e}");
        assert_eq!(e["busy_p95"].as_f64(), Some(capacity as f64), "{e}");
        assert_eq!(e["needed_replicas"], 2, "{e}");
        assert_eq!(e["suggested_average_value"], average, "{e}");
        let fix = f["fix"].as_str().unwrap();
        assert!(
            fix.contains(&format!("averageValue: \"{average}\"")),
            "{fix}"
        );
    }
    assert!(
        pm["fix"]
            .as_str()
            .unwrap()
            .contains("8 (2 workers × 4 threads) per pod"),
        "{}",
        pm["fix"]
    );

    // The workloads are the two pools; nginx (both pods' :8080) is an event loop: a listener
    // with connections, never a workload.
    let fleet = get_json(&bed, "/api/v1/fleet");
    let cluster = &fleet["clusters"][0];
    // The test's own fake API server is a process with a listener in the bed too (a
    // `Process` workload outside any pod); the pods' workloads are exactly the two pools.
    let workloads = cluster["workloads"].as_array().unwrap();
    let mut names: Vec<&str> = workloads
        .iter()
        .filter(|w| w["namespace"] == "shop")
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["shop-puma", "shop-unicorn"], "{workloads:#?}");
    assert!(
        workloads.iter().all(|w| w["name"] != "nginx"),
        "nginx is no workload: {workloads:#?}"
    );
    let listeners = cluster["nodes"][0]["listeners"].as_array().unwrap();
    let nginx: Vec<&Value> = listeners.iter().filter(|l| l["port"] == 8080).collect();
    assert!(!nginx.is_empty(), "nginx's listeners: {listeners:#?}");
    for l in &nginx {
        assert_eq!(
            (&l["model"], &l["workers"]),
            (&"event_loop".into(), &0.into()),
            "{l}"
        );
    }
    let puma_l = listeners
        .iter()
        .find(|l| l["address"] == puma_sock.as_str())
        .unwrap_or_else(|| panic!("{listeners:#?}"));
    assert!(puma_l["port"].is_null(), "{puma_l}");
    assert_eq!(puma_l["capacity"], 8, "{puma_l}");

    // /metrics: capacity per workload.
    let (code, metrics) = scrape::get(&bed.node, &format!("http://{API}/metrics"));
    assert_eq!(code, 200);
    let capacity = |name: &str| {
        metrics.lines().find_map(|l| {
            (l.starts_with("headroom_fleet_workload_capacity{")
                && l.contains(&format!("workload=\"{name}\"")))
            .then(|| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        })
    };
    assert_eq!(capacity("shop-puma"), Some(8.0), "{metrics}");
    assert_eq!(capacity("shop-unicorn"), Some(4.0));
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
}

/// Issue 18 point 2's last resort: a server that states no thread count (Python's threading
/// WSGI server: one process, a thread per request) is, without help, one process holding many
/// connections, so an event loop (no busy workers, kept out of the rules). The pod annotation
/// `headroom.io/threads-per-worker: "8"`, applied while the agent runs, makes it threaded with
/// capacity 8 and busy = the requests in service (ground truth: the requests that started).
#[test]
fn the_threads_per_worker_annotation_sizes_a_server_that_states_none() {
    headroom_testbed::require_or_return!(
        "the_threads_per_worker_annotation_sizes_a_server_that_states_none",
        &[Need::Root, Need::Tool("ip"), Need::Tool("python3")]
    );
    const UID: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
    let bed = Bed::new(1).unwrap();
    let ns = bed.pod("10.244.0.5").unwrap();
    let cg = headroom_testbed::cgroup::KubeCgroup::new(UID, &"d".repeat(64)).unwrap();
    let server = Server::python_threading(&ns, |pid| cg.add(pid)).unwrap();
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let mut p = pod("shop-py", UID, "10.244.0.5", "app");
    api.apply(p.clone());
    let agent = Agent::start(
        &bed,
        NODE,
        &["--report-interval", "1s"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let ours = |r: &Value| -> Option<Value> {
        r["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["port"] == 8080 && l["pod"]["uid"] == UID)
            .cloned()
    };
    // Reports from index `since` on whose listener passes `ok`.
    let wait = |what: &str, since: usize, ok: &dyn Fn(&Value) -> bool| -> Value {
        headroom_testbed::wait_for(what, Duration::from_secs(20), || {
            agent.reports()[since..]
                .iter()
                .filter_map(ours)
                .find(|l| ok(l))
        })
    };
    wait("the server's listener with its pod", 0, &|_| true);

    let since = agent.reports().len();
    let held = server.hold("a", 3, 3).unwrap();
    let l = wait("3 requests in a window", since, &|l| {
        l["connections_max"] == 3
    });
    assert_eq!(server.started("a").len(), 3, "ground truth");
    held.release().unwrap();
    eprintln!("unannotated: {l}");
    assert_eq!(
        (&l["model"], &l["threads_known"], &l["busy_mean"]),
        (&"event_loop".into(), &false.into(), &0.0.into()),
        "{l}"
    );

    p["metadata"]["annotations"] = json!({"headroom.io/threads-per-worker": "8"});
    api.apply(p);
    let since = agent.reports().len();
    wait("threads from the annotation", since, &|l| {
        l["threads_known"] == true
    });
    let since = agent.reports().len();
    let held = server.hold("b", 5, 5).unwrap();
    let l = wait("a full window of 5 in service", since, &|l| {
        l["busy_mean"].as_f64() == Some(5.0)
    });
    assert_eq!(
        server.started("b").len(),
        5,
        "ground truth, held throughout"
    );
    held.release().unwrap();
    eprintln!("annotated: {l}");
    assert_eq!(
        (&l["model"], &l["workers"], &l["threads"], &l["capacity"]),
        (&"threaded".into(), &1.into(), &8.into(), &8.into()),
        "{l}"
    );
    assert_eq!(
        (&l["busy_max"], &l["queue_max"]),
        (&5.into(), &0.into()),
        "{l}"
    );
    assert_eq!(l["utilization"].as_f64(), Some(5.0 / 8.0), "{l}");
    let out = agent.guard.stop().unwrap();
    assert!(out.status.success(), "agent exit {:?}", out.status);
}
