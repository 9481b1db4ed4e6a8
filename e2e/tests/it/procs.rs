//! The two binaries as the end-to-end tests run them in a bed's node namespace: the collector
//! on fixed loopback ports, waited for until ready, and `headroom-agent run` with its reports
//! (logged at debug level) collected from its stderr.

use crate::agent_common::{AGENT, NO_IMDS};
use crate::collector_common::COLLECTOR;
use headroom_testbed::bed::Bed;
use headroom_testbed::proc::Guard;
use headroom_testbed::scrape;
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const GRPC: &str = "127.0.0.1:14317";
pub const OTLP_HTTP: &str = "127.0.0.1:14318";
pub const API: &str = "127.0.0.1:19464";
pub const AGENT_METRICS: &str = "127.0.0.1:19465";

/// `headroom-collector` on [`GRPC`], [`OTLP_HTTP`] and [`API`] with more arguments and
/// environment, once `/readyz` answers; its log goes to the test's stderr. Without `--auth`
/// in `args` it runs with `--auth none` (tests not about authentication).
pub fn start_collector(bed: &Bed, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Guard {
    let mut cmd = bed.node.command(&COLLECTOR);
    cmd.args(["--otlp-grpc-listen", GRPC, "--otlp-http-listen", OTLP_HTTP])
        .args(["--http-listen", API]);
    if !args.iter().any(|a| *a == "--auth") {
        cmd.args(["--auth", "none"]);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let g = Guard::spawn("headroom-collector", &mut cmd).unwrap();
    let ready = format!("http://{API}/readyz");
    scrape::wait_ok(&bed.node, &ready, "collector", Duration::from_secs(10));
    g
}

/// A collector that reads the fake API server through `kubeconfig` and judges HPAs (and
/// probes) at once: rules every second, no startup grace, no `for`, 5 s of history enough;
/// findings kept in the bed's `findings.json`.
pub fn start_judging_collector(bed: &Bed, kubeconfig: &std::path::Path) -> Guard {
    let config = bed.path("collector.toml");
    std::fs::write(
        &config,
        format!(
            "state_file = \"{}\"\n[rules]\nevaluation_interval = \"1s\"\nstartup_grace = \"0s\"\n\
             hpa_for = \"0s\"\nhpa_min_history = \"5s\"\nprobe_for = \"0s\"\n",
            bed.path("findings.json").display()
        ),
    )
    .unwrap();
    start_collector(
        bed,
        &["--config".as_ref(), config.as_os_str()],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    )
}

/// A running `headroom-agent run` on eni0 (IMDS off, `/metrics` on [`AGENT_METRICS`]) whose
/// reports are collected; other log lines are kept and echoed.
pub struct Agent {
    pub guard: Guard,
    reports: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// An agent sending a report every `interval` over OTLP to `endpoint`, with `args` more.
    pub fn exporting(
        bed: &Bed,
        node: &str,
        interval: &str,
        endpoint: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let head = ["--report-interval", interval, "--otlp-endpoint", endpoint];
        Agent::start(bed, node, &[&head[..], args].concat(), env)
    }

    pub fn start(bed: &Bed, node: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = bed.node.command(&AGENT);
        cmd.args(NO_IMDS)
            .args(["run", "--interface", "eni0", "--node-name", node])
            .args(["--metrics-listen", AGENT_METRICS])
            .args(args)
            .envs(env.iter().copied());
        Agent::spawn(cmd)
    }

    /// Runs `cmd` (an agent command in any namespace) with debug logs on a piped stderr whose
    /// reports are collected and other lines kept and echoed.
    pub fn spawn(mut cmd: std::process::Command) -> Agent {
        cmd.env("RUST_LOG", "info,headroom_agent=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn("headroom-agent run", &mut cmd).unwrap();
        let stderr = guard.child.as_mut().unwrap().stderr.take().unwrap();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (reports.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.split_once(" report=").map(|x| x.1) {
                    Some(json) => {
                        if let Ok(v) = serde_json::from_str(json) {
                            r.lock().unwrap().push(v);
                        }
                    }
                    None => {
                        eprintln!("agent: {line}");
                        l.lock().unwrap().push(line);
                    }
                }
            }
        });
        Agent {
            guard,
            reports,
            log,
        }
    }

    pub fn reports(&self) -> Vec<Value> {
        self.reports.lock().unwrap().clone()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}
