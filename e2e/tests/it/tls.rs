//! Issue 16's TLS end to end, with a test CA made here (rcgen): the collector serves every
//! listener over TLS from PEM files (`[tls]`) and asks for credentials on the API, page and
//! `/metrics` (`[web]`: a bcrypt basic-auth user and a bearer token file); the real agent sends
//! over https (OTLP/HTTP) and gRPC-TLS, verifying the collector against `otlp_ca_file` and a
//! server name that is not the endpoint's host, and its windows arrive; an agent trusting
//! another CA refuses and says so; a real Prometheus scrapes `/metrics` over TLS with basic
//! auth and with a bearer token, and its unauthenticated job is refused; the certificate is
//! renewed on disk mid-run (a broken pair first, which is ignored) and new handshakes on all
//! three ports see the new one. Needs root (a bed for the agent); skips with a reason outside
//! CI, fails in CI.

use crate::collector_common::{usage_error, COLLECTOR};
use crate::procs::{Agent, AGENT_METRICS, API, GRPC, OTLP_HTTP};
use headroom_testbed::bed::Bed;
use headroom_testbed::netns::Netns;
use headroom_testbed::proc::Guard;
use headroom_testbed::tls::{bcrypt_hash, TestCa};
use headroom_testbed::wait_for;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The name on the collector's certificate (no IP: the agent and Prometheus must name it).
const NAME: &str = "collector.test";
const PROMETHEUS: &str = "127.0.0.1:19095";

/// curl over TLS from `ns` to `NAME` on `addr`'s port (resolved to its IP), trusting `ca`:
/// (HTTP status or 0 when no TLS session came up, body).
fn curl(ns: &Netns, ca: &Path, addr: &str, path: &str, extra: &[&str]) -> (u32, String) {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let out = ns
        .command("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{NAME}:{port}:{ip}")])
        .args(extra)
        .arg(format!("https://{NAME}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Node names in the collector's fleet, read over TLS with basic auth.
fn fleet_nodes(bed: &Bed, ca: &Path) -> Vec<String> {
    let (code, body) = curl(&bed.node, ca, API, "/api/v1/fleet", &["-u", "prom:pw-1"]);
    if code != 200 {
        return Vec::new();
    }
    let fleet: Value = serde_json::from_str(&body).unwrap();
    fleet["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["nodes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n["name"].as_str().map(String::from))
        .collect()
}

/// Prometheus' instant query `q` (plain HTTP on its own port): the result vector.
fn query(bed: &Bed, q: &str) -> Vec<Value> {
    let out = bed
        .node
        .command("curl")
        .args(["-s", "--max-time", "5", "--get", "--data-urlencode"])
        .arg(format!("query={q}"))
        .arg(format!("http://{PROMETHEUS}/api/v1/query"))
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

fn up(bed: &Bed, job: &str) -> Option<f64> {
    query(bed, &format!("up{{job=\"{job}\"}}"))
        .first()
        .and_then(|r| r["value"][1].as_str()?.parse().ok())
}

#[test]
fn tls_everywhere_with_a_test_ca_and_the_web_config() {
    headroom_testbed::require_or_return!(
        "tls_everywhere_with_a_test_ca_and_the_web_config",
        &headroom_testbed::root_and(&["ip", "curl", "prometheus", "promtool"])
    );
    let bed = Bed::new(1).unwrap();
    let dir = bed.dir.path().to_path_buf();
    let ca = TestCa::new("one");
    let ca_file = ca.write(&dir.join("ca.pem"));
    let wrong_ca = TestCa::new("wrong").write(&dir.join("wrong-ca.pem"));
    let issued = ca.issue(&dir, "collector", &[NAME], false);
    std::fs::write(dir.join("scrape-token"), "token-abc\n").unwrap();
    let collector_toml = dir.join("collector.toml");
    std::fs::write(
        &collector_toml,
        format!(
            "kube = false\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [web]\nbearer_token_file = \"{}\"\n[web.basic_auth_users]\nprom = \"{}\"\n",
            issued.cert_file.display(),
            issued.key_file.display(),
            dir.join("scrape-token").display(),
            bcrypt_hash("pw-1"),
        ),
    )
    .unwrap();
    let mut cmd = bed.node.command(COLLECTOR.as_str());
    // About TLS, not ingest authentication (e2e/tests/it/auth.rs): agents send no token here.
    cmd.args(["--otlp-grpc-listen", GRPC, "--otlp-http-listen", OTLP_HTTP])
        .args(["--auth", "none"])
        .args(["--http-listen", API, "--config"])
        .arg(&collector_toml)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _collector = Guard::spawn("headroom-collector", &mut cmd).unwrap();
    wait_for("collector ready over TLS", Duration::from_secs(10), || {
        (curl(&bed.node, &ca_file, API, "/readyz", &[]).0 == 200).then_some(())
    });

    // The web config: probes open, everything else needs a credential.
    let t0 = Instant::now();
    assert_eq!(curl(&bed.node, &ca_file, API, "/healthz", &[]).0, 200);
    for path in ["/metrics", "/api/v1/fleet", "/"] {
        assert_eq!(curl(&bed.node, &ca_file, API, path, &[]).0, 401, "{path}");
        assert_eq!(
            curl(&bed.node, &ca_file, API, path, &["-u", "prom:wrong"]).0,
            401,
            "{path}"
        );
        assert_eq!(
            curl(
                &bed.node,
                &ca_file,
                API,
                path,
                &["-H", "Authorization: Bearer nope"]
            )
            .0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        curl(&bed.node, &ca_file, API, "/metrics", &["-u", "prom:pw-1"]).0,
        200
    );
    assert_eq!(
        curl(
            &bed.node,
            &ca_file,
            API,
            "/metrics",
            &["-H", "Authorization: Bearer token-abc"]
        )
        .0,
        200
    );
    // Plain HTTP on a TLS port gets no answer; a client trusting another CA no session.
    assert_eq!(
        headroom_testbed::scrape::get(&bed.node, &format!("http://{API}/healthz")).0,
        0
    );
    assert_eq!(curl(&bed.node, &wrong_ca, API, "/healthz", &[]).0, 0);

    eprintln!("web config checks took {:.1} s", t0.elapsed().as_secs_f64());
    // The real agent over https and gRPC-TLS, verifying NAME against the CA file; its own
    // /metrics over TLS behind the same kind of web config (a bearer token).
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "otlp_ca_file = \"{}\"\notlp_server_name = \"{NAME}\"\n\
             tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n\
             web = {{ bearer_token_file = \"{}\" }}\n",
            ca_file.display(),
            issued.cert_file.display(),
            issued.key_file.display(),
            dir.join("scrape-token").display(),
        ),
    )
    .unwrap();
    for (node, protocol, addr) in [
        ("node-https", "http/protobuf", OTLP_HTTP),
        ("node-grpc", "grpc", GRPC),
    ] {
        let endpoint = format!("https://{addr}");
        let agent = Agent::exporting(
            &bed,
            node,
            "1s",
            &endpoint,
            &[
                "--otlp-protocol",
                protocol,
                "--config",
                agent_toml.to_str().unwrap(),
            ],
            &[],
        );
        let t0 = Instant::now();
        wait_for(
            &format!("{protocol}: windows of {node} in the fleet"),
            Duration::from_secs(20),
            || {
                fleet_nodes(&bed, &ca_file)
                    .iter()
                    .any(|n| n == node)
                    .then_some(())
            },
        );
        eprintln!(
            "{protocol} over TLS: {node} in the fleet {:.1} s after the agent started",
            t0.elapsed().as_secs_f64()
        );
        wait_for(
            "the agent's /healthz over TLS",
            Duration::from_secs(10),
            || (curl(&bed.node, &ca_file, AGENT_METRICS, "/healthz", &[]).0 == 200).then_some(()),
        );
        assert_eq!(
            curl(&bed.node, &ca_file, AGENT_METRICS, "/metrics", &[]).0,
            401
        );
        let (code, text) = curl(
            &bed.node,
            &ca_file,
            AGENT_METRICS,
            "/metrics",
            &["-H", "Authorization: Bearer token-abc"],
        );
        assert_eq!(code, 200);
        assert!(text.contains("headroom_otlp_windows_sent_total"), "{text}");
        let log = agent.log();
        agent.guard.stop().unwrap();
        assert!(
            !log.iter().any(|l| l.contains("OTLP export failing")),
            "{protocol}: {log:?}"
        );
    }

    // An agent that trusts another CA refuses the collector and says why.
    std::fs::write(
        &agent_toml,
        format!(
            "otlp_ca_file = \"{}\"\notlp_server_name = \"{NAME}\"\n",
            wrong_ca.display()
        ),
    )
    .unwrap();
    let agent = Agent::exporting(
        &bed,
        "node-wrong",
        "1s",
        &format!("https://{OTLP_HTTP}"),
        &["--config", agent_toml.to_str().unwrap()],
        &[],
    );
    let line = wait_for(
        "the agent says the certificate is not trusted",
        Duration::from_secs(15),
        || {
            agent
                .log()
                .into_iter()
                .find(|l| l.contains("TLS certificate is not trusted"))
        },
    );
    agent.guard.stop().unwrap();
    assert!(line.to_lowercase().contains("unknownissuer"), "{line}");
    assert!(!fleet_nodes(&bed, &ca_file)
        .iter()
        .any(|n| n == "node-wrong"));

    // A real Prometheus scraping /metrics over TLS: basic auth, a bearer token, and nothing.
    let prom = dir.join("prometheus.yml");
    let tls = format!(
        "  scheme: https\n  tls_config: {{ca_file: '{}', server_name: '{NAME}'}}\n",
        ca_file.display()
    );
    let target = format!("  static_configs: [{{targets: ['{API}']}}]\n");
    std::fs::write(
        &prom,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
             - job_name: basic\n{tls}{target}  basic_auth: {{username: prom, password: pw-1}}\n\
             - job_name: bearer\n{tls}{target}  authorization: {{credentials_file: '{}'}}\n\
             - job_name: anonymous\n{tls}{target}",
            dir.join("scrape-token").display()
        ),
    )
    .unwrap();
    let check = bed
        .node
        .command("promtool")
        .args(["check", "config"])
        .arg(&prom)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let prometheus =
        headroom_testbed::prometheus::start(&bed.node, &prom, &dir.join("prom-data"), PROMETHEUS);
    wait_for(
        "Prometheus scraped all three jobs",
        Duration::from_secs(30),
        || {
            let all = ["basic", "bearer", "anonymous"].map(|j| up(&bed, j));
            all.iter().all(Option::is_some).then_some(all)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(up(&bed, "basic"), Some(1.0));
    assert_eq!(up(&bed, "bearer"), Some(1.0));
    assert_eq!(up(&bed, "anonymous"), Some(0.0));
    let scraped = query(
        &bed,
        "count({job=\"basic\", __name__=~\"headroom_collector_.+\"})",
    );
    let n: f64 = scraped
        .first()
        .and_then(|r| r["value"][1].as_str()?.parse().ok())
        .unwrap_or(0.0);
    assert!(n >= 3.0, "collector series scraped over TLS: {scraped:?}");
    drop(prometheus);

    // Renewal on disk: a broken pair first (a certificate of the new CA with the old key) is
    // logged and ignored; then the new pair, which every port's new handshakes present.
    let ca2 = TestCa::new("two");
    let ca2_file = ca2.write(&dir.join("ca2.pem"));
    let renewed = ca2.issue(&dir, "renewed", &[NAME], false);
    std::fs::copy(&renewed.cert_file, &issued.cert_file).unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        curl(&bed.node, &ca_file, API, "/healthz", &[]).0,
        200,
        "old pair kept"
    );
    std::fs::copy(&renewed.key_file, &issued.key_file).unwrap();
    let t0 = Instant::now();
    wait_for(
        "the renewed certificate served",
        Duration::from_secs(15),
        || (curl(&bed.node, &ca2_file, API, "/healthz", &[]).0 == 200).then_some(()),
    );
    eprintln!(
        "renewed certificate served {:.1} s after the key was written",
        t0.elapsed().as_secs_f64()
    );
    for addr in [API, OTLP_HTTP, GRPC] {
        assert_eq!(
            curl(&bed.node, &ca_file, addr, "/", &[]).0,
            0,
            "{addr}: old CA"
        );
        let extra: &[&str] = if addr == GRPC { &["--http2"] } else { &[] };
        assert_ne!(
            curl(&bed.node, &ca2_file, addr, "/", extra).0,
            0,
            "{addr}: new CA"
        );
    }
}

/// Unusable TLS or web settings stop the collector before it binds a port: exit 64 and one
/// line naming the file or field.
#[test]
fn bad_tls_and_web_settings_exit_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("bad-settings");
    let good = ca.issue(d, "good", &[NAME], false);
    let other = ca.issue(d, "other", &[NAME], false);
    std::fs::write(d.join("garbage.pem"), "not PEM at all\n").unwrap();
    let (cert, key, other_key) = (
        good.cert_file.display().to_string(),
        good.key_file.display().to_string(),
        other.key_file.display().to_string(),
    );
    let garbage = d.join("garbage.pem").display().to_string();
    let cases = [
        (format!("[tls]\ncert_file = \"{cert}\"\n"), "needs both cert_file and key_file"),
        (
            format!("[tls]\ncert_file = \"{cert}\"\nkey_file = \"{}/missing.key\"\n", d.display()),
            "missing.key",
        ),
        (
            format!("[tls]\ncert_file = \"{cert}\"\nkey_file = \"{other_key}\"\n"),
            "does not fit the certificate",
        ),
        (
            format!("[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nclient_ca_file = \"{garbage}\"\n"),
            "client_ca_file",
        ),
        (
            "[web]\nbasic_auth_users = { alice = \"secret\" }\n".to_string(),
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "[alertmanager_http]\nauthorization = { credentials_file = \"/nonexistent/t\" }\nbasic_auth = { username = \"u\", password_file = \"/nonexistent/p\" }\n".to_string(),
            "not both",
        ),
    ];
    for (toml, says) in cases {
        let cfg = d.join("collector.toml");
        std::fs::write(&cfg, format!("kube = false\n{toml}")).unwrap();
        let err = usage_error(&["--config", cfg.to_str().unwrap()]);
        assert!(err.contains(says), "{toml}: {err}");
    }
}
