//! NodeGroupPacking through the real collector: the fake API server serves the issue-22 node
//! group (14 c5.9xlarge in Karpenter NodePool `general`, 40 api pods at 4 CPU / 11 GiB,
//! aws-node at 500m / 1 GiB per node), each node's agent sends its link-local figures over
//! OTLP (eth0 peak 520/s of which 500 DNS, eth1 100/s of DNS), and the collector's finding,
//! its NodePool fix (kubernetes-validate --strict) and the status page's "Packing" section
//! carry the figures worked out by hand below; a real Alertmanager lists the alert with
//! `severity="info"`.

use crate::common::agent_otlp::{now_ns, Window, S};
use crate::common::{free_port, request, Collector};
use headroom_testbed::apiserver::ApiServer;
use headroom_testbed::cluster::{packing_fixture, with_labels, PACKING_NODES};
use headroom_testbed::proc::Guard;
use headroom_testbed::{require, Need};
use prost::Message;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PB: (&str, &str) = ("content-type", "application/x-protobuf");

/// Today's requests (nothing recommended yet): 160 CPU, 440 GiB. An m5.4xlarge holds
/// 16 × 0.65 − 0.5 = 9.9 CPU of pods: 160/9.9 → 17 nodes, 17 × $0.768 × 730 = $9 530.88 vs
/// 14 × $1.53 × 730 = $15 636.60 now. DNS: 14 × 500/s over 17 primaries + 20 = 431.8/s, 42.2 %
/// of 1024 → 58 % headroom. m5.8xlarge (8 nodes, $8 970.24) would put 7000/8 + 20 = 895/s on
/// an ENI (87 % ≥ 80 %): ranked out.
#[test]
fn the_collector_packs_the_seed_group_and_shows_it() {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let api = ApiServer::start(None).unwrap();
    for o in packing_fixture(now_s) {
        let o = if o["kind"] == "Node" {
            with_labels(o, &[("karpenter.sh/nodepool", "general")])
        } else {
            o
        };
        api.apply(o);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        "[rules]\nevaluation_interval = \"200ms\"\nconsolidation_for = \"0s\"\nstartup_grace = \"0s\"\nconsolidation_group_label = \"karpenter.sh/nodepool\"\n",
    )
    .unwrap();
    // A real Alertmanager routing to a receiver that notifies nobody (its API lists alerts).
    let am = require(
        "NodeGroupPacking reaches Alertmanager as info",
        &[Need::Tool("prometheus-alertmanager")],
    )
    .then(|| {
        let addr = format!("127.0.0.1:{}", free_port());
        let conf = dir.path().join("alertmanager.yml");
        std::fs::write(
            &conf,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let mut cmd = std::process::Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let guard = Guard::spawn("prometheus-alertmanager", &mut cmd).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while request(&addr, "GET", "/-/ready", &[], &[]).map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "Alertmanager never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        (guard, addr)
    });
    let am_url = am.as_ref().map(|(_, a)| format!("http://{a}"));
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    if let Some(u) = &am_url {
        args.extend(["--alertmanager-url", u.as_str()]);
    }
    let c = Collector::start_with_env(&args, &[("KUBECONFIG", kubeconfig.to_str().unwrap())]);
    let end = now_ns();
    for i in 0..PACKING_NODES {
        let n = format!("pack-{:02}", i + 1);
        let mut w = Window::new(&n, end - 10 * S, end, end - 11 * S);
        w.interface("eth0", &format!("eni-{i:02}a"), 520, 500)
            .interface("eth1", &format!("eni-{i:02}b"), 100, 100);
        let (code, body) = request(
            &c.otlp_http,
            "POST",
            "/v1/metrics",
            &[PB],
            &w.request().encode_to_vec(),
        )
        .unwrap();
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    let get = |path: &str| {
        let (code, body) = request(&c.api, "GET", path, &[], &[]).unwrap();
        assert_eq!(code, 200, "{path}");
        String::from_utf8(body).unwrap()
    };
    let packing = || -> Option<Value> {
        let v: Value = serde_json::from_str(&get("/api/v1/findings")).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == "NodeGroupPacking" && f["state"] == "firing")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let f = loop {
        // Every agent's window must be in: before that, the DNS is the reporting nodes' only.
        if let Some(f) = packing().filter(|f| f["evidence"]["dns_nodes_measured"] == 14) {
            break f;
        }
        assert!(Instant::now() < deadline, "{:?}", packing());
        std::thread::sleep(Duration::from_millis(100));
    };
    let e = &f["evidence"];
    assert_eq!(f["severity"], "info");
    assert_eq!(f["subject"]["node_group"], "karpenter.sh/nodepool=general");
    assert_eq!(e["nodes_now"], 14);
    assert_eq!(e["usd_per_month_now"], 15636.6);
    assert_eq!(e["instance_type_after"], "m5.4xlarge");
    assert_eq!(e["nodes_after"], 17);
    assert_eq!(e["usd_per_month_after"], 9530.88);
    assert_eq!(e["dns_peak_after_pps"], 432.0);
    assert_eq!(e["dns_utilization_after"], 0.422);
    assert_eq!(e["ranked_out_by_dns"][0]["instance_type"], "m5.8xlarge");
    assert_eq!(e["ranked_out_by_dns"][0]["dns_peak_per_eni_pps"], 895.0);
    assert_eq!(f["cost"]["usd_per_month"], 6105.72, "15 636.60 − 9 530.88");

    let yaml = crate::scale_down::yaml_objects(f["fix"].as_str().unwrap());
    assert_eq!(yaml.len(), 1, "{}", f["fix"]);
    assert!(
        yaml[0].starts_with("apiVersion: karpenter.sh/v1\nkind: NodePool\n")
            && yaml[0].contains("values: [\"m5.4xlarge\"]"),
        "{}",
        yaml[0]
    );
    crate::scale_down::validate_strict(&yaml);
    // kubernetes-validate knows no NodePool: Karpenter's own CRD schema, unknown fields
    // rejected (deploy/tests/crds/README.md).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodepool.yaml");
    std::fs::write(&file, &yaml[0]).unwrap();
    let root = headroom_testbed::bins::workspace_root();
    let out = std::process::Command::new("python3")
        .arg(root.join("deploy/tests/validate_crs.py"))
        .arg(&file)
        .arg(root.join("deploy/tests/crds/karpenter.sh_nodepools.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ok NodePool/general against karpenter.sh/v1"),
        "validate_crs.py NodePool: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let page = get("/");
    for part in [
        "<h2 id=\"packing\">Packing</h2>",
        "1 node group could save $6 106/month",
        "karpenter.sh/nodepool=general",
        "14 × c5.9xlarge → 17 × m5.4xlarge",
        "$15 637 → $9 531",
        "58% <small>(busiest ENI ≈ 432/s of 1024/s, 42% used; threshold 80%)",
    ] {
        assert!(page.contains(part), "{part} not in the page:\n{page}");
    }

    if let Some((_, addr)) = &am {
        let deadline = Instant::now() + Duration::from_secs(20);
        let alert = loop {
            let listed: Vec<Value> = request(addr, "GET", "/api/v2/alerts", &[], &[])
                .filter(|r| r.0 == 200)
                .and_then(|r| serde_json::from_slice(&r.1).ok())
                .unwrap_or_default();
            if let Some(a) = listed
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "NodeGroupPacking")
            {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "no NodeGroupPacking alert in Alertmanager"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(alert["labels"]["severity"], "info");
        assert_eq!(
            alert["labels"]["node_group"],
            "karpenter.sh/nodepool=general"
        );
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("→ 17 × m5.4xlarge ($9530.88/month)"),
            "{alert}"
        );
    }
}
