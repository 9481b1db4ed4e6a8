//! Runs the real agent binary inside a bed's node namespace.
#![allow(dead_code)]

use headroom_testbed::bed::Bed;
use headroom_testbed::proc::Guard;
use headroom_testbed::Need;
use std::process::Stdio;
use std::time::Duration;

/// The agent binary: cargo's own path in the agent's tests, else built through cargo (e2e).
pub static AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    option_env!("CARGO_BIN_EXE_headroom-agent")
        .map(String::from)
        .unwrap_or_else(|| {
            headroom_testbed::bins::path("headroom-agent")
                .display()
                .to_string()
        })
});

/// For beds without a fake IMDS: the agent's IMDS attempts go to a closed port on the
/// namespace's loopback instead of 169.254.169.254 through eni0, where they would count.
pub const NO_IMDS: [&str; 2] = ["--imds-endpoint", "http://127.0.0.1:9"];

/// Root, iproute2, unbound, dnsperf, dig, tcpdump.
pub fn bed_needs() -> Vec<Need> {
    headroom_testbed::root_and(&["ip", "unbound", "dnsperf", "dig", "tcpdump"])
}

/// The agent's two taps: every capture test runs on each (`each_tap!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    Ebpf,
    AfPacket,
}

impl Tap {
    /// The `--tap` value, also the report's `tap`.
    pub fn name(self) -> &'static str {
        match self {
            Tap::Ebpf => "ebpf",
            Tap::AfPacket => "af_packet",
        }
    }

    /// `--tap NAME`, for an agent's command line.
    pub fn args(self) -> [&'static str; 2] {
        ["--tap", self.name()]
    }

    /// The bed's needs plus what this tap needs (tcx links: Linux 6.6).
    pub fn needs(self, mut needs: Vec<Need>) -> Vec<Need> {
        if self == Tap::Ebpf {
            needs.push(Need::Kernel(6, 6));
        }
        needs
    }

    /// Checks the report's interface says this tap counted it.
    pub fn check(self, iface: &serde_json::Value) {
        assert_eq!(
            iface["tap"],
            self.name(),
            "the tap the test asked for: {iface}"
        );
    }
}

/// Capture tests run once per tap: for each `fn name(tap: Tap)` listed, `each_tap!(name)` makes
/// the tests `name::ebpf` and `name::af_packet`.
#[macro_export]
macro_rules! each_tap {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn ebpf() {
                super::$name($crate::common::Tap::Ebpf)
            }

            #[test]
            fn af_packet() {
                super::$name($crate::common::Tap::AfPacket)
            }
        }
    )+};
}

/// A running `headroom-agent once`, started and capturing.
/// The agent, and its log so far (stderr, read on a thread).
pub struct Once(Guard, std::sync::Arc<std::sync::Mutex<String>>);

impl Once {
    /// Starts `once --format json ARGS` in the node namespace and waits until it captures.
    pub fn start(bed: &Bed, args: &[&str]) -> Once {
        Once::spawn(bed, None, args)
    }

    /// [`Once::start`] on the given tap.
    pub fn on(bed: &Bed, tap: Tap, args: &[&str]) -> Once {
        Once::spawn(bed, Some(tap), args)
    }

    fn spawn(bed: &Bed, tap: Option<Tap>, args: &[&str]) -> Once {
        let mut cmd = bed.node.command(&AGENT);
        cmd.args(["once", "--format", "json"]).args(args);
        if let Some(t) = tap {
            cmd.args(t.args());
        }
        if !args.contains(&"--imds-endpoint") {
            cmd.args(NO_IMDS);
        }
        Once::command(cmd)
    }

    /// Starts a prepared `… once --format json …` command line (in whatever namespace it
    /// enters) and waits until it captures.
    pub fn command(mut cmd: std::process::Command) -> Once {
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut g = Guard::spawn("headroom-agent", &mut cmd).unwrap();
        let log = g.stderr_until("Capturing.", None);
        Once(g, log)
    }

    /// Waits until a line of the agent's log contains every one of `parts` (an interface the
    /// rescan picked up, say), instead of sleeping for a guess; panics after `within`.
    pub fn wait_log(&self, parts: &[&str], within: Duration) {
        headroom_testbed::wait_for(&format!("an agent log line with {parts:?}"), within, || {
            self.1
                .lock()
                .unwrap()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
                .then_some(())
        });
    }

    /// Sends `sig` to the agent.
    pub fn signal(&self, sig: i32) {
        self.0.signal(sig);
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// SIGKILL, and how it ended.
    pub fn kill(self) -> std::process::ExitStatus {
        self.0.signal(libc::SIGKILL);
        self.0.wait(Duration::from_secs(10)).unwrap().status
    }

    /// Waits for the report.
    pub fn report(self) -> serde_json::Value {
        let out = self.0.wait(Duration::from_secs(120)).unwrap();
        assert!(out.status.success(), "agent failed: {:?}", out.status);
        serde_json::from_slice(&out.stdout).expect("agent prints JSON")
    }
}

/// The interface named `name` in a report.
pub fn iface<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no interface {name} in report: {report}"))
}

pub fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// gunicorn with 2 sync workers serving `wsgi` (a module `wsgiapp` with `app`) at
/// `ip:8080` in the pod namespace `pod`; returns once it answers on the node.
pub fn start_gunicorn(
    bed: &Bed,
    pod: &headroom_testbed::netns::Netns,
    wsgi: &str,
    ip: &str,
) -> Guard {
    std::fs::write(bed.path("wsgiapp.py"), wsgi).unwrap();
    let mut cmd = pod.command("gunicorn");
    cmd.args(["--workers", "2", "--worker-class", "sync"])
        .args(["--bind", &format!("{ip}:8080")])
        .arg("--chdir")
        .arg(bed.dir.path())
        .arg("wsgiapp:app")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let g = Guard::spawn("gunicorn", &mut cmd).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let up = bed
            .node
            .command("curl")
            .args(["-sf", "--max-time", "1", &format!("http://{ip}:8080/")])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            return g;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gunicorn did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod network namespace and its inode (the report's `netns`).
pub fn pod_netns(name: &str) -> (headroom_testbed::netns::Netns, u64) {
    use std::os::unix::fs::MetadataExt;
    let ns = headroom_testbed::netns::Netns::new(name).unwrap();
    let ino = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .unwrap()
        .ino();
    (ns, ino)
}

/// The listener at `address` (a unix path, a Passenger group) in namespace `netns`.
pub fn listener_at(report: &serde_json::Value, address: &str, netns: u64) -> serde_json::Value {
    report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == address && l["netns"] == netns)
        .cloned()
        .unwrap_or_else(|| panic!("no listener {address} in netns {netns}: {report:#}"))
}

/// A listener's `worker_pids`.
pub fn worker_pid_set(l: &serde_json::Value) -> std::collections::BTreeSet<i32> {
    l["worker_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect()
}

/// The front's TCP listener on 8080 in `netns` (nginx, the Passenger core): an event loop
/// holding the test's `n` connections, no busy workers.
pub fn event_loop_front(report: &serde_json::Value, netns: u64, n: usize) -> serde_json::Value {
    let front = report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == 8080 && l["netns"] == netns)
        .cloned()
        .unwrap_or_else(|| panic!("no listener on 8080 in netns {netns}: {report:#}"));
    assert_eq!(front["model"], "event_loop", "{front}");
    assert_eq!(u(&front["connections_max"]), n as u64, "{front}");
    assert_eq!(u(&front["busy_max"]), 0, "{front}");
    front
}

/// Runs `f` on a thread moved into the network namespace `ns` (one the test created), for
/// sockets and kernel queries inside the bed.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    headroom_testbed::netns::in_netns(ns, f).unwrap()
}

/// A DNS query (A, recursion desired) for `name` with `id`, as a resolver receives it.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
