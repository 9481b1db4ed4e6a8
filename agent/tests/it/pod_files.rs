//! Hostile pods' resolv.conf files, read by the agent through `/proc/<pid>/root`: real
//! processes, each in its own mount namespace and chrooted into its own pod root (the host's
//! /usr bind-mounted inside for `sleep`), whose `/etc/resolv.conf` is a symlink to /dev/zero,
//! a FIFO, an absolute symlink aimed at a host file, or 10 MB. The agent's read of every pod's
//! search list must return promptly, leave those pods out, and never read the host's file.
//! Needs root; skips with a reason outside CI, fails in CI.

use headroom_agent::sources::dns::search::from_proc;
use headroom_agent::sys::procfs::ProcRoot;
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A process chrooted into `root` in a private mount namespace; `setup` runs inside the new
/// namespace first (its mounts vanish with the process).
fn pod(root: &Path, setup: &str) -> Guard {
    for d in ["usr", "etc", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let _ = std::os::unix::fs::symlink(t, root.join(l));
    }
    let r = root.display();
    let script =
        format!("set -e; mount --bind /usr {r}/usr; {setup}; exec chroot {r} /usr/bin/sleep 60");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let g = Guard::spawn("pod", &mut cmd).unwrap();
    // Ready once the process is chrooted: `chroot` execs sleep only after chroot(2). (Its
    // `/proc/<pid>/root` link is no test: read from inside another chroot, as in
    // scripts/fresh-check.sh, it names the path from the machine's root, not from ours.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmdline = format!("/proc/{}/cmdline", g.pid());
    loop {
        if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"/usr/bin/sleep\0")) {
            break;
        }
        assert!(Instant::now() < deadline, "pod process did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

#[test]
fn hostile_resolv_conf_files_are_left_out_promptly() {
    if !headroom_testbed::require(
        "hostile_resolv_conf_files_are_left_out_promptly",
        &[
            Need::Root,
            Need::Tool("unshare"),
            Need::Tool("chroot"),
            Need::Tool("mount"),
        ],
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // The host's file a pod aims its absolute symlink at, and the same path inside that pod.
    let host = t.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("resolv.conf"), "search host.secret.example\n").unwrap();

    let zero = t.path().join("zero");
    std::fs::create_dir_all(zero.join("etc")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("etc/resolv.conf")).unwrap();
    std::fs::create_dir_all(zero.join("dev")).unwrap();
    std::fs::write(zero.join("dev/zero"), "").unwrap();
    let _zero = pod(
        &zero,
        &format!("mount --bind /dev/zero {}/dev/zero", zero.display()),
    );

    let fifo = t.path().join("fifo");
    std::fs::create_dir_all(fifo.join("etc")).unwrap();
    let _fifo = pod(&fifo, &format!("mkfifo {}/etc/resolv.conf", fifo.display()));

    let link = t.path().join("link");
    let inside = link.join(host.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("resolv.conf"), "search inside.pod.example\n").unwrap();
    std::fs::create_dir_all(link.join("etc")).unwrap();
    std::os::unix::fs::symlink(host.join("resolv.conf"), link.join("etc/resolv.conf")).unwrap();
    let _link = pod(&link, "true");

    let big = t.path().join("big");
    std::fs::create_dir_all(big.join("etc")).unwrap();
    let mut text = "# padding padding padding padding padding padding padding\n".repeat(180_000);
    text.push_str("search big.example\n");
    assert!(text.len() >= 10_000_000);
    std::fs::write(big.join("etc/resolv.conf"), &text).unwrap();
    let _big = pod(&big, "true");

    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(from_proc(&ProcRoot::new("/proc")));
    });
    let found = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("reading the pods' resolv.conf files must not hang (FIFO, /dev/zero)");
    let took = start.elapsed();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("")
        .to_string();
    eprintln!("from_proc over every process took {took:?} ({hwm}): {found:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        found.contains(&"inside.pod.example".to_string()),
        "the symlinked pod's own file resolves inside its root: {found:?}"
    );
    assert!(
        !found.contains(&"host.secret.example".to_string()),
        "read the host's file through a pod's symlink: {found:?}"
    );
    assert!(
        !found.contains(&"big.example".to_string()),
        "read past 64 KiB of a 10 MB file: {found:?}"
    );
}
