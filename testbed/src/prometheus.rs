//! A real Prometheus (Debian's) in a bed's namespace, as the rule, TLS-scrape and dashboard
//! tests run it: the caller's config file, its data under the caller's directory, answering on
//! `listen` once `/-/ready` says so; stopped when the guard goes.

use crate::netns::Netns;
use crate::proc::Guard;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

pub fn start(ns: &Netns, config: &Path, data: &Path, listen: &str) -> Guard {
    let mut cmd = ns.command("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard::spawn("prometheus", &mut cmd).unwrap();
    crate::scrape::wait_ok(
        ns,
        &format!("http://{listen}/-/ready"),
        "prometheus",
        Duration::from_secs(30),
    );
    guard
}
