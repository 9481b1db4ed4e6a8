//! Every rule the collector runs has its section in docs/runbook.md, the anchor its alerts'
//! `runbook_url` points at (`#<rule lowercased>`). (Config fields and flags in the docs and the
//! ConfigMap: deploy/tests/manifests.rs.)

use std::path::PathBuf;

#[test]
fn every_rule_has_its_runbook_section() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runbook = std::fs::read_to_string(root.join("docs/runbook.md")).unwrap();
    let t = headroom_collector::rules::Thresholds::default();
    let rules = headroom_collector::rules::all(&t);
    assert_eq!(rules.len(), 8);
    for r in rules {
        assert!(
            runbook.contains(&format!("\n## {}\n", r.id())),
            "rule {} has no section in docs/runbook.md (its runbook_url anchor #{})",
            r.id(),
            r.id().to_ascii_lowercase()
        );
    }
}
