//! Test support for headroom: real parts on this machine (network namespaces with veth pairs as
//! ENIs, unbound, dnsperf, tcpdump) and, later, fakes that speak the real protocol for what cannot
//! run here (IMDS, the Kubernetes API server, the kubelet).
//!
//! Every test that needs root or tools calls [`require`]: outside CI it prints why it skips and
//! returns false; in CI (`CI=true`) it panics, so a measurement test can never pass by skipping.

pub mod apiserver;
pub mod bed;
pub mod bins;
pub mod cgroup;
pub mod cluster;
pub mod http;
pub mod imds;
pub mod load;
pub mod netns;
pub mod pcap;
pub mod prefork;
pub mod proc;
pub mod prometheus;
pub mod scrape;
pub mod tls;

use std::path::Path;
use std::time::{Duration, Instant};

/// What a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN for namespaces).
    Root,
    /// A program on PATH.
    Tool(&'static str),
    /// A kernel at least this version (major, minor), e.g. (6, 6) for tcx links.
    Kernel(u32, u32),
}

/// The running kernel's (major, minor) and its full release string.
pub fn kernel() -> ((u32, u32), String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut n = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse().ok());
    ((n.next().unwrap_or(0), n.next().unwrap_or(0)), release)
}

/// [`require`], or return from the calling test: a bed test's first line.
#[macro_export]
macro_rules! require_or_return {
    ($test:expr, $needs:expr) => {
        if !$crate::require($test, $needs) {
            return;
        }
    };
}

/// Root plus these programs: what most bed tests need, in one line.
pub fn root_and(tools: &[&'static str]) -> Vec<Need> {
    std::iter::once(Need::Root)
        .chain(tools.iter().map(|t| Need::Tool(t)))
        .collect()
}

/// Polls `f` every 200 ms until it returns `Some`, or panics naming `what` after `within`: a
/// test's "wait until the system under test shows it".
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new(tool).is_file()
}

/// True when every need is met. Otherwise: in CI, panics naming what is missing; elsewhere,
/// prints `SKIP test: reason` and returns false.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let mut missing = Vec::new();
    for n in needs {
        match n {
            // SAFETY-free: geteuid has no preconditions.
            Need::Root => {
                if unsafe { libc::geteuid() } != 0 {
                    missing.push("root (network namespaces, packet sockets)".to_string());
                }
            }
            Need::Tool(t) => {
                if !on_path(t) {
                    missing.push(format!("{t} (install with scripts/test.sh or apt-get)"));
                }
            }
            Need::Kernel(major, minor) => {
                let (v, release) = kernel();
                if v < (*major, *minor) {
                    missing.push(format!(
                        "Linux {major}.{minor} or later (this is {release})"
                    ));
                }
            }
        }
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test}: needs {}", missing.join(", "));
    if in_ci() {
        panic!("CI=true but this test cannot run: {reason}");
    }
    eprintln!("SKIP {reason}");
    false
}
