//! Bad input and missing privilege: one line naming the problem and the fix, exit 64 for bad
//! usage and 77 for missing privilege, never a panic.

use crate::common::{AGENT, NO_IMDS};
use std::process::Command;

fn fails(args: &[&str], code: i32, needle: &str) {
    let out = Command::new(AGENT.as_str()).args(args).output().unwrap();
    check(out, code, needle, args);
}

fn check(out: std::process::Output, code: i32, needle: &str, what: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line for {what:?}: {err}"
    );
    assert!(err.starts_with("headroom-agent: "), "{err}");
    assert!(
        err.contains(needle),
        "{what:?}: expected '{needle}' in: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout for {what:?}");
}

#[test]
fn usage_errors_exit_64_with_one_line() {
    fails(
        &["once", "--duration", "abc"],
        64,
        "invalid --duration 'abc'",
    );
    fails(&["once", "--duration", "500ms"], 64, "between 1s");
    fails(&["once", "--format", "xml"], 64, "(see --help)");
    fails(
        &["once", "--resolver", "10.0.0.300"],
        64,
        "invalid --resolver '10.0.0.300'",
    );
    fails(
        &["once", "--interface", "eth["],
        64,
        "invalid --interface glob 'eth['",
    );
    fails(
        &["once", "--metrics-listen", "nowhere"],
        64,
        "invalid --metrics-listen",
    );
    fails(&["frobnicate"], 64, "(see --help)");
    fails(
        &["once", "--config", "/nonexistent/agent.toml"],
        64,
        "cannot read config file /nonexistent/agent.toml",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "interfacez = [\"eth0\"]\n").unwrap();
    fails(
        &["once", "--config", cfg.to_str().unwrap()],
        64,
        "unknown field `interfacez`",
    );
    fails(
        &["once", "--interface", "nosuch0", "--duration", "1s"],
        64,
        "unknown interface 'nosuch0'",
    );
    fails(
        &["once", "--interface", "nomatch*", "--duration", "1s"],
        64,
        "no interface matches",
    );
}

#[test]
fn help_and_version_exit_0() {
    for a in [["--help"], ["--version"]] {
        let out = Command::new(AGENT.as_str()).args(a).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}

/// Without the capabilities of any tap (as root with them dropped, and as an unprivileged user)
/// the agent says what to grant, exit 77: CAP_NET_RAW for AF_PACKET (`--tap af_packet`, and
/// `auto` when the eBPF tap is not possible either), CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON for
/// the eBPF tap (`--tap ebpf`: without CAP_PERFMON the verifier refuses the program).
#[test]
fn missing_cap_net_raw_exits_77() {
    headroom_testbed::require_or_return!(
        "missing_cap_net_raw_exits_77",
        &headroom_testbed::root_and(&["setpriv"])
    );
    // The binary must be reachable for an unprivileged user: a copy in a directory anyone may
    // enter (the build's target dir may be under /root, which nobody cannot reach).
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("headroom-agent");
    std::fs::copy(AGENT.as_str(), &agent).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let agent = agent.to_str().unwrap();
    let run = |pre: &[&str], tap: &str| {
        let mut c = Command::new("setpriv");
        c.args(pre)
            .args([
                "--",
                agent,
                "once",
                "--interface",
                "lo",
                "--duration",
                "1s",
                "--tap",
                tap,
            ])
            .args(NO_IMDS);
        c.output().unwrap()
    };
    let out = run(
        &["--bounding-set=-net_raw", "--inh-caps=-net_raw"],
        "af_packet",
    );
    check(out, 77, "grant CAP_NET_RAW", &["root without CAP_NET_RAW"]);
    let none = "-net_raw,-bpf,-perfmon,-sys_admin";
    let out = run(
        &[
            &format!("--bounding-set={none}"),
            &format!("--inh-caps={none}"),
        ],
        "auto",
    );
    check(
        out,
        77,
        "grant CAP_NET_RAW (capabilities: add NET_RAW), or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
        &["auto, root without CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"],
    );
    let (major, minor) = headroom_testbed::kernel().0;
    if (major, minor) >= (6, 6) {
        // CAP_SYS_ADMIN would stand in for CAP_PERFMON: drop both.
        let out = run(
            &[
                "--bounding-set=-perfmon,-sys_admin",
                "--inh-caps=-perfmon,-sys_admin",
            ],
            "ebpf",
        );
        check(
            out,
            77,
            "grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
            &["ebpf, root without CAP_PERFMON"],
        );
    }
    let out = run(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        "auto",
    );
    check(out, 77, "grant CAP_NET_RAW", &["user nobody"]);
}
