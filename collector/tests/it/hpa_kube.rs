//! HPAOverScaling end to end from the Kubernetes side: the collector's kube-rs watchers read an
//! autoscaling/v2 HPA and its apps/v1 Deployment from the fake API server (real list + watch,
//! resourceVersions, bookmarks, 410 relists), and the rules compare them with a workload whose
//! busy-worker figures this test states. Also: a changed HPA resolves the finding, a 410 makes
//! the watchers list again, and with the API server gone the last state stays and the rules
//! keep running.

use headroom_collector::alerts::Sinks;
use headroom_collector::findings::{Engine, Findings};
use headroom_collector::fleet::{FleetSnapshot, WorkloadSnapshot};
use headroom_collector::kube::{self as hk, KubeView, SharedView};
use headroom_collector::rules::{self, Input, Thresholds};
use headroom_testbed::apiserver::ApiServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const HPAS: &str = "/apis/autoscaling/v2/horizontalpodautoscalers";

fn hpa(current: u32) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"namespace": "shop", "name": "web-hpa", "uid": "h1"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 10, "maxReplicas": 300,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]},
        "status": {"currentReplicas": current, "desiredReplicas": current}})
}

fn deployment(replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"namespace": "shop", "name": "web", "uid": "d1"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
        "status": {"replicas": replicas, "readyReplicas": replicas}})
}

/// The workload as the fleet would hold it: 4 gunicorn workers per pod, busy p95 100 summed
/// over the pods, an hour of windows.
fn fleet() -> FleetSnapshot {
    let web = WorkloadSnapshot {
        namespace: "shop".into(),
        kind: "Deployment".into(),
        name: "web".into(),
        workers_per_pod: 4,
        threads_per_worker: 1,
        threads_known: true,
        capacity_per_pod: 4,
        busy_mean: 61.0,
        busy_p95: 100.0,
        busy_max: 120.0,
        queue_max: 0,
        history_seconds: 3600.0,
        windows: 360,
        ..Default::default()
    };
    FleetSnapshot::one_cluster("prod", vec![], vec![web])
}

async fn wait_for(view: &SharedView, what: &str, ok: impl Fn(&KubeView) -> bool) -> KubeView {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = view.get();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: view is {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn evaluate(f: &Findings, view: &KubeView, t: &Thresholds) -> Value {
    let fl = fleet();
    f.evaluate(
        &rules::all(t),
        &Input {
            fleet: &fl,
            kube: view,
        },
        SystemTime::now(),
    );
    serde_json::from_str(&f.json(SystemTime::now())).unwrap()
}

fn hpa_findings(v: &Value) -> Vec<Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "HPAOverScaling")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_over_scaling_from_the_api_servers_hpa_and_deployment() {
    let api = ApiServer::start(None).unwrap();
    api.apply(hpa(200));
    api.apply(deployment(200));
    let cfg = kube::Config::new(format!("http://{}", api.addr).parse().unwrap());
    let client = kube::Client::try_from(cfg).unwrap();
    let view = SharedView::default();
    let stop = CancellationToken::new();
    hk::start(client, view.clone(), stop.clone());
    let v = wait_for(&view, "HPA and Deployment listed", |v| {
        v.hpas.len() == 1 && v.target("Deployment", "shop", "web").is_some()
    })
    .await;
    assert_eq!(v.hpas[0].current_replicas, Some(200));
    assert_eq!(v.hpas[0].metrics, ["Resource cpu Utilization 50"]);
    assert_eq!(
        v.target("Deployment", "shop", "web").unwrap().spec_replicas,
        Some(200)
    );

    let t = Thresholds {
        hpa_for: Duration::ZERO,
        ..Thresholds::default()
    };
    let findings = Findings::new(
        Engine::new(Duration::from_secs(3600), Duration::ZERO, SystemTime::now()),
        Sinks::default(),
        None,
    );
    let out = evaluate(&findings, &v, &t);
    let f = &hpa_findings(&out)[0];
    // needed = ceil(100 / (4 × 0.7)) = ceil(35.7) = 36; 200 > 36 × 1.5 = 54.
    assert_eq!(f["state"], "firing");
    assert_eq!(f["evidence"]["replicas"], 200);
    assert_eq!(f["evidence"]["needed_replicas"], 36);
    assert_eq!(f["evidence"]["hpa"], "web-hpa");
    assert_eq!(f["subject"]["namespace"], "shop");
    assert_eq!(f["subject"]["workload"], "web");
    let fix = f["fix"].as_str().unwrap();
    eprintln!("HPAOverScaling fix:\n{fix}");
    assert!(fix.contains("averageValue: \"2800m\""), "{fix}");
    assert!(fix.contains("name: web-hpa"), "{fix}");
    assert!(fix.contains("minReplicas: 10"), "{fix}");
    assert!(fix.contains("maxReplicas: 300"), "{fix}");
    assert!(fix.contains("type: AverageValue"), "{fix}");
    // The snippet is a valid autoscaling/v2 object by Kubernetes' own schema (strict).
    if headroom_testbed::require(
        "hpa fix passes kubernetes-validate",
        &[headroom_testbed::Need::Tool("kubernetes-validate")],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hpa.yaml");
        let yaml = fix.split_once("apiVersion:").map(|(_, y)| y).unwrap();
        let (hpa_yaml, keda) = yaml
            .split_once(headroom_collector::rules::hpa::KEDA_INTRO)
            .unwrap_or_else(|| panic!("no KEDA form in {fix}"));
        std::fs::write(&file, format!("apiVersion:{hpa_yaml}")).unwrap();
        crate::common::run_ok(
            "kubernetes-validate: ",
            std::process::Command::new("kubernetes-validate")
                .args(["--strict", "-k", "1.32.0"])
                .arg(&file),
        );
        // The KEDA form against KEDA's own CRD schema (deploy/tests/crds), unknown keys refused.
        let so = keda.split_once("):\n").map(|(_, y)| y).unwrap();
        assert!(
            so.contains("name: web-hpa") && so.contains("threshold: \"2800m\""),
            "{so}"
        );
        assert!(
            so.contains("minReplicaCount: 10") && so.contains("maxReplicaCount: 300"),
            "{so}"
        );
        let file = dir.path().join("scaledobject.yaml");
        std::fs::write(&file, so).unwrap();
        let root = headroom_testbed::bins::workspace_root();
        let out = std::process::Command::new("python3")
            .arg(root.join("deploy/tests/validate_crs.py"))
            .arg(&file)
            .arg(root.join("deploy/tests/crds/keda.sh_scaledobjects.yaml"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("ScaledObject"),
            "validate_crs.py ScaledObject: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The HPA scales down to 50 (≤ 54): the watch brings the change and the finding resolves.
    api.apply(hpa(50));
    let v = wait_for(&view, "HPA at 50", |v| {
        v.hpas.first().and_then(|h| h.current_replicas) == Some(50)
    })
    .await;
    let out = evaluate(&findings, &v, &t);
    assert_eq!(hpa_findings(&out)[0]["state"], "resolved");
    assert!(!hpa_findings(&out)[0]["resolved_at"].is_null());

    // 410 Gone: the watchers list again, and a change made meanwhile arrives.
    let lists = api.lists_of(HPAS);
    api.expire();
    api.apply(hpa(120));
    let v = wait_for(&view, "HPA at 120 after the relist", |v| {
        v.hpas.first().and_then(|h| h.current_replicas) == Some(120)
    })
    .await;
    assert!(
        api.lists_of(HPAS) > lists,
        "no relist after 410: {:?}",
        api.requests()
    );
    let out = evaluate(&findings, &v, &t);
    assert_eq!(hpa_findings(&out)[0]["state"], "firing");
    assert_eq!(hpa_findings(&out)[0]["evidence"]["replicas"], 120);

    // The API server goes away: the last state stays, the rules keep running.
    drop(api);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = view.get();
    assert_eq!(v.hpas.len(), 1);
    assert_eq!(v.hpas[0].current_replicas, Some(120));
    let out = evaluate(&findings, &v, &t);
    assert_eq!(hpa_findings(&out)[0]["state"], "firing");
    stop.cancel();
}
