//! The findings state file against the real binary: a damaged one is moved aside with a warning
//! and the collector starts clean (it used to exit 64 and crash-loop), and SIGKILL while the
//! collector keeps rewriting it never leaves a file that does not parse.

use crate::common;

use common::agent_otlp::{now_ns, Window};
use common::*;
use prost::Message;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PB: (&str, &str) = ("content-type", "application/x-protobuf");

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_damaged_state_file_is_moved_aside_and_the_collector_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("findings.json");
    std::fs::write(
        &state,
        "{\"schema\": \"headroom.findings-state/v1\", \"findings\": [tru",
    )
    .unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!("kube = false\nstate_file = \"{}\"\n", state.display()),
    )
    .unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(COLLECTOR.as_str());
    cmd.args(["--config", cfg.to_str().unwrap(), "--auth", "none"])
        .args(["--otlp-grpc-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--otlp-http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &api])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let guard = headroom_testbed::proc::Guard::spawn("headroom-collector", &mut cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while request(&api, "GET", "/readyz", &[], &[]).map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "collector did not start on a damaged state file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, body) = request(&api, "GET", "/api/v1/findings", &[], &[]).unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(findings["findings"].as_array().unwrap().len(), 0);
    let out = guard.stop().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN") && err.contains("Damaged findings state file moved aside"),
        "{err}"
    );
    let names = files(dir.path());
    let aside: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("findings.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{names:?}");
    assert!(
        err.contains(aside[0].as_str()),
        "the warning names where it went: {err}"
    );
    let kept = std::fs::read_to_string(dir.path().join(aside[0])).unwrap();
    assert!(
        kept.ends_with("[tru"),
        "the damaged content is kept as it was"
    );
}

#[test]
fn sigkill_while_writing_state_never_leaves_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("findings.json");
    let cfg = dir.path().join("collector.toml");
    // Every evaluation (100 ms) flips 2000 nodes between critical and clear: a state file of
    // 2000 findings (about 1.5 MB) rewritten ten times a second. Resolved ones are kept, so
    // the file's size stays about the same: the killer watches for it to shrink (a write in
    // progress over the file itself) and kills at once; else at a random moment.
    std::fs::write(
        &cfg,
        format!(
            "kube = false\nstate_file = \"{}\"\nmax_new_nodes_per_request = 2000\n\
             [rules]\nevaluation_interval = \"100ms\"\ndns_for = \"0s\"\nstartup_grace = \"0s\"\nkeep_resolved = \"1h\"\n",
            state.display()
        ),
    )
    .unwrap();
    let flip = |high: bool| {
        let end = now_ns();
        let mut req = Window::new("n0", end - 1_000_000_000, end, end - 60_000_000_000)
            .interface("eth0", "eni-0", 10, 0)
            .request();
        let proto = req.resource_metrics.pop().unwrap();
        for i in 0..2000 {
            let mut w = Window::new(
                &format!("n{i}"),
                end - 1_000_000_000,
                end,
                end - 60_000_000_000,
            );
            w.interface("eth0", "eni-0", if high { 1000 } else { 10 }, 0);
            let mut rm = w.request().resource_metrics.pop().unwrap();
            rm.resource = rm.resource.or(proto.resource.clone());
            req.resource_metrics.push(rm);
        }
        req.encode_to_vec()
    };
    let (mut written, mut kills, mut shrinks) = (0, 0, 0);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..20 {
        // 2000 finding changes a second: logged at info, so warnings only.
        let mut c = Collector::start_with_env(
            &["--config", cfg.to_str().unwrap()],
            &[("RUST_LOG", "warn")],
        );
        // The state from the last round loaded: no file was set aside.
        assert!(
            !files(dir.path()).iter().any(|n| n.contains("corrupt")),
            "round {round}: {:?}",
            files(dir.path())
        );
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let run_for = Duration::from_millis(300 + x % 700);
        let sender = {
            let addr = c.otlp_http.clone();
            let bodies = [flip(true), flip(false)];
            std::thread::spawn(move || {
                let t = Instant::now();
                let mut i = 0;
                // Until the collector is killed (bounded: 30 s).
                while t.elapsed() < Duration::from_secs(30) {
                    // Refused once the collector is killed: the round is over.
                    if request(&addr, "POST", "/v1/metrics", &[PB], &bodies[i % 2]).is_none() {
                        break;
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(40));
                }
            })
        };
        // Wait for this round's first write (on a busy machine the first evaluation may take
        // a while), then kill at a random moment or when the file shrinks.
        let mtime = || std::fs::metadata(&state).and_then(|m| m.modified()).ok();
        let before = mtime();
        let deadline = Instant::now() + Duration::from_secs(20);
        while mtime() == before {
            assert!(
                Instant::now() < deadline,
                "round {round}: no state written in 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        let mut largest = 0;
        while t.elapsed() < run_for {
            let len = std::fs::metadata(&state).map(|m| m.len()).unwrap_or(0);
            if largest > 0 && len < largest / 2 {
                shrinks += 1;
                break;
            }
            largest = largest.max(len);
        }
        c.guard.child.as_mut().unwrap().kill().unwrap();
        c.guard.child.as_mut().unwrap().wait().unwrap();
        sender.join().unwrap();
        kills += 1;
        if let Ok(text) = std::fs::read_to_string(&state) {
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("round {round}: state file does not parse ({e})"));
            assert_eq!(v["schema"], "headroom.findings-state/v1");
            written += usize::from(!v["findings"].as_array().unwrap().is_empty());
        }
    }
    eprintln!(
        "{kills} SIGKILLs ({shrinks} when the file shrank), {written} with findings in the state file, every file parsed"
    );
    assert!(
        written >= 10,
        "the collector wrote findings in most rounds: {written}"
    );
}
