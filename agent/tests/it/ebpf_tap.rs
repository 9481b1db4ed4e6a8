//! What only the eBPF tap has: programs attached to the interface, which must go when the agent
//! goes, however it goes; and the capabilities it runs on. Ground truth: the kernel's own
//! answer to BPF_PROG_QUERY for the interface's tcx hooks (what `bpftool net` prints on
//! bpftool ≥ 7.3) and its list of loaded programs. Needs root and Linux 6.6; skips with a
//! reason outside CI, fails in CI.

use crate::common::*;
use aya::programs::tc::{SchedClassifier, TcAttachType};
use headroom_testbed::bed::{self, Bed};
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use std::process::Stdio;
use std::time::Duration;

/// Programs on eni0's tcx egress and ingress hooks in the bed's node namespace: (name, id).
fn attached(bed: &Bed) -> Vec<(String, u32)> {
    in_netns(&bed.node.name, || {
        let mut out = Vec::new();
        for hook in [TcAttachType::Egress, TcAttachType::Ingress] {
            let (_, progs) = SchedClassifier::query_tcx("eni0", hook).unwrap();
            for p in progs {
                out.push((p.name_as_str().unwrap_or("").to_string(), p.id()));
            }
        }
        out.sort();
        out
    })
}

fn loaded(ids: &[u32]) -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .filter(|id| ids.contains(id))
        .collect()
}

/// SIGKILL gives the agent no chance to detach anything: its tcx links are owned by its file
/// descriptors (never pinned), so the kernel detaches them and unloads the programs as it
/// closes them. Checked against the same query showing both programs while the agent runs.
#[test]
fn sigkill_leaves_no_program_on_the_interface() {
    headroom_testbed::require_or_return!(
        "sigkill_leaves_no_program_on_the_interface",
        &Tap::Ebpf.needs(bed_needs())
    );
    let bed = Bed::new(1).unwrap();
    assert!(attached(&bed).is_empty(), "a fresh interface has none");
    let agent = Once::on(
        &bed,
        Tap::Ebpf,
        &["--interface", "eni0", "--duration", "60s"],
    );
    let running = attached(&bed);
    eprintln!("while the agent runs: {running:?}");
    let names: Vec<&str> = running.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["egress", "ingress"], "the agent's two programs");
    let ids: Vec<u32> = running.iter().map(|(_, id)| *id).collect();
    assert_eq!(loaded(&ids).len(), 2);
    let status = agent.kill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    headroom_testbed::wait_for("no program on eni0", Duration::from_secs(5), || {
        attached(&bed).is_empty().then_some(())
    });
    headroom_testbed::wait_for("the programs unloaded", Duration::from_secs(5), || {
        loaded(&ids).is_empty().then_some(())
    });
}

/// The node-tax benchmark's empty program (the tcx hook's own cost, subtracted from the tap's):
/// it loads, sits alone on eni0's egress hook, and goes with the object that holds it, so a
/// benchmark never leaves it behind.
#[test]
fn the_benchmarks_empty_program_attaches_alone_and_goes_when_dropped() {
    headroom_testbed::require_or_return!(
        "the_benchmarks_empty_program_attaches_alone_and_goes_when_dropped",
        &Tap::Ebpf.needs(bed_needs())
    );
    let bed = Bed::new(1).unwrap();
    assert!(attached(&bed).is_empty(), "a fresh interface has none");
    let hook = in_netns(&bed.node.name, || {
        headroom_agent::sys::ebpf::attach_baseline("eni0").unwrap()
    });
    let held = attached(&bed);
    let names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["baseline"], "the empty program only, on egress");
    let ids: Vec<u32> = held.iter().map(|(_, id)| *id).collect();
    drop(hook);
    headroom_testbed::wait_for("no program on eni0", Duration::from_secs(5), || {
        attached(&bed).is_empty().then_some(())
    });
    headroom_testbed::wait_for("the program unloaded", Duration::from_secs(5), || {
        loaded(&ids).is_empty().then_some(())
    });
}

/// The agent run as root with exactly the DaemonSet's capabilities: `auto` takes the eBPF tap
/// and counts exactly what was sent. With only CAP_NET_RAW of them, `auto` falls back to
/// AF_PACKET with one log line naming what is missing, and counts the same.
#[test]
fn auto_takes_ebpf_with_the_daemonset_capabilities_and_falls_back_without() {
    let mut needs = Tap::Ebpf.needs(bed_needs());
    needs.push(Need::Tool("setpriv"));
    headroom_testbed::require_or_return!("auto_takes_ebpf_with_the_daemonset_capabilities", &needs);
    let bed = Bed::new(1).unwrap();
    for (caps, tap, why) in [
        (
            "-all,+net_raw,+bpf,+net_admin,+perfmon,+sys_ptrace,+dac_read_search",
            "ebpf",
            None,
        ),
        (
            "-all,+net_raw,+sys_ptrace,+dac_read_search",
            "af_packet",
            Some("missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
        ),
    ] {
        let mut cmd = bed.node.command("setpriv");
        cmd.arg(format!("--bounding-set={caps}"))
            .arg("--inh-caps=-all")
            .arg("--")
            .arg(AGENT.as_str())
            .args(["once", "--format", "json", "--interface", "eni0"])
            .args(["--duration", "3s"])
            .args(NO_IMDS)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut g = Guard::spawn("headroom-agent", &mut cmd).unwrap();
        let stderr = g.stderr_until("Capturing.", None);
        let src = bed::node_ip(0);
        let sent = in_netns(&bed.node.name, move || {
            let sock = std::net::UdpSocket::bind((src.as_str(), 0)).unwrap();
            (0..200)
                .filter(|_| sock.send_to(b"tick", (bed::NTP, 123)).is_ok())
                .count() as u64
        });
        let out = g.wait(Duration::from_secs(30)).unwrap();
        let err = stderr.lock().unwrap().clone();
        assert!(out.status.success(), "{caps}: {err}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let i = iface(&report, "eni0");
        eprintln!("{caps}: tap {}, ntp {}", i["tap"], i["by_service"]["ntp"]);
        assert_eq!(i["tap"], tap, "{caps}: {err}");
        assert_eq!(u(&i["by_service"]["ntp"]["packets"]), sent, "{caps}");
        let fallback: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("Using the AF_PACKET tap"))
            .collect();
        match why {
            None => assert!(fallback.is_empty(), "{err}"),
            Some(reason) => {
                assert_eq!(fallback.len(), 1, "one line saying why: {err}");
                assert!(fallback[0].contains(reason), "{}", fallback[0]);
            }
        }
    }
}
