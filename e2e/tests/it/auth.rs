//! Authenticated ingest end to end: a real agent in the netns bed sends a projected-style
//! ServiceAccount token (a JWT-shaped file behind the kubelet's `..data` symlink layout) over
//! OTLP/gRPC to a collector that requires authentication and reviews the token with the fake
//! API server. Its windows arrive; the token file is rotated mid-run as the kubelet does (a new
//! timestamped directory, `..data` renamed over) and every window still arrives, the new token
//! reviewed from then on.
//!
//! Not tested for real: a real kube-apiserver's token signing and review (the fake API server
//! answers TokenReviews in the real shapes for the tokens the test registers) and the kubelet
//! writing the projected volume (its file layout is reproduced here).

use crate::collector_from_agent::{fleet_windows, NODE};
use crate::procs::{self, Agent, GRPC};
use headroom_testbed::apiserver::{jwt_shaped, ApiServer, TokenUser};
use headroom_testbed::bed::Bed;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `token` as the kubelet lays out a projected volume: `..<stamp>/token`, the
/// `..data` symlink to it (replaced by a rename) and `token` → `..data/token`.
fn project(dir: &Path, stamp: &str, token: &str) {
    let data = dir.join(format!("..{stamp}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), token).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{stamp}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("token");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/token", &link).unwrap();
    }
}

fn token_for(api: &ApiServer, pod: &serde_json::Value, n: u32) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let t = jwt_shaped(&json!({"aud": ["headroom-collector"], "exp": exp, "n": n,
        "sub": "system:serviceaccount:headroom:headroom-agent"}));
    // As an API server before 1.30: the review names the pod, the collector finds its node.
    api.add_token(
        &t,
        TokenUser::pod_bound(
            "headroom",
            "headroom-agent",
            "headroom-collector",
            pod,
            None,
        ),
    );
    t
}

#[test]
fn an_agent_with_a_projected_token_gets_its_windows_in_across_a_rotation() {
    headroom_testbed::require_or_return!(
        "an_agent_with_a_projected_token_gets_its_windows_in_across_a_rotation",
        &headroom_testbed::root_and(&["ip", "curl"])
    );
    let bed = Bed::new(1).unwrap();
    let api = ApiServer::start(Some(&bed.node)).unwrap();
    let kubeconfig = bed.path("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "headroom", "name": "headroom-agent-x7k2p", "uid": "5a1f9c2d-7e33-4a88-b2c4-6f9d0e1a3b57"},
        "spec": {"nodeName": NODE, "serviceAccountName": "headroom-agent", "containers": []}});
    api.apply(pod.clone());
    let first = token_for(&api, &pod, 1);
    let dir = bed.path("collector-token");
    std::fs::create_dir_all(&dir).unwrap();
    project(&dir, "2026_12_03_10_00_00.000000001", &first);
    let _collector = procs::start_collector(
        &bed,
        &["--auth".as_ref(), "required".as_ref()],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("POD_NAMESPACE", "headroom".as_ref()),
        ],
    );
    let config = bed.path("agent.toml");
    std::fs::write(
        &config,
        format!("otlp_token_file = \"{}\"\n", dir.join("token").display()),
    )
    .unwrap();
    let more = [
        "--config",
        config.to_str().unwrap(),
        "--otlp-protocol",
        "grpc",
    ];
    let agent = Agent::exporting(&bed, NODE, "1s", &format!("http://{GRPC}"), &more, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet_windows(&bed).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no windows arrived; agent log: {:?}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Rotation, as the kubelet does it at 80 % of the token's life.
    let second = token_for(&api, &pod, 2);
    assert_ne!(first, second);
    project(&dir, "2026_12_03_10_48_00.000000002", &second);
    std::fs::remove_dir_all(dir.join("..2026_12_03_10_00_00.000000001")).unwrap();
    let rotated = agent.reports().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api
        .token_reviews()
        .iter()
        .any(|r| r["spec"]["token"] == second.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never sent"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    while agent.reports().len() < rotated + 4 {
        assert!(Instant::now() < deadline, "the agent stopped reporting");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    // No gap: every window the agent cut (but the last, maybe in flight) is in the fleet.
    let have: Vec<_> = fleet_windows(&bed)
        .iter()
        .map(|w| w["start"].clone())
        .collect();
    let reports = agent.reports();
    assert!(reports.len() >= 6, "{} reports", reports.len());
    for r in &reports[..reports.len() - 1] {
        assert!(
            have.contains(&r["window"]["start"]),
            "window {} missing across the rotation; fleet has {have:?}",
            r["window"]["start"]
        );
    }
    // The token never appears in the agent's log.
    for line in agent.log() {
        assert!(!line.contains(&first) && !line.contains(&second), "{line}");
    }
    // The node came from the token's pod: the collector looked it up.
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("/api/v1/namespaces/headroom/pods/headroom-agent-x7k2p")));
}
