//! Authenticated ingest against the real collector binary: agents' projected ServiceAccount
//! tokens reviewed by the fake API server (TokenReview and pod GET in the real
//! authentication.k8s.io/v1 and core/v1 shapes), static gateway tokens from a file, and what
//! happens without a token, with another node's token, and with the API server gone.

use crate::common::agent_otlp::{now_ns, Window, S};
use crate::common::{node, request, request_head, runtime, Collector};
use headroom_signals::resource;
use headroom_testbed::apiserver::{jwt_shaped, ApiServer, TokenUser};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const PB: (&str, &str) = ("content-type", "application/x-protobuf");
const NS: &str = "headroom";
const SA: &str = "headroom-agent";
const AUD: &str = "headroom-collector";

fn agent_pod(node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "name": format!("headroom-agent-{node}"), "uid": format!("uid-{node}")},
        "spec": {"nodeName": node, "serviceAccountName": SA, "containers": []}})
}

/// A JWT-shaped token for the agent on `node`, registered with `api` (naming the node in the
/// review when `node_in_review`, else only its pod, as API servers before 1.30 do).
fn agent_token(api: &ApiServer, node: &str, node_in_review: bool) -> String {
    let pod = agent_pod(node);
    api.apply(pod.clone());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jwt_shaped(
        &json!({"aud": [AUD], "exp": exp, "sub": format!("system:serviceaccount:{NS}:{SA}"), "node": node}),
    );
    let user = TokenUser::pod_bound(NS, SA, AUD, &pod, node_in_review.then_some(node));
    api.add_token(&token, user);
    token
}

fn window(node: &str) -> ExportMetricsServiceRequest {
    let end = now_ns();
    let mut w = Window::new(node, end - 10 * S, end, end - 60 * S);
    w.interface("eth0", "eni-0a", 120, 30);
    w.request()
}

fn in_cluster(mut r: ExportMetricsServiceRequest, cluster: &str) -> ExportMetricsServiceRequest {
    for rm in &mut r.resource_metrics {
        for kv in &mut rm.resource.as_mut().unwrap().attributes {
            if kv.key == resource::K8S_CLUSTER_NAME {
                kv.value.as_mut().unwrap().value =
                    Some(any_value::Value::StringValue(cluster.into()));
            }
        }
    }
    r
}

fn both(
    a: ExportMetricsServiceRequest,
    b: ExportMetricsServiceRequest,
) -> ExportMetricsServiceRequest {
    let mut r = a;
    r.resource_metrics.extend(b.resource_metrics);
    r
}

/// POST /v1/metrics with `token` (none: no Authorization header): (status, head, body).
fn post(
    c: &Collector,
    token: Option<&str>,
    r: &ExportMetricsServiceRequest,
) -> (u16, String, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![PB];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request_head(
        &c.otlp_http,
        "POST",
        "/v1/metrics",
        &headers,
        &r.encode_to_vec(),
    )
    .unwrap()
}

/// The collector learns its Kubernetes client a moment after it is ready: until then a
/// reviewed token gets 503 (retry). Waits for the first 200.
fn first_ok(c: &Collector, token: &str, r: &ExportMetricsServiceRequest) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, head, _) = post(c, Some(token), r);
        if code == 200 {
            return;
        }
        assert_eq!(code, 503, "{head}");
        assert!(head.contains("retry-after: "), "{head}");
        assert!(Instant::now() < deadline, "the token was never accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(api: &ApiServer, dir: &Path, extra_config: &str) -> Collector {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = dir.join("collector.toml");
    std::fs::write(&cfg, format!("auth = \"required\"\n{extra_config}")).unwrap();
    Collector::start_with_env(
        &["--config", cfg.to_str().unwrap(), "--auth", "required"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAMESPACE", NS),
        ],
    )
}

/// (cluster, node) of every node in the fleet.
fn fleet_nodes(c: &Collector) -> Vec<(String, String)> {
    let f = c.fleet();
    let mut out = Vec::new();
    for cl in f["clusters"].as_array().unwrap() {
        for n in cl["nodes"].as_array().unwrap() {
            out.push((
                cl["name"].as_str().unwrap().into(),
                n["name"].as_str().unwrap().into(),
            ));
        }
    }
    out
}

fn rejected(c: &Collector, reason: &str) -> u64 {
    let (_, m) = request(&c.api, "GET", "/metrics", &[], &[]).unwrap();
    let text = String::from_utf8(m).unwrap();
    let key = format!("headroom_collector_requests_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn without_a_valid_token_nothing_reaches_the_fleet() {
    let api = ApiServer::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = start(&api, dir.path(), "");
    let w = window("node-a");
    let (code, head, body) = post(&c, None, &w);
    assert_eq!(code, 401, "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    // A google.rpc.Status with code 16 (UNAUTHENTICATED) naming the fix.
    assert!(String::from_utf8_lossy(&body).contains("otlp_token_file"));
    for bad in ["Basic dXNlcjpwYXNz", "Bearer not-a-token"] {
        let mut h = vec![PB];
        h.push(("authorization", bad));
        let (code, head, _) =
            request_head(&c.otlp_http, "POST", "/v1/metrics", &h, &w.encode_to_vec()).unwrap();
        // An unknown token is refused by the review once the client is there; until then 503.
        assert!(code == 401 || code == 503, "{bad}: {head}");
    }
    // A token the API server does not know: refused (401) once reviewable.
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&c, Some("not-a-token"), &w).0 != 401 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    // A token for another audience (the API server's own): refused.
    let pod = agent_pod("node-a");
    api.apply(pod.clone());
    let other = "kube-audience-token-0123456789";
    api.add_token(
        other,
        TokenUser::pod_bound(
            NS,
            SA,
            "https://kubernetes.default.svc.cluster.local",
            &pod,
            Some("node-a"),
        ),
    );
    assert_eq!(post(&c, Some(other), &w).0, 401);
    // Another ServiceAccount's token: refused.
    let stranger = "default-sa-token-0123456789";
    api.add_token(
        stranger,
        TokenUser::pod_bound("default", "default", AUD, &pod, Some("node-a")),
    );
    assert_eq!(post(&c, Some(stranger), &w).0, 401);
    // gRPC: UNAUTHENTICATED without metadata.
    let rt = runtime();
    rt.block_on(async {
        let mut client = crate::metrics_client(&c).await;
        let err = client.export(w.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    });
    assert!(fleet_nodes(&c).is_empty(), "{:?}", fleet_nodes(&c));
    assert!(rejected(&c, "unauthenticated") >= 5);
    // Every review asked for the collector's audience.
    for r in api.token_reviews() {
        assert_eq!(r["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(r["kind"], "TokenReview");
        assert_eq!(r["spec"]["audiences"], json!([AUD]));
    }
}

#[test]
fn a_node_token_writes_its_own_node_only() {
    let api = ApiServer::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = start(&api, dir.path(), "");
    let a = agent_token(&api, "node-a", true);
    first_ok(&c, &a, &window("node-a"));
    let reviews = api.token_reviews().len();
    // One request claiming node-a and node-b: node-a taken, node-b refused and counted.
    let (code, _, body) = post(&c, Some(&a), &both(window("node-a"), window("node-b")));
    assert_eq!(code, 200);
    let resp =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
            &body[..],
        )
        .unwrap();
    let partial = resp.partial_success.expect("node-b's points refused");
    assert!(partial.rejected_data_points > 0, "{partial:?}");
    assert_eq!(rejected(&c, "node_mismatch"), 1);
    let nodes = fleet_nodes(&c);
    assert_eq!(nodes, vec![("prod".to_string(), "node-a".to_string())]);
    assert!(node(&c.fleet(), "node-a").is_some());
    // Cached: no further reviews for the same token.
    assert_eq!(api.token_reviews().len(), reviews);
    // gRPC with the token in metadata: node-a accepted, node-b refused.
    let rt = runtime();
    rt.block_on(async {
        let mut client = crate::metrics_client(&c).await;
        let mut req = tonic::Request::new(window("node-b"));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {a}").parse().unwrap());
        let resp = client.export(req).await.unwrap().into_inner();
        assert!(resp.partial_success.unwrap().rejected_data_points > 0);
        let mut req = tonic::Request::new(window("node-a"));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {a}").parse().unwrap());
        let resp = client.export(req).await.unwrap().into_inner();
        assert!(resp.partial_success.is_none(), "{resp:?}");
    });
    assert_eq!(rejected(&c, "node_mismatch"), 2);
    assert_eq!(fleet_nodes(&c).len(), 1);
    // A token whose review names only the pod: the node is the pod's spec.nodeName.
    let b = agent_token(&api, "node-b", false);
    assert_eq!(post(&c, Some(&b), &window("node-b")).0, 200);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("/api/v1/namespaces/headroom/pods/headroom-agent-node-b")));
    assert_eq!(post(&c, Some(&b), &window("node-a")).0, 200);
    assert_eq!(rejected(&c, "node_mismatch"), 3);
    assert_eq!(fleet_nodes(&c).len(), 2);
}

#[test]
fn a_gateway_token_writes_its_cluster_only() {
    let api = ApiServer::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("gateway-tokens");
    std::fs::write(
        &tokens,
        "# OpenTelemetry Collector gateway of edge\ngw-edge-7f3a9c1e5b2d4f60 edge\n",
    )
    .unwrap();
    let c = start(
        &api,
        dir.path(),
        &format!("auth_static_tokens_file = \"{}\"\n", tokens.display()),
    );
    let gw = "gw-edge-7f3a9c1e5b2d4f60";
    let edge = both(
        in_cluster(window("e1"), "edge"),
        in_cluster(window("e2"), "edge"),
    );
    let (code, _, body) = post(&c, Some(gw), &edge);
    assert_eq!(code, 200);
    let resp =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
            &body[..],
        )
        .unwrap();
    assert!(resp.partial_success.is_none(), "{resp:?}");
    // Its token does not write another cluster.
    assert_eq!(post(&c, Some(gw), &window("p1")).0, 200);
    assert_eq!(rejected(&c, "cluster_mismatch"), 1);
    // Nor does an agent write the gateway's cluster.
    let a = agent_token(&api, "e1", true);
    first_ok(&c, &a, &window("e1"));
    assert_eq!(post(&c, Some(&a), &in_cluster(window("e1"), "edge")).0, 200);
    assert_eq!(rejected(&c, "cluster_mismatch"), 2);
    let mut nodes = fleet_nodes(&c);
    nodes.sort();
    let want: Vec<(String, String)> = [("edge", "e1"), ("edge", "e2"), ("prod", "e1")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(nodes, want);
    // No review for a static token.
    assert!(api.token_reviews().iter().all(|r| r["spec"]["token"] != gw));
    // The file replaced (as a Secret volume update does): the new token works, the old not.
    let new = dir.path().join("gateway-tokens.new");
    std::fs::write(&new, "gw-edge-rotated-0c4e8a2f91 edge\n").unwrap();
    std::fs::rename(&new, &tokens).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(
        &c,
        Some("gw-edge-rotated-0c4e8a2f91"),
        &in_cluster(window("e3"), "edge"),
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never accepted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(post(&c, Some(gw), &in_cluster(window("e1"), "edge")).0, 200);
}

#[test]
fn with_the_api_server_down_cached_tokens_keep_working() {
    let api = ApiServer::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = start(&api, dir.path(), "");
    let a = agent_token(&api, "node-a", true);
    let b = agent_token(&api, "node-b", true);
    first_ok(&c, &a, &window("node-a"));
    drop(api);
    for _ in 0..3 {
        assert_eq!(post(&c, Some(&a), &window("node-a")).0, 200);
    }
    // Not reviewed before: 503 with Retry-After, so the sender keeps it and retries.
    let (code, head, _) = post(&c, Some(&b), &window("node-b"));
    assert_eq!(code, 503, "{head}");
    let after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&after), "{after}");
    // Within the backoff the next one is answered at once, without trying the API server.
    let t = Instant::now();
    assert_eq!(post(&c, Some(&b), &window("node-b")).0, 503);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let rt = runtime();
    rt.block_on(async {
        let mut client = crate::metrics_client(&c).await;
        let mut req = tonic::Request::new(window("node-b"));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {b}").parse().unwrap());
        let err = client.export(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    });
    assert!(rejected(&c, "auth_unavailable") >= 3);
    let nodes = fleet_nodes(&c);
    assert_eq!(nodes, vec![("prod".to_string(), "node-a".to_string())]);
}

#[test]
fn auth_none_must_be_said_and_bad_auth_settings_exit_64() {
    let err = crate::common::usage_error(&["--auth", "maybe"]);
    assert!(err.contains("--auth 'maybe'"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokens");
    std::fs::write(&bad, "short edge\n").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("auth_static_tokens_file = \"{}\"\n", bad.display()),
    )
    .unwrap();
    let err = crate::common::usage_error(&["--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("line 1") && err.contains("TOKEN CLUSTER"),
        "{err}"
    );
    // auth = "none" is logged as a warning at start.
    let mut cmd = std::process::Command::new(crate::common::COLLECTOR.as_str());
    let port = |_| format!("127.0.0.1:{}", crate::common::free_port());
    let (g, h, a) = (port(0), port(1), port(2));
    cmd.args([
        "--auth",
        "none",
        "--otlp-grpc-listen",
        &g,
        "--otlp-http-listen",
        &h,
        "--http-listen",
        &a,
    ])
    .env("KUBECONFIG", "/nonexistent")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut guard = headroom_testbed::proc::Guard::spawn("headroom-collector", &mut cmd).unwrap();
    let stderr = guard.child.as_mut().unwrap().stderr.take().unwrap();
    let mut line = String::new();
    let mut r = std::io::BufReader::new(stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !line.contains("auth = \\\"none\\\"") && !line.contains("auth = \"none\"") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut r, &mut line).unwrap() > 0,
            "no warning"
        );
        assert!(Instant::now() < deadline);
    }
    assert!(line.contains("WARN"), "{line}");
}
