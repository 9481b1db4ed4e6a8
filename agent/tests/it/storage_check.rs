//! `storage-check PATH` on a real network filesystem: sshfs (FUSE) to an sshd inside the VPC
//! namespace of a bed this test creates, through a TCP proxy (in this test) that delays each direction by
//! 2 ms, against tmpfs. Ground truth: the proxy's delay (one round trip cannot take less than
//! 4 ms), the bytes the proxy carried each way (everything written and read back must cross it:
//! reads are not served from the page cache), the process's own wall time, and the export
//! directory left empty. Bad PATH: exit 64 with one line.

use crate::common::AGENT;
use headroom_testbed::bed::Bed;
use headroom_testbed::proc::Guard;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Each direction through the proxy.
const DELAY: Duration = Duration::from_millis(2);
const FILES: u64 = 100;
const FILE_BYTES: u64 = 4096;
const LARGE_MIB: u64 = 4;

fn one_line_64(args: &[&str], needle: &str) {
    let out = Command::new(AGENT.as_str()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("headroom-agent: storage-check: ") && err.contains(needle),
        "{args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn storage_check_bad_path_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.path().join("missing");
    one_line_64(
        &["storage-check", missing.to_str().unwrap()],
        "does not exist",
    );
    one_line_64(
        &["storage-check", file.to_str().unwrap()],
        "is not a directory",
    );
    one_line_64(
        &["storage-check", "/proc"],
        "cannot create a directory in '/proc'",
    );
    let d = dir.path().to_str().unwrap();
    one_line_64(&["storage-check", d, "--files", "0"], "invalid --files 0");
    one_line_64(
        &["storage-check", d, "--reference", missing.to_str().unwrap()],
        "--reference",
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing left behind"
    );
}

/// The table on a local directory: every row, and the temporary directory removed.
#[test]
fn storage_check_table_on_a_local_directory_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(AGENT.as_str())
        .args([
            "storage-check",
            dir.path().to_str().unwrap(),
            "--files",
            "20",
            "--large-mib",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "small opens/s",
        "open p50 ms",
        "read p99 ms",
        "large read MB/s",
        "20 small files of 4096 bytes",
    ] {
        assert!(text.contains(row), "{row}: {text}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary directory removed"
    );
}

/// A std socket connected from inside network namespace `ns` (a socket keeps the namespace it
/// was made in): made on a short-lived thread that alone enters the namespace.
fn connect_in(ns: &str, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on this thread only, with a namespace descriptor we hold open; the
        // thread ends right after making the socket.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })
    .join()
    .expect("connect thread")
}

/// Bytes the proxy carried: client → server, server → client.
#[derive(Default)]
struct Carried {
    up: AtomicU64,
    down: AtomicU64,
}

/// Copies `r` to `w`, each chunk sent `DELAY` after it arrived (chunks keep their order and
/// pipelining: the delay is latency, not a rate limit).
async fn delayed(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<Carried>,
    up: bool,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let c = if up { &counter.up } else { &counter.down };
            c.fetch_add(n as u64, Ordering::Relaxed);
            if tx
                .send((tokio::time::Instant::now() + DELAY, buf[..n].to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, b)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Listens on 127.0.0.1 and forwards each connection to `to` inside namespace `ns`.
fn start_proxy(
    rt: &tokio::runtime::Runtime,
    ns: String,
    to: SocketAddr,
    carried: Arc<Carried>,
) -> SocketAddr {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let (ns, carried) = (ns.clone(), carried.clone());
            tokio::spawn(async move {
                let Ok(Ok(server)) = tokio::task::spawn_blocking(move || connect_in(&ns, to)).await
                else {
                    return;
                };
                server.set_nonblocking(true).unwrap();
                let server = tokio::net::TcpStream::from_std(server).unwrap();
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(
                    delayed(cr, sw, carried.clone(), true),
                    delayed(sr, cw, carried, false)
                );
            });
        }
    });
    addr
}

/// One mount, one check, one unmount, all inside a private mount namespace (`unshare -m`): the
/// FUSE mount and the tmpfs reference exist only there and go with it.
const SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=128m headroom-ref "$REF" || exit 90
sshfs -f -o "port=$PORT,IdentityFile=$KEY,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR,ssh_command=ssh -F /dev/null" "root@127.0.0.1:$EXPORT" "$MNT" &
sshfs_pid=$!
i=0
until mountpoint -q "$MNT"; do
  i=$((i+1)); if [ $i -gt 100 ]; then kill $sshfs_pid; echo "sshfs did not mount" >&2; exit 91; fi; sleep 0.1
done
grep -q " $MNT fuse.sshfs " /proc/self/mounts || { echo "not sshfs" >&2; exit 92; }
"$AGENT" storage-check "$MNT" --reference "$REF" --files "$FILES" --large-mib "$LARGE" --format json >"$OUT"
rc=$?
fusermount3 -u "$MNT"
wait $sshfs_pid
umount "$REF"
exit $rc
"#;

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} in {v}"))
}

#[test]
fn storage_check_sshfs_through_2ms_proxy_vs_tmpfs() {
    headroom_testbed::require_or_return!(
        "storage_check_sshfs_through_2ms_proxy_vs_tmpfs",
        &headroom_testbed::root_and(&[
            "ip",
            "sshfs",
            "sshd",
            "ssh-keygen",
            "unshare",
            "fusermount3",
            "mountpoint"
        ])
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for d in ["export", "mnt", "ref"] {
        std::fs::create_dir(p(d)).unwrap();
    }
    for k in ["host_key", "client_key"] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(p(k))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::copy(p("client_key.pub"), p("authorized_keys")).unwrap();
    let config = format!(
        "ListenAddress 127.0.0.1:22\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nUsePAM no\n\
         StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
        p("host_key").display(),
        p("authorized_keys").display()
    );
    std::fs::write(p("sshd_config"), config).unwrap();
    // sshd insists on its privilege-separation directory (the package makes it at boot).
    let made_run_sshd = !Path::new("/run/sshd").exists();
    if made_run_sshd {
        std::fs::create_dir_all("/run/sshd").unwrap();
    }

    // sshd in the bed's VPC namespace; the bed also takes the testbed lock, so no other load
    // test shares the two cores while the figures are measured.
    let bed = Bed::new(1).unwrap();
    let ns = &bed.vpc;
    let sshd_path = if Path::new("/usr/sbin/sshd").exists() {
        "/usr/sbin/sshd"
    } else {
        "sshd"
    };
    let mut sshd = ns.command(sshd_path);
    sshd.args(["-D", "-e", "-f"])
        .arg(p("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let sshd = Guard::spawn("sshd", &mut sshd).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let carried = Arc::new(Carried::default());
    let to: SocketAddr = "127.0.0.1:22".parse().unwrap();
    headroom_testbed::wait_for(
        "sshd listening in its namespace",
        Duration::from_secs(10),
        || connect_in(&ns.name, to).ok(),
    );
    let proxy = start_proxy(&rt, ns.name.clone(), to, carried.clone());

    let mut runs = Vec::new();
    for run in 0..3 {
        let out_file = p(&format!("run{run}.json"));
        let (up0, down0) = (
            carried.up.load(Ordering::Relaxed),
            carried.down.load(Ordering::Relaxed),
        );
        let t = Instant::now();
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", SCRIPT])
            .env("REF", p("ref"))
            .env("MNT", p("mnt"))
            .env("EXPORT", p("export"))
            .env("KEY", p("client_key"))
            .env("PORT", proxy.port().to_string())
            .env("AGENT", AGENT.as_str())
            .env("FILES", FILES.to_string())
            .env("LARGE", LARGE_MIB.to_string())
            .env("OUT", &out_file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "run {run}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let up = carried.up.load(Ordering::Relaxed) - up0;
        let down = carried.down.load(Ordering::Relaxed) - down0;
        let v: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
        eprintln!("run {run}: wall {wall:.2} s, proxy up {up} B down {down} B\n{v}");
        assert_eq!(v["schema"], "headroom.storage_check/v1");
        assert_eq!(v["target"]["filesystem"]["fstype"], "fuse.sshfs", "{v}");
        assert_eq!(v["reference"]["filesystem"]["fstype"], "tmpfs", "{v}");
        assert_eq!(
            std::fs::read_dir(p("export")).unwrap().count(),
            0,
            "run {run} left files behind"
        );

        // Everything written crossed the proxy, and every byte read back came through it too
        // (not from the page cache). Upper bound: at most 25 % + 1 MiB of SSH/SFTP framing and
        // session set-up on top (each read of the data twice would break it).
        let data = FILES * FILE_BYTES + (LARGE_MIB << 20);
        assert!(
            up >= data && up <= data + data / 4 + (1 << 20),
            "up {up} vs data {data}"
        );
        assert!(
            down >= data && down <= data + data / 4 + (1 << 20),
            "down {down} vs data {data}"
        );

        let t = &v["target"]["small_files"];
        // Physics: an open and a read each need at least one round trip through the proxy.
        let rtt_ms = 2.0 * DELAY.as_secs_f64() * 1e3;
        assert!(f(t, &["open_ms", "p50"]) >= rtt_ms, "{t}");
        assert!(f(t, &["read_ms", "p50"]) >= rtt_ms, "{t}");
        // The read phase alone (FILES opens) fits in the process's wall time, and cannot be
        // faster than two round trips per file.
        let opens = f(t, &["opens_per_s"]);
        assert!(
            FILES as f64 / opens < wall,
            "opens/s {opens} vs wall {wall}"
        );
        assert!(
            opens <= 1000.0 / (2.0 * rtt_ms),
            "opens/s {opens} above two round trips per file"
        );
        // tmpfs opens at least 10× faster, from the reference's own figures and in the ratio.
        let r = &v["reference"]["small_files"];
        assert!(f(r, &["opens_per_s"]) >= 10.0 * opens, "{r} vs {t}");
        assert!(f(&v, &["ratio", "opens_per_s"]) >= 10.0, "{v}");
        runs.push(v);
    }

    // Stable: each per-file latency median within ±20 % of its median over the three runs.
    // The rates (opens/s, creates/s) are checked ≥ 10× slower in every run above but not for
    // stability: they are means, and on this shared two-core machine other sessions' builds
    // stretched every file of one whole run (p99 65 ms against 18 ms) and moved them by 30 %,
    // while the medians stayed within 2 %.
    for fig in [
        &["open_ms", "p50"][..],
        &["read_ms", "p50"],
        &["create_ms", "p50"],
    ] {
        let mut xs: Vec<f64> = runs
            .iter()
            .map(|v| f(&v["target"]["small_files"], fig))
            .collect();
        xs.sort_by(f64::total_cmp);
        let median = xs[1];
        for x in &xs {
            assert!(
                (x - median).abs() <= 0.2 * median,
                "{fig:?} not stable: {xs:?}"
            );
        }
    }

    drop(rt);
    drop(sshd);
    drop(bed);
    if made_run_sshd {
        let _ = std::fs::remove_dir("/run/sshd");
    }
    // Nothing mounted remains (the mounts lived in the unshared namespaces only).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.path().to_str().unwrap()), "{mounts}");
}
