//! A Passenger core in a pod: its app groups read from the core's API socket, and bad instances
//! (garbage answers, silence, huge or FIFO files, links out of the root) skipped in bounded time.

use super::*;

/// What a fixture core's API socket does with a request.
#[derive(Clone, Copy)]
enum Serve {
    /// Answers 200 with this pool.xml.
    Pool(&'static str),
    /// Answers these bytes.
    Bytes(&'static [u8]),
    /// Reads the request and says nothing for 2 s.
    Silent,
}

const POOL_XML: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\" ?>\n<info version=\"3\"><supergroups><supergroup><name>/srv/app</name><group default=\"true\"><name>/srv/app</name><get_wait_list_size>1</get_wait_list_size><processes><process><pid>301</pid><concurrency>1</concurrency><sessions>1</sessions></process><process><pid>302</pid><concurrency>1</concurrency><sessions>1</sessions></process><process><pid>303</pid><concurrency>1</concurrency><sessions>0</sessions></process></processes></group></supergroup></supergroups></info>";

/// Serves `socket` for 4 s (bounded); returns how many connections it accepted.
fn core_api(socket: &Path, serve: Serve) -> Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{Read, Write};
    let l = std::os::unix::net::UnixListener::bind(socket).unwrap();
    l.set_nonblocking(true).unwrap();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        while std::time::Instant::now() < deadline {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&b[..k]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            // ro_admin:pw, as passenger-status sends it.
            assert!(
                text.contains("Authorization: Basic cm9fYWRtaW46cHc="),
                "{text}"
            );
            match serve {
                Serve::Pool(xml) => {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                }
                Serve::Bytes(b) => {
                    let _ = c.write_all(b);
                }
                Serve::Silent => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    });
    n
}

/// The gunicorn pod plus a Passenger core (pid 300, TCP listener 5300) whose root is
/// `root` with its instance in `/reg/passenger.abc` (core.pid, properties, password), the
/// registry named in its environment.
fn passenger_pod() -> (Fx, Table, PathBuf) {
    let (fx, table) = gunicorn_pod();
    let (cg, _) = systemd_cgroup();
    fx.process(300, 1, "PassengerAgent", NS, &[5300], &cg);
    let d = fx.pid_dir(300);
    std::fs::write(d.join("cmdline"), "Passenger core\0\0\0").unwrap();
    std::fs::write(
        d.join("environ"),
        "HOME=/\0PASSENGER_INSTANCE_REGISTRY_DIR=/reg\0",
    )
    .unwrap();
    std::fs::write(d.join("status"), "Name:\tPassengerAgent\nNSpid:\t300\n").unwrap();
    let root = fx.dir.path().join("podroot");
    let inst = root.join("reg/passenger.abc");
    std::fs::create_dir_all(inst.join("agents.s")).unwrap();
    std::fs::write(inst.join("core.pid"), "300").unwrap();
    std::fs::write(
        inst.join("properties.json"),
        r#"{"instance_dir":{"major_version":4,"minor_version":0},"name":"abc","watchdog_pid":299}"#,
    )
    .unwrap();
    std::fs::write(inst.join("read_only_admin_password.txt"), "pw").unwrap();
    symlink(&root, d.join("root")).unwrap();
    table
        .lock()
        .unwrap()
        .get_mut(&NS)
        .unwrap()
        .push(listen("127.0.0.1:3000", 5300, 0, 128));
    (fx, table, inst)
}

#[test]
fn a_passenger_core_reports_its_app_groups() {
    let (fx, table, inst) = passenger_pod();
    let accepted = core_api(&inst.join("agents.s/core_api"), Serve::Pool(POOL_XML));
    let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
    for _ in 0..5 {
        s.sample();
    }
    // Read once: the samples in between reuse it.
    assert_eq!((s.cost.passenger_reads, s.cost.passenger_skipped), (1, 0));
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    let ls = s.cut(1.0);
    let g = ls
        .iter()
        .find(|l| l.address == "/srv/app")
        .unwrap_or_else(|| panic!("{ls:#?}"));
    assert_eq!((g.port, g.process.as_str()), (None, "passenger"));
    assert_eq!(
        (g.workers, g.capacity, g.threads, g.threads_known),
        (3, 3, 1, true)
    );
    assert_eq!((g.busy_mean, g.busy_max, g.queue_max), (2.0, 2, 1));
    assert_eq!(g.worker_pids, [301, 302, 303]);
    assert_eq!(g.pod.as_ref().map(|p| p.uid.as_str()), Some(UID));
    let core = ls.iter().find(|l| l.port == Some(3000)).unwrap();
    assert_eq!(core.model, model::Model::EventLoop);
    assert!(ls.iter().any(|l| l.port == Some(8000) && l.busy_max == 2));
}

#[test]
fn bad_passenger_instances_are_counted_skips_in_bounded_time() {
    type Spoil = fn(&Path, &Path);
    let cases: [(&str, Serve, Spoil); 6] = [
        (
            "garbage",
            Serve::Bytes(b"\x00\xffnot http at all\r\n\r\n"),
            |_, _| {},
        ),
        (
            "not XML",
            Serve::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<html"),
            |_, _| {},
        ),
        ("silent", Serve::Silent, |_, _| {}),
        ("huge properties", Serve::Pool(POOL_XML), |inst, _| {
            std::fs::write(inst.join("properties.json"), vec![b' '; 1 << 20]).unwrap()
        }),
        ("FIFO properties", Serve::Pool(POOL_XML), |inst, _| {
            let p = inst.join("properties.json");
            std::fs::remove_file(&p).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        }),
        (
            "instance dir linked out of the root",
            Serve::Pool(POOL_XML),
            |inst, host| {
                // The real instance moves to the host side; the pod's name for it points there.
                std::fs::rename(inst, host.join("passenger.abc")).unwrap();
                symlink(host.join("passenger.abc"), inst).unwrap();
            },
        ),
    ];
    for (what, serve, spoil) in cases {
        let (fx, table, inst) = passenger_pod();
        let host = fx.dir.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        let accepted = core_api(&inst.join("agents.s/core_api"), serve);
        spoil(&inst, &host);
        let mut s = Sampler::with_diag(&fx.spec(), FakeDiag(table));
        let t = std::time::Instant::now();
        s.sample();
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "{what}: a sample took {took:?}"
        );
        for _ in 0..3 {
            s.sample();
        }
        assert_eq!(
            (s.cost.passenger_reads, s.cost.passenger_skipped),
            (1, 1),
            "{what}: one counted skip, not retried at once"
        );
        if what.contains("out of the root") || what.contains("properties") {
            let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(n, 0, "{what}: the socket was never reached");
        }
        let ls = s.cut(1.0);
        assert!(
            !ls.iter().any(|l| l.process == "passenger"),
            "{what}: {ls:#?}"
        );
        // Everything else is measured as before.
        let g = ls.iter().find(|l| l.port == Some(8000)).unwrap();
        assert_eq!((g.workers, g.busy_max), (4, 2), "{what}");
    }
}
