//! Every collector config field (top level and `[rules]`) is set, with a comment, in the
//! ConfigMap source deploy/base/collector.toml and explained in docs/operating.md; every flag is
//! documented; the ConfigMap parses as the collector's config; every rule has a runbook section.

use headroom_collector::config::Config;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `text` has `--flag` as a whole flag (not the start of a longer one).
fn mentions_flag(text: &str, flag: &str) -> bool {
    let needle = format!("--{flag}");
    text.match_indices(&needle).any(|(i, _)| {
        let next = text[i + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_collector_field_and_flag_is_documented_and_in_the_configmap() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let table = defaults.as_table().unwrap();
    // Options without a default are not serialized: named here.
    let mut fields: Vec<String> = table.keys().cloned().collect();
    fields.extend(["traces_endpoint", "webhook_url", "state_file"].map(String::from));
    let rules: Vec<String> = table["rules"].as_table().unwrap().keys().cloned().collect();
    assert!(rules.len() >= 17, "{rules:?}");
    let configmap = std::fs::read_to_string(root().join("deploy/base/collector.toml")).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    let parsed: Config = toml::from_str(&configmap).unwrap();
    // The ConfigMap states the defaults, and keeps findings on the Deployment's state volume.
    assert_eq!(
        parsed.state_file.as_deref(),
        Some("/var/lib/headroom/findings.json")
    );
    assert_eq!(
        Config {
            state_file: None,
            ..parsed
        },
        Config::default()
    );
    for f in fields.iter().chain(&rules) {
        if f == "rules" {
            assert!(configmap.contains("\n[rules]\n"));
            continue;
        }
        let set = configmap
            .lines()
            .any(|l| l.trim_start_matches("# ").starts_with(&format!("{f} =")));
        assert!(
            set,
            "config field `{f}` missing from deploy/base/collector.toml"
        );
        assert!(
            docs.contains(&format!("`{f}`")),
            "config field `{f}` missing from docs/operating.md"
        );
    }
    use clap::CommandFactory;
    let cmd = headroom_collector::cli::Cli::command();
    for f in cmd.get_arguments().filter_map(|a| a.get_long()) {
        if f == "help" || f == "version" {
            continue;
        }
        assert!(
            mentions_flag(&docs, f),
            "flag --{f} missing from docs/operating.md"
        );
    }
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let t = headroom_collector::rules::Thresholds::default();
    for r in headroom_collector::rules::all(&t) {
        assert!(
            runbook.contains(&format!("\n## {}\n", r.id())),
            "rule {} has no section in docs/runbook.md (its runbook_url anchor)",
            r.id()
        );
    }
}
