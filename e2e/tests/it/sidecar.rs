//! A sidecar agent (EKS Fargate: no DaemonSet, one ENI per pod) → the collector:
//! `headroom-agent --mode sidecar run` inside a bed pod's network namespace exports over
//! OTLP/HTTP to the collector listening on the node side of the pod's veth. The fleet keeps it
//! as a one-pod node flagged `sidecar` with its pod and pod IP, its eth0 windows carry the
//! agent's own figures, and the status page flags the row. Needs root; skips with a reason
//! outside CI, fails in CI.

use crate::agent_common::{AGENT, NO_IMDS};
use crate::collector_common::{self as common, COLLECTOR};
use crate::procs::Agent;
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::proc::Guard;
use headroom_testbed::scrape;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const POD_IP: &str = "10.244.0.5";
const NODE: &str = "fargate-ip-10-244-0-5.ec2.internal";
/// The collector's OTLP/HTTP port on the node side of the pod's veth (`pod0`, 10.244.0.1).
const OTLP: &str = "10.244.0.1:14318";
const API: &str = "127.0.0.1:19464";

/// The window of the collector's eth0 for `NODE` that starts at `start`, if it has it; and the
/// node's `sidecar`.
fn fleet_window(bed: &Bed, start: &str) -> Option<(Value, Value)> {
    let (code, body) = scrape::get(&bed.node, &format!("http://{API}/api/v1/fleet"));
    if code != 200 {
        return None;
    }
    let fleet: Value = serde_json::from_str(&body).ok()?;
    let node = common::node(&fleet, NODE)?;
    let w = node["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["interface"] == "eth0")?["windows"]
        .as_array()?
        .iter()
        .find(|w| w["start"] == start)?
        .clone();
    Some((w, node["sidecar"].clone()))
}

#[test]
fn a_sidecar_reaches_the_collector_as_a_one_pod_node() {
    headroom_testbed::require_or_return!(
        "a_sidecar_reaches_the_collector_as_a_one_pod_node",
        &headroom_testbed::root_and(&["ip", "unbound", "dnsperf", "curl"])
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let pod = bed.pod(POD_IP).unwrap();
    let mut cmd = bed.node.command(&COLLECTOR);
    cmd.args([
        "--otlp-grpc-listen",
        "127.0.0.1:14317",
        "--otlp-http-listen",
        OTLP,
    ])
    .args(["--http-listen", API, "--auth", "none"])
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let _collector = Guard::spawn("headroom-collector", &mut cmd).unwrap();
    scrape::wait_ok(
        &bed.node,
        &format!("http://{API}/readyz"),
        "collector",
        Duration::from_secs(10),
    );

    let mut cmd = pod.command(&AGENT);
    cmd.args(NO_IMDS)
        .args(["--mode", "sidecar", "run", "--report-interval", "2s"])
        .args(["--otlp-endpoint", &format!("http://{OTLP}")])
        .args(["--metrics-listen", "127.0.0.1:19465", "--node-name", NODE])
        .env_remove("KUBECONFIG")
        .env("POD_NAME", "web-0")
        .env("POD_NAMESPACE", "shop")
        .env("POD_UID", "uid-web-0")
        .env("POD_IP", POD_IP);
    let agent = Agent::spawn(cmd);
    headroom_testbed::wait_for("the sidecar captures", Duration::from_secs(15), || {
        let log = agent.log();
        log.iter().any(|l| l.contains("Capturing.")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let sent = bed::run_dnsperf(
        &mut bed
            .dnsperf_in(&pod, bed::LINKLOCAL_RESOLVER, 300, 3, None)
            .unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));

    let all = agent.reports();
    let eth0 = |r: &Value| {
        r["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "eth0")
            .cloned()
            .unwrap_or_else(|| panic!("no eth0 in {r}"))
    };
    let counted: u64 = all
        .iter()
        .map(|r| eth0(r)["linklocal_packets"].as_u64().unwrap())
        .sum();
    eprintln!(
        "dnsperf sent {}, the sidecar's windows counted {counted}",
        sent.sent
    );
    assert_eq!(
        counted, sent.sent,
        "every query the pod sent, in some window"
    );
    let busiest = all
        .iter()
        .max_by_key(|r| eth0(r)["peak_pps"].as_u64().unwrap())
        .unwrap();
    assert_eq!(busiest["node"]["mode"], "sidecar");
    let start = busiest["window"]["start"].as_str().unwrap().to_string();
    let peak = eth0(busiest)["peak_pps"].as_u64().unwrap();
    assert!(peak > 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (w, sidecar) = loop {
        if let Some(x) = fleet_window(&bed, &start) {
            break x;
        }
        assert!(
            Instant::now() < deadline,
            "window {start} of {NODE} never reached the collector"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("window {start}: agent peak {peak}/s, collector {w}; sidecar {sidecar}");
    assert_eq!(w["peak_pps"].as_u64(), Some(peak), "the agent's own figure");
    assert_eq!(w["mean_pps"], eth0(busiest)["mean_pps"]);
    assert_eq!(
        sidecar,
        serde_json::json!({"pod": "shop/web-0", "pod_ip": POD_IP})
    );
    let (code, page) = scrape::get(&bed.node, &format!("http://{API}/"));
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!(
            "{NODE} <span class=\"sidecar\">sidecar</span><br><small>pod shop/web-0 · ENI pod IP {POD_IP}</small>"
        )),
        "the page's node row flags the sidecar"
    );
    drop(agent);
}
