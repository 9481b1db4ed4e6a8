//! The deployment as a user applies it: every overlay renders with `kubectl kustomize`, validates
//! against the Kubernetes 1.32 schemas, passes checkov (skips are justified in the manifests),
//! the base matches its golden snapshot, the Dockerfiles build (or, with no Docker engine here,
//! pass hadolint), and every flag and config field is documented and in the ConfigMap.

use headroom_testbed::{require, Need};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const TARGETS: [&str; 4] = [
    "deploy/base",
    "deploy/overlays/eks",
    "deploy/overlays/prometheus",
    "deploy/overlays/otel-collector",
];

fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join(dir))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rendered_file(dir: &str, text: &str) -> (tempfile_dir::Dir, PathBuf) {
    let d = tempfile_dir::Dir::new();
    let p = d.0.join(format!("{}.yaml", dir.replace('/', "-")));
    std::fs::write(&p, text).unwrap();
    (d, p)
}

/// A throwaway directory without pulling a crate for it.
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "headroom-deploy-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn every_overlay_renders_and_validates_against_kubernetes_1_32() {
    if !require(
        "every_overlay_renders_and_validates_against_kubernetes_1_32",
        &[Need::Tool("kubectl"), Need::Tool("kubernetes-validate")],
    ) {
        return;
    }
    for dir in TARGETS {
        let text = render(dir);
        assert!(
            text.contains("kind: DaemonSet") && text.contains("kind: Deployment"),
            "{dir}"
        );
        let (_d, file) = rendered_file(dir, &text);
        // Prometheus Operator kinds have no schema in Kubernetes itself: checked for shape by
        // kustomize only, the rest strictly.
        let out = Command::new("kubernetes-validate")
            .args(["-k", "1.32.0", "--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubernetes-validate {dir}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn checkov_passes_with_every_skip_justified() {
    if !require(
        "checkov_passes_with_every_skip_justified",
        &[Need::Tool("kubectl"), Need::Tool("checkov")],
    ) {
        return;
    }
    for dir in TARGETS {
        let text = render(dir);
        // Every skip names its reason: "CKV_K8S_nn=why".
        for line in text.lines().filter(|l| l.contains("checkov.io/skip")) {
            let reason = line
                .split_once('=')
                .map(|(_, r)| r.trim_matches('"').trim());
            assert!(
                reason.is_some_and(|r| r.len() > 20),
                "skip without a reason: {line}"
            );
        }
        let (_d, file) = rendered_file(dir, &text);
        // --skip-download and BC_SKIP_MAPPING: no calls to checkov's cloud service; this
        // machine (and CI) reaches only package registries.
        let out = Command::new("checkov")
            .env("BC_SKIP_MAPPING", "TRUE")
            .args([
                "--skip-download",
                "--framework",
                "kubernetes",
                "--quiet",
                "--compact",
                "-f",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "checkov {dir}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The rendered base is what users apply: any change to it shows up here for review.
/// Regenerate with UPDATE_GOLDEN=1.
#[test]
fn base_matches_its_golden_snapshot() {
    if !require("base_matches_its_golden_snapshot", &[Need::Tool("kubectl")]) {
        return;
    }
    let golden = root().join("deploy/tests/golden/base.yaml");
    let text = render("deploy/base");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file; run with UPDATE_GOLDEN=1");
    assert!(
        text == want,
        "rendered base differs from deploy/tests/golden/base.yaml; review and rerun with UPDATE_GOLDEN=1"
    );
}

#[test]
fn dockerfiles_build_or_lint() {
    let docker = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if docker {
        for c in ["agent", "collector"] {
            let st = Command::new("docker")
                .args(["build", "-f", &format!("deploy/docker/{c}.Dockerfile"), "."])
                .current_dir(root())
                .status()
                .unwrap();
            assert!(st.success(), "docker build {c}");
        }
        return;
    }
    eprintln!("NOTE dockerfiles_build_or_lint: no Docker engine here (docker info failed), so the images are not built; linting the Dockerfiles with hadolint instead");
    if !require("dockerfiles_build_or_lint", &[Need::Tool("hadolint")]) {
        return;
    }
    for c in ["agent", "collector"] {
        let out = Command::new("hadolint")
            .arg(root().join(format!("deploy/docker/{c}.Dockerfile")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hadolint {c}.Dockerfile:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Every config field of the agent (from its own default config) is set, with a comment, in the
/// ConfigMap source and explained in docs/operating.md; every command-line flag is documented.
#[test]
fn every_agent_flag_and_field_is_documented_and_in_the_configmap() {
    let defaults = toml::Value::try_from(headroom_agent::config::Config::default()).unwrap();
    let fields: Vec<String> = defaults.as_table().unwrap().keys().cloned().collect();
    // node_name has no default (None), so it is not serialized: add it by name.
    let fields: Vec<String> = fields
        .into_iter()
        .chain(["node_name".to_string()])
        .collect();
    let configmap = std::fs::read_to_string(root().join("deploy/base/agent.toml")).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    // The ConfigMap parses as the agent's config (unknown fields would be rejected).
    let parsed: headroom_agent::config::Config = toml::from_str(&configmap).unwrap();
    assert_eq!(parsed.resolvers, ["auto"]);
    for f in &fields {
        let set = configmap
            .lines()
            .any(|l| l.trim_start_matches("# ").starts_with(&format!("{f} =")));
        assert!(
            set,
            "config field `{f}` missing from deploy/base/agent.toml"
        );
        assert!(
            docs.contains(&format!("`{f}`")),
            "config field `{f}` missing from docs/operating.md"
        );
    }
    use clap::CommandFactory;
    let cmd = headroom_agent::cli::Cli::command();
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect();
    for sub in cmd.get_subcommands() {
        flags.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(String::from)),
        );
        assert!(
            docs.contains(&format!("headroom-agent {}", sub.get_name())),
            "command `{}` missing from docs/operating.md",
            sub.get_name()
        );
    }
    for f in flags.iter().filter(|f| *f != "help" && *f != "version") {
        assert!(
            mentions_flag(&docs, f),
            "flag --{f} missing from docs/operating.md"
        );
    }
}

/// Whether `text` has `--flag` as a whole flag (not the start of a longer one).
fn mentions_flag(text: &str, flag: &str) -> bool {
    let needle = format!("--{flag}");
    text.match_indices(&needle).any(|(i, _)| {
        let next = text[i + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

const RULES: &str = "deploy/overlays/prometheus/rules/headroom.rules.yaml";
const RULE_TESTS: &str = "deploy/overlays/prometheus/rules/headroom.rules.test.yaml";
const PROMETHEUS_RULE: &str = "deploy/overlays/prometheus/prometheusrule.yaml";

/// The PrometheusRule resource: the rule file, byte for byte, indented under `spec:` (a
/// Prometheus rule file is exactly a PrometheusRule's spec).
fn prometheus_rule_manifest(rules: &str) -> String {
    let mut out = String::from(
        "# Generated from rules/headroom.rules.yaml by deploy/tests/manifests.rs\n\
         # (UPDATE_GOLDEN=1 cargo test -p headroom-deploy): edit that file, not this one.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: headroom\n  namespace: headroom\n  labels:\n    app.kubernetes.io/part-of: headroom\n\
         spec:\n",
    );
    for line in rules.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The rule file is the one copy: the overlay's PrometheusRule is generated from it, and the
/// rendered overlay carries every alert of it.
#[test]
fn prometheus_rule_embeds_the_rule_file() {
    let rules = std::fs::read_to_string(root().join(RULES)).unwrap();
    let want = prometheus_rule_manifest(&rules);
    let path = root().join(PROMETHEUS_RULE);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have =
        std::fs::read_to_string(&path).expect("prometheusrule.yaml; run with UPDATE_GOLDEN=1");
    assert!(
        have == want,
        "{PROMETHEUS_RULE} is not {RULES} embedded under spec:; rerun with UPDATE_GOLDEN=1"
    );
    if !require(
        "prometheus_rule_embeds_the_rule_file",
        &[Need::Tool("kubectl")],
    ) {
        return;
    }
    let rendered = render("deploy/overlays/prometheus");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 7, "alert rules in {RULES}");
    assert!(rendered.contains("kind: PrometheusRule"));
    assert_eq!(
        rendered.matches("- alert: ").count(),
        alerts.len(),
        "the rendered overlay carries every alert rule"
    );
    for a in alerts {
        assert!(rendered.contains(&format!("- alert: {a}")), "{a} rendered");
    }
}

/// `promtool check rules` and the unit tests (series on both sides of every threshold, each
/// `for:` just before and after) pass.
#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    if !require(
        "prometheus_rules_pass_promtool_check_and_unit_tests",
        &[Need::Tool("promtool")],
    ) {
        return;
    }
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join(RULES))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && out.contains("SUCCESS: 7 rules found"),
        "promtool check rules:\n{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules"])
        .arg(root().join(RULE_TESTS))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && out.contains("SUCCESS"),
        "promtool test rules:\n{out}{}",
        String::from_utf8_lossy(&test.stderr)
    );
}
