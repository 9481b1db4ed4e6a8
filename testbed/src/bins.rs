//! The workspace's binaries for end-to-end tests, found through cargo rather than by guessing
//! paths: `cargo build --bin NAME --message-format=json` reports where the executable is, in this
//! test's own target dir and profile (a no-op when `cargo test --workspace` built it already).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The executable of workspace binary `name` (package of the same name), built if needed.
/// Panics with cargo's own message when it cannot be built: an end-to-end test cannot run then.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let p = build(name);
    built.insert(name.to_string(), p.clone());
    p
}

fn build(name: &str) -> PathBuf {
    // The test executable is target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test runs from target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--message-format=json", "-p", name, "--bin", name])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build -p {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built {name} but named no executable"))
}

/// The workspace root (this crate lives in `<root>/testbed`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed sits in the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_a_workspace_binary_through_cargo() {
        let p = super::path("headroom-collector");
        assert!(p.is_file(), "{}", p.display());
        assert!(p.ends_with("headroom-collector"));
        // Memoized: the second call builds nothing.
        let t = std::time::Instant::now();
        assert_eq!(super::path("headroom-collector"), p);
        assert!(t.elapsed() < std::time::Duration::from_millis(50));
    }
}
