//! ScaleDownBlocked from the Kubernetes side: the collector's pod, node and PDB watchers read
//! the issue-21 fixture cluster from the fake API server (paged lists, watches, 410 relists),
//! the rule names exactly the five pinning pods with their reasons (node-f none), each YAML fix
//! passes kubernetes-validate --strict, and every fix applied through the API server resolves
//! its node's finding at the next evaluation. Then the real binary: /api/v1/findings, the
//! status page's total, /metrics (promtool), a user catalog over the shipped one, and a bad
//! catalog row refused with exit 64.

use crate::common::{request, run_ok, usage_error, Collector};
use headroom_collector::alerts::Sinks;
use headroom_collector::findings::{Engine, Findings};
use headroom_collector::fleet::FleetSnapshot;
use headroom_collector::kube::{self as hk, KubeView, SharedView};
use headroom_collector::rules::{self, Input, Thresholds};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::cluster::{pdb, scale_down_fixture, with_annotations, FIXTURE_BLOCKERS};
use headroom_testbed::scrape::{promtool_check, sample};
use headroom_testbed::{require, Need};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

const PODS: &str = "/api/v1/pods";

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn wait_for(view: &SharedView, what: &str, ok: impl Fn(&KubeView) -> bool) -> KubeView {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = view.get();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", v.cluster);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn evaluate(f: &Findings, view: &KubeView, t: &Thresholds) -> Vec<Value> {
    let fleet = FleetSnapshot::one_cluster("prod", vec![], vec![]);
    let now = SystemTime::now();
    f.evaluate(
        &rules::all(t),
        &Input {
            fleet: &fleet,
            kube: view,
        },
        now,
    );
    let all: Value = serde_json::from_str(&f.json(now)).unwrap();
    all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "ScaleDownBlocked")
        .cloned()
        .collect()
}

/// node → state of its finding.
fn states(found: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = found
        .iter()
        .map(|f| {
            (
                f["subject"]["node"].as_str().unwrap().to_string(),
                f["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every complete YAML object in a fix: from an `apiVersion:` line while lines stay YAML.
pub fn yaml_objects(fix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in fix.lines() {
        if line.starts_with("apiVersion:") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some(String::new());
        } else if cur.is_some()
            && !(line.starts_with(' ')
                || line.starts_with('-')
                || line.starts_with("kind:")
                || line.starts_with("metadata:")
                || line.starts_with("spec:"))
        {
            out.extend(cur.take());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    out.extend(cur);
    out
}

pub fn validate_strict(yaml: &[String]) {
    if !require(
        "rule fixes pass kubernetes-validate --strict",
        &[Need::Tool("kubernetes-validate")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, y) in yaml.iter().enumerate() {
        let file = dir.path().join(format!("fix-{i}.yaml"));
        std::fs::write(&file, y).unwrap();
        run_ok(
            &format!("kubernetes-validate of\n{y}\n"),
            std::process::Command::new("kubernetes-validate")
                .args(["--strict", "-k", "1.32.0"])
                .arg(&file),
        );
    }
}

fn fixture_object(name: &str) -> Value {
    scale_down_fixture(now_s())
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_nodes_from_the_api_server_and_each_fix_resolves_its_finding() {
    let api = ApiServer::start(None).unwrap();
    let objects = scale_down_fixture(now_s());
    let pods = objects.iter().filter(|o| o["kind"] == "Pod").count();
    for o in &objects {
        api.apply(o.clone());
    }
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://{}", api.addr).parse().unwrap(),
    ))
    .unwrap();
    let view = SharedView::default();
    let stop = CancellationToken::new();
    hk::start(client, view.clone(), stop.clone());
    let v = wait_for(&view, "pods, nodes and PDBs listed", |v| {
        let c = v.cluster.read();
        c.listed()
            && c.pods.items.len() == pods
            && c.nodes.items.len() == 6
            && c.pdbs.items.len() == 1
    })
    .await;
    // The pod list was paged by kube-rs (limit=500) and no full pod kept: the first list is one request.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("/api/v1/pods?") && r.contains("limit=")),
        "{:?}",
        api.requests()
    );

    let t = Thresholds {
        scale_down_for: Duration::ZERO,
        ..Thresholds::default()
    };
    let findings = Findings::new(
        Engine::new(Duration::from_secs(3600), Duration::ZERO, SystemTime::now()),
        Sinks::default(),
        None,
    );
    let found = evaluate(&findings, &v, &t);
    let mut got: Vec<(String, String, String)> = found
        .iter()
        .map(|f| {
            let b = &f["evidence"]["blocking_pods"];
            assert_eq!(b.as_array().unwrap().len(), 1, "{f}");
            (
                f["subject"]["node"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    b[0]["namespace"].as_str().unwrap(),
                    b[0]["pod"].as_str().unwrap()
                ),
                b[0]["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = FIXTURE_BLOCKERS
        .iter()
        .map(|(n, p, r)| (n.to_string(), p.to_string(), r.to_string()))
        .collect();
    assert_eq!(got, want, "node-f has none");
    for f in &found {
        assert_eq!(
            (f["state"].as_str(), f["severity"].as_str()),
            (Some("firing"), Some("info")),
            "{f}"
        );
        assert_eq!(f["cost"]["usd_per_month"], json!(560.64), "{f}");
        assert!(
            f["cost"]["basis"]
                .as_str()
                .unwrap()
                .contains("m5.4xlarge on demand in us-east-1"),
            "{f}"
        );
    }
    // Every YAML fix is a valid object by Kubernetes' own strict schemas.
    let yaml: Vec<String> = found
        .iter()
        .flat_map(|f| yaml_objects(f["fix"].as_str().unwrap()))
        .collect();
    let mut kinds: Vec<&str> = yaml.iter().filter_map(|y| y.lines().nth(1)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "kind: Deployment",
            "kind: PodDisruptionBudget",
            "kind: PodDisruptionBudget"
        ],
        "{yaml:?}"
    );
    eprintln!("ScaleDownBlocked fixes:\n{}", yaml.join("---\n"));
    validate_strict(&yaml);

    // Each fix through the watch; the next evaluation resolves exactly that node.
    let lists = api.lists_of(PODS);
    type Arrived = Box<dyn Fn(&KubeView) -> bool + Send>;
    let fixes: Vec<(&str, Value, Arrived)> =
        vec![
            (
                "node-a",
                pdb(
                    "kube-system",
                    "coredns",
                    json!({"k8s-app": "kube-dns"}),
                    json!({"maxUnavailable": 1}),
                    1,
                    2,
                ),
                Box::new(|v: &KubeView| v.cluster.read().pdbs.items.len() == 2),
            ),
            (
                "node-b",
                with_annotations(
                    fixture_object("cache-6f9d8b7c5-q2w3e"),
                    &[(
                        "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes",
                        "scratch",
                    )],
                ),
                Box::new(|v: &KubeView| {
                    v.cluster.read().pods.items.values().any(|p| {
                        &*p.name == "cache-6f9d8b7c5-q2w3e" && !p.safe_local_volumes.is_empty()
                    })
                }),
            ),
            (
                "node-c",
                with_annotations(
                    fixture_object("debug"),
                    &[("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")],
                ),
                Box::new(|v: &KubeView| {
                    v.cluster
                        .read()
                        .pods
                        .items
                        .values()
                        .any(|p| &*p.name == "debug" && p.safe_to_evict == Some(true))
                }),
            ),
            (
                "node-d",
                with_annotations(
                    fixture_object("batch-7c8d9e0f1-r4t5y"),
                    &[("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")],
                ),
                Box::new(|v: &KubeView| {
                    v.cluster.read().pods.items.values().any(|p| {
                        &*p.name == "batch-7c8d9e0f1-r4t5y" && p.safe_to_evict == Some(true)
                    })
                }),
            ),
            (
                "node-e",
                pdb(
                    "shop",
                    "db",
                    json!({"app": "db"}),
                    json!({"maxUnavailable": 1}),
                    1,
                    3,
                ),
                Box::new(|v: &KubeView| {
                    v.cluster
                        .read()
                        .pdbs
                        .items
                        .values()
                        .any(|b| b.name == "db" && b.disruptions_allowed == 1)
                }),
            ),
        ];
    let mut resolved = Vec::new();
    for (i, (node, fix, arrived)) in fixes.into_iter().enumerate() {
        if i == 2 {
            // A 410 in between: the watchers list again and still see every change.
            api.expire();
        }
        api.apply(fix);
        let v = wait_for(&view, node, arrived).await;
        resolved.push(node.to_string());
        let s = states(&evaluate(&findings, &v, &t));
        for (n, state) in &s {
            let want = if resolved.contains(n) {
                "resolved"
            } else {
                "firing"
            };
            assert_eq!(state, want, "after fixing {node}: {s:?}");
        }
    }
    assert!(
        api.lists_of(PODS) > lists,
        "no relist after 410: {:?}",
        api.requests()
    );
    stop.cancel();
}

#[test]
fn the_collector_shows_pinned_nodes_with_their_cost_and_refuses_a_bad_catalog() {
    let api = ApiServer::start(None).unwrap();
    for o in scale_down_fixture(now_s()) {
        api.apply(o);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    // A user catalog over the shipped one: m5.4xlarge at $1/h → $730/month per node.
    let catalog = dir.path().join("instances.csv");
    std::fs::write(
        &catalog,
        "# our negotiated price\nm5.4xlarge,16,65536,8,us-east-1,1.0\n",
    )
    .unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "instance_catalog_file = {:?}\n[rules]\nevaluation_interval = \"200ms\"\nscale_down_for = \"0s\"\nstartup_grace = \"0s\"\n",
            catalog.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = Collector::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let get = |path: &str| {
        let (code, body) = request(&c.api, "GET", path, &[], &[]).unwrap();
        assert_eq!(code, 200, "{path}");
        String::from_utf8(body).unwrap()
    };
    let blocked = || -> Vec<Value> {
        let v: Value = serde_json::from_str(&get("/api/v1/findings")).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "ScaleDownBlocked")
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while blocked().iter().filter(|f| f["state"] == "firing").count() < 5 {
        assert!(Instant::now() < deadline, "{:?}", blocked());
        std::thread::sleep(Duration::from_millis(100));
    }
    let f = blocked();
    assert_eq!(f.len(), 5);
    assert!(
        f.iter().all(|f| f["cost"]["usd_per_month"] == json!(730.0)),
        "{f:?}"
    );
    let page = get("/");
    assert!(page.contains("Nodes that cannot be removed"), "{page}");
    assert!(
        page.contains("5 nodes pinned: $3 650/month"),
        "5 × $730: {page}"
    );
    assert!(page.contains("shop/db-0: NotEnoughPdb"), "{page}");
    let text = get("/metrics");
    for (node, _, reason) in FIXTURE_BLOCKERS {
        let series =
            format!(r#"headroom_node_scale_down_blocked{{node="{node}",reason="{reason}"}}"#);
        assert_eq!(sample(&text, &series), Some(1.0), "{series}");
    }
    assert!(!text.contains(r#"node="node-f""#), "node-f is removable");
    if require(
        "promtool check of /metrics with scale-down series",
        &[Need::Tool("promtool")],
    ) {
        promtool_check(&text);
    }
    // CoreDNS gets its PDB: node-a's finding resolves at an evaluation soon after.
    api.apply(pdb(
        "kube-system",
        "coredns",
        json!({"k8s-app": "kube-dns"}),
        json!({"maxUnavailable": 1}),
        1,
        2,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let f = blocked();
        let a = f.iter().find(|f| f["subject"]["node"] == "node-a").unwrap();
        if a["state"] == "resolved" {
            break;
        }
        assert!(Instant::now() < deadline, "{a}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(get("/").contains("4 nodes pinned: $2 920/month"));
    drop(c);

    // A bad row: exit 64, one line naming the file, line and row.
    std::fs::write(
        &catalog,
        "# ours\nm5.4xlarge,16,65536,8,us-east-1,1.0\nm9.tiny,one,512,2,us-east-1,0.01\n",
    )
    .unwrap();
    let err = usage_error(&["--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("instances.csv line 3")
            && err.contains("vcpu 'one'")
            && err.contains("m9.tiny,one"),
        "{err}"
    );
}
