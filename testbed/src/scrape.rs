//! Reading what a server under test exposes: HTTP GETs from inside a namespace, Prometheus
//! samples, and `promtool check metrics`.

use crate::netns::Netns;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `curl` from inside `ns`: (HTTP status, body); status 0 when nothing answered within 5 s.
pub fn get(ns: &Netns, url: &str) -> (u32, String) {
    let out = ns
        .command("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Polls `url` from inside `ns` until it answers 200; panics naming `what` after `within`.
pub fn wait_ok(ns: &Netns, url: &str, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while get(ns, url).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{what} did not answer {url} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Value of the first sample line that starts with `prefix` (`name{labels}`).
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Panics with promtool's words unless `promtool check metrics` accepts the exposition.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut c = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_sample() {
        let t = "# TYPE x gauge\nx{a=\"1\"} 2.5\nx{a=\"2\"} 3\n";
        assert_eq!(super::sample(t, "x{a=\"2\"}"), Some(3.0));
        assert_eq!(super::sample(t, "y"), None);
    }
}
