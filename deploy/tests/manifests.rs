//! The deployment as a user applies it: every overlay renders with `kubectl kustomize`, validates
//! against the Kubernetes 1.32 schemas (the Prometheus Operator kinds against the operator's
//! CRDs), passes checkov (skips are justified in the manifests),
//! the base matches its golden snapshot, the Dockerfiles build (or, with no Docker engine here,
//! pass hadolint), and every flag and config field is documented and in the ConfigMap.

use headroom_testbed::Need;
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
    headroom_testbed::require_or_return!(
        "every_overlay_renders_and_validates_against_kubernetes_1_32",
        &[
            Need::Tool("kubectl"),
            Need::Tool("kubernetes-validate"),
            Need::Tool("python3"),
        ]
    );
    for dir in TARGETS {
        let text = render(dir);
        assert!(
            text.contains("kind: DaemonSet") && text.contains("kind: Deployment"),
            "{dir}"
        );
        let (_d, file) = rendered_file(dir, &text);
        // Kubernetes kinds strictly against the 1.32 schemas; kubernetes-validate only warns
        // about the Prometheus Operator kinds, which are checked below against their CRDs.
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
        // PodMonitor, ServiceMonitor, PrometheusRule against the operator's own CRD schemas
        // (deploy/tests/crds), unknown fields rejected.
        let crds = root().join("deploy/tests/crds");
        let out = Command::new("python3")
            .arg(root().join("deploy/tests/validate_crs.py"))
            .arg(&file)
            .args(
                ["podmonitors", "servicemonitors", "prometheusrules"]
                    .map(|k| crds.join(format!("monitoring.coreos.com_{k}.yaml"))),
            )
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "custom resources of {dir} against their CRDs:\n{report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let checked = report.lines().filter(|l| l.starts_with("ok ")).count();
        let want = if dir.ends_with("prometheus") { 3 } else { 0 };
        assert_eq!(
            checked, want,
            "custom resources checked in {dir}:\n{report}"
        );
    }
}

#[test]
fn checkov_passes_with_every_skip_justified() {
    headroom_testbed::require_or_return!(
        "checkov_passes_with_every_skip_justified",
        &[Need::Tool("kubectl"), Need::Tool("checkov")]
    );
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
    headroom_testbed::require_or_return!(
        "base_matches_its_golden_snapshot",
        &[Need::Tool("kubectl")]
    );
    let golden = root().join("deploy/tests/golden/base.yaml");
    let text = render("deploy/base");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // Rewriting compares the file with itself: never where nobody reviews the diff.
        assert!(
            !headroom_testbed::in_ci(),
            "UPDATE_GOLDEN is set with CI=true: the golden file would be compared with itself"
        );
        std::fs::write(&golden, &text).unwrap();
        eprintln!("rewrote {}: review its diff", golden.display());
    }
    let want = std::fs::read_to_string(&golden).expect("golden file; run with UPDATE_GOLDEN=1");
    assert!(
        text == want,
        "rendered base differs from deploy/tests/golden/base.yaml; review and rerun with UPDATE_GOLDEN=1"
    );
}

/// The dashboards are what deploy/dashboards/generate.py makes today (grafana-foundation-sdk,
/// pinned in scripts/requirements.txt) and read back through the SDK's own dashboard model
/// unchanged; e2e `dashboards_on_a_live_bed` runs their queries on a real Prometheus.
#[test]
fn dashboards_are_generated_and_read_back_by_the_sdk() {
    headroom_testbed::require_or_return!(
        "dashboards_are_generated_and_read_back_by_the_sdk",
        &[Need::Tool("python3")]
    );
    let out = Command::new("python3")
        .arg(root().join("deploy/dashboards/generate.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate.py --check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = render("deploy/overlays/prometheus");
    for f in ["linklocal", "probes", "workers", "findings"] {
        assert!(
            rendered.contains(&format!("  {f}.json: |")),
            "{f}.json not in the prometheus overlay's ConfigMap"
        );
    }
    assert!(
        rendered.contains("grafana_dashboard: \"1\""),
        "the dashboards ConfigMap lacks the sidecar's label"
    );
}

/// What the agent's DaemonSet means, asserted field by field on the rendered base (the golden
/// file only says it did not change): the host network, the exact capability set, nothing
/// privileged, a read-only root, and every host and secret mount read-only but the queue.
#[test]
fn the_agent_daemonset_grants_exactly_what_it_needs() {
    headroom_testbed::require_or_return!(
        "the_agent_daemonset_grants_exactly_what_it_needs",
        &[Need::Tool("kubectl"), Need::Tool("python3")]
    );
    let text = render("deploy/base");
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (the project's .venv)");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML could not read the rendered base"
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ds = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == "headroom-agent")
        .expect("the agent's DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "the ENIs live in the host network"
    );
    assert!(pod["hostPID"].is_null() || pod["hostPID"] == false);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut add: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    add.sort_unstable();
    assert_eq!(
        add,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "NET_ADMIN",
            "NET_RAW",
            "PERFMON",
            "SYS_PTRACE"
        ],
        "the capability set docs/security.md justifies, nothing more"
    );
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let mounts = c["volumeMounts"].as_array().unwrap();
    for m in mounts {
        let writable = m["readOnly"].is_null() || m["readOnly"] == false;
        if m["name"] == "queue" {
            assert!(writable, "the OTLP queue is the one writable mount: {m}");
        } else {
            assert!(!writable, "mount {} must be read-only: {m}", m["name"]);
        }
    }
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(
        host_paths,
        ["/proc", "/sys/fs/cgroup", "/var/lib/headroom-agent"],
        "host paths the agent reaches"
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
    headroom_testbed::require_or_return!("dockerfiles_build_or_lint", &[Need::Tool("hadolint")]);
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

/// Every config field of the agent (serde's own field list, nested `probes` included) is set,
/// with a comment, in the ConfigMap source and explained in docs/operating.md; every command-line flag is documented.
#[test]
fn every_agent_flag_and_field_is_documented_and_in_the_configmap() {
    // From serde's own field list: fields without a default (None: node_name, otlp_endpoint,
    // otlp_protocol) are never serialized, so the serialized defaults alone would miss them.
    let introspected = serde_fields::of::<headroom_agent::config::Config>();
    let fields: Vec<String> = introspected.iter().map(|(f, _)| f.to_string()).collect();
    let defaults = toml::Value::try_from(headroom_agent::config::Config::default()).unwrap();
    for key in defaults.as_table().unwrap().keys() {
        assert!(fields.contains(key), "serde's field list lacks `{key}`");
    }
    for key in ["node_name", "otlp_endpoint", "otlp_protocol"] {
        assert!(
            fields.iter().any(|f| f == key),
            "serde's field list lacks `{key}`"
        );
    }
    let configmap = std::fs::read_to_string(root().join("deploy/base/agent.toml")).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    // The ConfigMap parses as the agent's config (unknown fields would be rejected).
    let parsed: headroom_agent::config::Config = toml::from_str(&configmap).unwrap();
    assert_eq!(parsed.resolvers, ["auto"]);
    // The eks overlay replaces the ConfigMap whole: it must not lose a setting of the base
    // (such as otlp_endpoint, without which agents export nothing).
    let eks = std::fs::read_to_string(root().join("deploy/overlays/eks/agent.toml")).unwrap();
    let eks: headroom_agent::config::Config = toml::from_str(&eks).unwrap();
    assert!(
        eks == headroom_agent::config::Config {
            resolver_check_names: vec!["kubernetes.default.svc.cluster.local".into()],
            ..parsed.clone()
        },
        "deploy/overlays/eks/agent.toml differs from the base beyond resolver_check_names:\n{eks:#?}"
    );
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
    // The nested `probes` table's fields are documented and set too.
    let probes = &introspected.iter().find(|(f, _)| *f == "probes").unwrap().1;
    assert!(probes.contains(&"slow_fraction"), "{probes:?}");
    for n in probes {
        assert!(
            toml_mentions(&configmap, n),
            "config field `probes.{n}` missing from deploy/base/agent.toml"
        );
        assert!(
            docs.contains(&format!("`{n}`")),
            "config field `probes.{n}` missing from docs/operating.md"
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
    headroom_testbed::require_or_return!(
        "prometheus_rule_embeds_the_rule_file",
        &[Need::Tool("kubectl")]
    );
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
    headroom_testbed::require_or_return!(
        "prometheus_rules_pass_promtool_check_and_unit_tests",
        &[Need::Tool("promtool")]
    );
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

/// The field names of a `#[derive(Deserialize)]` config struct, read from serde itself: the
/// derive passes its list of fields to `deserialize_struct`, and this deserializer records the
/// list and stops. A field added to the struct shows up here without anyone listing it — so
/// the tests below fail until it is documented and in the ConfigMap. Structs without
/// `Serialize` (the collector's config) work the same.
mod serde_fields {
    use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, Visitor};
    use std::cell::Cell;

    #[derive(Debug)]
    pub struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field list recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    type Fields = Cell<Option<&'static [&'static str]>>;

    /// Records the field list of the struct it is asked for (through `Option`), then stops.
    struct Record<'a>(&'a Fields);

    impl<'de> Deserializer<'de> for Record<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
            v.visit_some(self)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(Some(fields));
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    /// Offers the outer struct a map with the one key `field`, whose value is recorded.
    struct OneField<'a> {
        field: &'static str,
        inner: &'a Fields,
    }

    impl<'de> Deserializer<'de> for OneField<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
            v.visit_map(OneEntry {
                key: Some(self.field),
                inner: self.inner,
            })
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            enum identifier ignored_any
        }
    }

    struct OneEntry<'a> {
        key: Option<&'static str>,
        inner: &'a Fields,
    }

    impl<'de> MapAccess<'de> for OneEntry<'_> {
        type Error = Stop;
        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Stop> {
            match self.key.take() {
                Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
                None => Ok(None),
            }
        }
        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, Stop> {
            seed.deserialize(Record(self.inner))
        }
    }

    /// Every field of `T`, each with the fields of its own table when it is a struct
    /// (`probes`, `[rules]`), else an empty list.
    pub fn of<T: DeserializeOwned>() -> Vec<(&'static str, Vec<&'static str>)> {
        let top = Fields::default();
        let _ = T::deserialize(Record(&top));
        let top = top.get().expect("a struct deriving Deserialize");
        top.iter()
            .map(|&field| {
                let inner = Fields::default();
                let _ = T::deserialize(OneField {
                    field,
                    inner: &inner,
                });
                (field, inner.get().unwrap_or_default().to_vec())
            })
            .collect()
    }
}

/// Whether a TOML file sets `key` (or shows it commented out, for fields without a default):
/// as a line `key = …`, a table `[key]`, or inside an inline table `{ key = … }`.
fn toml_mentions(text: &str, key: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start_matches('#').trim_start();
        l.starts_with(&format!("{key} ="))
            || l.starts_with(&format!("[{key}]"))
            || l.contains(&format!("{{ {key} ="))
            || l.contains(&format!(", {key} ="))
    })
}

/// Every config field of the collector (read from serde's own field list, nested tables
/// included) is in the ConfigMap source with its default and explained in docs/operating.md;
/// every flag of `headroom-collector --help` is documented.
#[test]
fn every_collector_flag_and_field_is_documented_and_in_the_configmap() {
    use headroom_collector::config::Config;
    let fields = serde_fields::of::<Config>();
    assert!(
        fields.iter().any(|(f, _)| *f == "otlp_grpc_listen") && fields.len() >= 10,
        "serde's field list of the collector's Config: {fields:?}"
    );
    let configmap = std::fs::read_to_string(root().join("deploy/base/collector.toml")).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    // The ConfigMap parses as the collector's config (unknown fields are rejected) and holds
    // the defaults themselves (fields without one are shown commented out), except that it
    // keeps the findings state on the Deployment's `state` volume.
    let deployed = Config {
        state_file: Some("/var/lib/headroom/findings.json".into()),
        ..Config::default()
    };
    let parsed: Config = toml::from_str(&configmap).unwrap();
    assert!(
        parsed == deployed,
        "deploy/base/collector.toml differs from the defaults:\n{parsed:#?}"
    );
    // The otel-collector overlay's replacement differs only where it forwards spans.
    let overlay =
        std::fs::read_to_string(root().join("deploy/overlays/otel-collector/collector.toml"))
            .unwrap();
    let overlay: Config = toml::from_str(&overlay).unwrap();
    assert!(
        overlay
            == Config {
                traces_endpoint: Some("http://otel-collector.observability:4318".into()),
                ..deployed
            },
        "deploy/overlays/otel-collector/collector.toml: {overlay:#?}"
    );
    for (f, nested) in &fields {
        assert!(
            toml_mentions(&configmap, f),
            "config field `{f}` missing from deploy/base/collector.toml"
        );
        assert!(
            docs.contains(&format!("`{f}`")),
            "config field `{f}` missing from docs/operating.md"
        );
        for n in nested {
            assert!(
                toml_mentions(&configmap, n),
                "config field `{f}.{n}` missing from deploy/base/collector.toml"
            );
            assert!(
                docs.contains(&format!("`{n}`")),
                "config field `{f}.{n}` missing from docs/operating.md"
            );
        }
    }
    use clap::CommandFactory;
    let cmd = headroom_collector::cli::Cli::command();
    let flags: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .filter(|f| f != "help" && f != "version")
        .collect();
    assert!(flags.iter().any(|f| f == "otlp-grpc-listen"), "{flags:?}");
    let help = cmd.clone().render_long_help().to_string();
    for f in &flags {
        assert!(mentions_flag(&help, f), "--{f} in --help");
        assert!(
            mentions_flag(&docs, f),
            "flag --{f} missing from docs/operating.md"
        );
    }
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (not of `#` lines inside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    markdown
        .lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            !in_code
        })
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// Every alert has its runbook section: the collector's rules by name, the Prometheus rules'
/// `runbook_url` anchors, and every link inside the runbook lands on a heading.
#[test]
fn every_alert_has_a_runbook_section() {
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let have = anchors(&runbook);
    for rule in [
        "DNSThrottleRisk",
        "DNSConsolidationRisk",
        "ProbeTimeoutRisk",
        "HPAOverScaling",
        "RequestsRightSizing",
    ] {
        assert!(
            have.contains(&rule.to_lowercase()),
            "docs/runbook.md has no section `## {rule}`"
        );
    }
    let rules = std::fs::read_to_string(root().join(RULES)).unwrap();
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    assert_eq!(urls.len(), 7, "one runbook_url per rule");
    for url in urls {
        let a = url
            .trim_matches('"')
            .strip_prefix("docs/runbook.md#")
            .unwrap_or_else(|| panic!("runbook_url {url} is not a docs/runbook.md anchor"));
        assert!(
            have.iter().any(|h| h == a),
            "runbook_url {url}: no such heading"
        );
    }
    for name in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            runbook.contains(&format!("`{name}`")),
            "alert {name} is not listed in docs/runbook.md"
        );
    }
    for (i, _) in runbook.match_indices("](#") {
        let target = &runbook[i + 3..];
        let target = &target[..target.find(')').unwrap()];
        assert!(
            have.iter().any(|h| h == target),
            "docs/runbook.md links to #{target}: no such heading"
        );
    }
}

/// The agent commands the docs tell a user to run parse with the agent's real command line.
#[test]
fn documented_agent_commands_parse() {
    use clap::Parser;
    let mut seen = 0;
    for doc in ["docs/runbook.md", "docs/operating.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            // The program as a command word: at the start, or after `kubectl exec … --`.
            let Some(i) = line
                .match_indices("headroom-agent ")
                .map(|(i, _)| i)
                .find(|&i| line[..i].trim().is_empty() || line[..i].ends_with("-- "))
                .filter(|_| in_code)
            else {
                continue;
            };
            // The command up to a pipe, a redirection, a comment or a line continuation.
            let cmd = line[i..]
                .split(['|', '>', '#', '\\'])
                .next()
                .unwrap()
                .trim();
            let args: Vec<&str> = cmd.split_whitespace().collect();
            if let Err(e) = headroom_agent::cli::Cli::try_parse_from(&args) {
                panic!("{doc}: `{cmd}` does not parse: {e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 6, "agent commands found in the docs: {seen}");
}

/// Every relative link in the docs and the README lands on a file, and on a heading of it when
/// it names one.
#[test]
fn doc_links_resolve() {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(root().join("README.md"));
    let mut links = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, frag) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            // Any file (a screenshot too); anchors only in text.
            let linked = std::fs::read(&file)
                .unwrap_or_else(|_| panic!("{}: link to {target}: no such file", doc.display()));
            if !frag.is_empty() {
                let linked = String::from_utf8_lossy(&linked);
                assert!(
                    anchors(&linked).iter().any(|a| a == frag),
                    "{}: link to {target}: no such heading",
                    doc.display()
                );
            }
            links += 1;
        }
    }
    assert!(links >= 20, "links checked: {links}");
}

/// The agent's privileges, as rendered for every overlay, are exactly the ones docs/security.md
/// justifies, each with a test of what breaks without it: BPF, NET_ADMIN and PERFMON (the eBPF
/// tap; the agent's `missing_cap_net_raw_exits_77` and
/// `auto_takes_ebpf_with_the_daemonset_capabilities_and_falls_back_without`), NET_RAW (the
/// AF_PACKET tap, `auto`'s fallback; `missing_cap_net_raw_exits_77`), SYS_PTRACE and DAC_READ_SEARCH (other users' /proc/<pid>/fd
/// and the backlog through pidfd_getfd); no SYS_ADMIN (`without_cap_sys_admin_the_figures_are_the_same`),
/// nothing privileged, a read-only root, no privilege escalation, RuntimeDefault seccomp.
#[test]
fn the_agent_keeps_only_its_justified_privileges() {
    headroom_testbed::require_or_return!(
        "the_agent_keeps_only_its_justified_privileges",
        &[Need::Tool("kubectl"), Need::Tool("python3")]
    );
    for dir in TARGETS {
        let text = render(dir);
        let mut py = Command::new("python3")
            .args([
                "-c",
                "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        use std::io::Write;
        py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = py.wait_with_output().unwrap();
        assert!(out.status.success(), "PyYAML could not read {dir}");
        let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ds = docs
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == "headroom-agent")
            .unwrap_or_else(|| panic!("{dir}: no agent DaemonSet"));
        let pod = &ds["spec"]["template"]["spec"];
        assert_ne!(pod["hostPID"], true, "{dir}: hostPID");
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_ne!(sc["privileged"], true, "{dir}: privileged");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{dir}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{dir}");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{dir}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{dir}"
            );
            let mut add: Vec<&str> = sc["capabilities"]["add"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            add.sort();
            assert_eq!(
                add,
                [
                    "BPF",
                    "DAC_READ_SEARCH",
                    "NET_ADMIN",
                    "NET_RAW",
                    "PERFMON",
                    "SYS_PTRACE"
                ],
                "{dir}: {}",
                c["name"]
            );
        }
    }
}

/// Rendered YAML as JSON documents (PyYAML from the project's .venv).
fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (the project's .venv)");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read the YAML");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sidecar component (docs/fargate.md) on the Fargate example: renders, validates strictly
/// against Kubernetes 1.32, adds the agent to the labelled workload (and leaves its app
/// container alone) with CAP_NET_RAW only, the pod's identity from the downward API, the
/// collector token projected, its ConfigMap (a valid sidecar config), and `get` on pods in the
/// namespace, nothing more.
#[test]
fn the_sidecar_component_adds_the_agent_with_net_raw_only() {
    headroom_testbed::require_or_return!(
        "the_sidecar_component_adds_the_agent_with_net_raw_only",
        &[
            Need::Tool("kubectl"),
            Need::Tool("kubernetes-validate"),
            Need::Tool("python3"),
        ]
    );
    let dir = "deploy/examples/fargate";
    let text = render(dir);
    let (_d, file) = rendered_file(dir, &text);
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
    let docs = yaml_docs(&text);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Role", "RoleBinding", "ConfigMap", "Deployment"],
        "the component adds a Role, its binding and a ConfigMap; no ClusterRole"
    );
    let role = &docs[0];
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        "get on pods in the namespace: no list, no watch"
    );
    assert_eq!(role["metadata"]["namespace"], "shop");
    let binding = &docs[1];
    assert_eq!(binding["roleRef"]["name"], "headroom-sidecar");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}])
    );
    let cm = &docs[2];
    let cfg: headroom_agent::config::Config =
        toml::from_str(cm["data"]["agent.toml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg.mode, headroom_agent::mode::ModeChoice::Sidecar);
    assert_eq!(
        cfg.otlp_token_file.as_deref(),
        Some("/var/run/secrets/headroom/collector/token")
    );
    let pod = &docs[3]["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"app") && names.contains(&"headroom-agent"));
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    assert!(app["securityContext"].is_null(), "the app is left alone");
    let c = containers
        .iter()
        .find(|c| c["name"] == "headroom-agent")
        .unwrap();
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_RAW"]),
        "the AF_PACKET tap's one capability, nothing more"
    );
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    let env: std::collections::BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env,
        std::collections::BTreeMap::from([
            ("NODE_NAME", "spec.nodeName"),
            ("POD_IP", "status.podIP"),
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
            ("POD_UID", "metadata.uid"),
        ])
    );
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", "/etc/headroom-sidecar/agent.toml"])
    );
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().all(|m| m["readOnly"] == true), "{mounts:?}");
    let volumes = pod["volumes"].as_array().unwrap();
    let token = volumes
        .iter()
        .find(|v| v["name"] == "headroom-collector-token")
        .unwrap();
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "headroom-collector"
    );
    let config = volumes
        .iter()
        .find(|v| v["name"] == "headroom-sidecar-config")
        .unwrap();
    assert_eq!(
        config["configMap"]["name"], cm["metadata"]["name"],
        "the volume names the generated ConfigMap (hash suffix included)"
    );
}
