//! The findings engine: turns each evaluation's findings into tracked findings with a stable id
//! (a hash of rule and subject), pending → firing after the rule's `for`, resolved when the
//! rule no longer finds it (kept for `keep_resolved`), with `started_at`, `fired_at` and
//! `resolved_at`. State survives a restart through a small JSON file written atomically, so a
//! restarted collector neither pages again nor forgets a firing alert; for `startup_grace`
//! after a start nothing resolves, while the fleet fills up again.

use super::state::{self, StateError};
use crate::rules::{Finding, Severity, Subject};
use crate::time::{ns, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// A tracked finding. Times are nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub state: State,
    pub subject: Subject,
    pub summary: String,
    pub evidence: BTreeMap<String, serde_json::Value>,
    pub fix: String,
    /// What the subject costs (ScaleDownBlocked); absent in state files written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::rules::Cost>,
    /// When the rule first found it (this episode): pending since.
    pub started_at: u64,
    pub fired_at: Option<u64>,
    pub resolved_at: Option<u64>,
    /// The last evaluation that found it.
    pub updated_at: u64,
}

/// A finding as `/api/v1/findings` shows it (field names: docs/reference.md, "The collector").
#[derive(Debug, Clone, Serialize)]
pub struct FindingView<'a> {
    pub id: &'a str,
    pub rule: &'a str,
    pub severity: Severity,
    pub state: State,
    pub subject: &'a Subject,
    pub summary: &'a str,
    pub evidence: &'a BTreeMap<String, serde_json::Value>,
    pub fix: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<&'a crate::rules::Cost>,
    pub started_at: String,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    pub updated_at: String,
}

impl Record {
    pub fn view(&self) -> FindingView<'_> {
        FindingView {
            id: &self.id,
            rule: &self.rule,
            severity: self.severity,
            state: self.state,
            subject: &self.subject,
            summary: &self.summary,
            evidence: &self.evidence,
            fix: &self.fix,
            cost: self.cost.as_ref(),
            started_at: rfc3339(self.started_at),
            fired_at: self.fired_at.map(rfc3339),
            resolved_at: self.resolved_at.map(rfc3339),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// One state change of one finding, for the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub record: Record,
    /// None for a new finding.
    pub previous: Option<State>,
    /// Set when a firing finding changed severity (the old Alertmanager label set ends).
    pub previous_severity: Option<Severity>,
}

impl Change {
    /// A change of state (the severity unchanged) from `previous` (None: a new finding).
    fn from(record: &Record, previous: Option<State>) -> Change {
        Change {
            record: record.clone(),
            previous,
            previous_severity: None,
        }
    }
}

/// The stable id: FNV-1a (64 bit) over the rule and the subject's set fields.
pub fn finding_id(rule: &str, subject: &Subject) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(rule);
    for (k, v) in subject.labels() {
        eat(k);
        eat(v);
    }
    format!("{h:016x}")
}

/// Most findings tracked by default: every rule reports per subject (node, workload, probe),
/// so a hostile fleet could otherwise grow the map, the state file and every sink's queue.
pub const MAX_FINDINGS: usize = 10_000;

pub struct Engine {
    records: BTreeMap<String, Record>,
    keep_resolved: Duration,
    /// Until then (ns), findings the rules no longer report are kept as they are.
    hold_until: u64,
    max_findings: usize,
    /// Findings forgotten or never tracked because of `max_findings`.
    dropped: u64,
}

impl Engine {
    pub fn new(keep_resolved: Duration, startup_grace: Duration, now: SystemTime) -> Engine {
        Engine {
            records: BTreeMap::new(),
            keep_resolved,
            hold_until: ns(now + startup_grace),
            max_findings: MAX_FINDINGS,
            dropped: 0,
        }
    }

    /// At most `max` findings: over it the oldest resolved one is forgotten first; with none
    /// resolved a new finding is not tracked. Both are counted ([`Engine::dropped`]).
    pub fn bounded(mut self, max: usize) -> Engine {
        self.max_findings = max.max(1);
        self
    }

    /// Findings forgotten or never tracked because of the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Room for one more record: forgets the oldest resolved one when full; false when every
    /// record is pending or firing.
    fn make_room(&mut self) -> bool {
        if self.records.len() < self.max_findings {
            return true;
        }
        let oldest = self
            .records
            .values()
            .filter(|r| r.state == State::Resolved)
            .min_by_key(|r| (r.resolved_at, r.started_at))
            .map(|r| r.id.clone());
        self.dropped += 1;
        match oldest {
            Some(id) => {
                self.records.remove(&id);
                true
            }
            None => false,
        }
    }

    /// As [`Engine::new`], with the findings of a state file (none when it does not exist).
    pub fn load(
        path: &Path,
        keep_resolved: Duration,
        startup_grace: Duration,
        now: SystemTime,
    ) -> Result<Engine, StateError> {
        let mut e = Engine::new(keep_resolved, startup_grace, now);
        if let Some(records) = state::load::<Record>(path)? {
            e.records = records.into_iter().map(|r| (r.id.clone(), r)).collect();
        }
        Ok(e)
    }

    /// Writes the findings to `path` atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        state::save(path, self.records.values())
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Takes one evaluation's findings (each with its rule's `for`) at `now`; returns the
    /// state changes.
    pub fn update(&mut self, found: Vec<(Finding, Duration)>, now: SystemTime) -> Vec<Change> {
        let now_ns = ns(now);
        let mut changes = Vec::new();
        // One finding per id: the most severe if a rule reported a subject twice.
        let mut by_id: BTreeMap<String, (Finding, Duration)> = BTreeMap::new();
        for (f, d) in found {
            let id = finding_id(&f.rule, &f.subject);
            match by_id.get(&id) {
                Some((g, _)) if g.severity >= f.severity => {}
                _ => {
                    by_id.insert(id, (f, d));
                }
            }
        }
        for (id, (f, hold)) in &by_id {
            let fires_now = |started: u64| now_ns.saturating_sub(started) >= hold.as_nanos() as u64;
            match self.records.get_mut(id) {
                Some(r) if r.state != State::Resolved => {
                    let before = r.clone();
                    r.severity = f.severity;
                    r.summary = f.summary.clone();
                    r.evidence = f.evidence.clone();
                    r.fix = f.fix.clone();
                    r.cost = f.cost.clone();
                    r.updated_at = now_ns;
                    if r.state == State::Pending && fires_now(r.started_at) {
                        r.state = State::Firing;
                        r.fired_at = Some(now_ns);
                        changes.push(Change::from(r, Some(State::Pending)));
                    } else if r.state == State::Firing && before.severity != r.severity {
                        changes.push(Change {
                            record: r.clone(),
                            previous: Some(State::Firing),
                            previous_severity: Some(before.severity),
                        });
                    }
                }
                existing => {
                    let previous = existing.map(|r| r.state);
                    if previous.is_none() && !self.make_room() {
                        continue;
                    }
                    let firing = fires_now(now_ns);
                    let r = Record {
                        id: id.clone(),
                        rule: f.rule.clone(),
                        severity: f.severity,
                        state: if firing {
                            State::Firing
                        } else {
                            State::Pending
                        },
                        subject: f.subject.clone(),
                        summary: f.summary.clone(),
                        evidence: f.evidence.clone(),
                        fix: f.fix.clone(),
                        cost: f.cost.clone(),
                        started_at: now_ns,
                        fired_at: firing.then_some(now_ns),
                        resolved_at: None,
                        updated_at: now_ns,
                    };
                    self.records.insert(id.clone(), r.clone());
                    changes.push(Change::from(&r, previous));
                }
            }
        }
        let holding = now_ns < self.hold_until;
        let keep = self.keep_resolved.as_nanos() as u64;
        self.records.retain(|id, r| {
            if by_id.contains_key(id) || holding {
                return true;
            }
            match r.state {
                // Never fired: nobody was told, nothing to resolve.
                State::Pending => false,
                State::Firing => {
                    r.state = State::Resolved;
                    r.resolved_at = Some(now_ns);
                    changes.push(Change::from(r, Some(State::Firing)));
                    true
                }
                State::Resolved => now_ns.saturating_sub(r.resolved_at.unwrap_or(0)) <= keep,
            }
        });
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn finding(node: &str, sev: Severity) -> Finding {
        Finding {
            rule: "DNSThrottleRisk".into(),
            severity: sev,
            subject: Subject {
                cluster: "c".into(),
                node: Some(node.into()),
                ..Default::default()
            },
            summary: format!("{node} hot"),
            evidence: BTreeMap::new(),
            fix: "fix it".into(),
            cost: None,
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    /// (node, state) sorted by node.
    fn states(e: &Engine) -> Vec<(String, State)> {
        let mut v: Vec<_> = e
            .records()
            .map(|r| (r.subject.node.clone().unwrap(), r.state))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = finding("n1", Severity::Warning);
        let b = finding("n2", Severity::Warning);
        assert_eq!(
            finding_id(&a.rule, &a.subject),
            finding_id(&a.rule, &a.subject.clone())
        );
        assert_ne!(
            finding_id(&a.rule, &a.subject),
            finding_id(&b.rule, &b.subject)
        );
        assert_ne!(
            finding_id("ProbeTimeoutRisk", &a.subject),
            finding_id(&a.rule, &a.subject)
        );
        // Fixed by the algorithm (FNV-1a, checked by hand in Python), not by this build: a
        // restart of any version finds it again.
        assert_eq!(finding_id(&a.rule, &a.subject), "a727352eca521abf");
    }

    #[test]
    fn pending_fires_after_for_and_resolves_when_clear() {
        let hold = Duration::from_secs(30);
        let mut e = Engine::new(Duration::from_secs(3600), Duration::ZERO, at(0));
        // Table of steps: (time, nodes found, expected changes (node, previous, new), states after)
        let w = Severity::Warning;
        let c = e.update(vec![(finding("n1", w), hold)], at(0));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].previous, c[0].record.state), (None, State::Pending));
        // 29 s later: still pending, no change.
        assert!(e.update(vec![(finding("n1", w), hold)], at(29)).is_empty());
        assert_eq!(states(&e), [("n1".to_string(), State::Pending)]);
        // 30 s: fires.
        let c = e.update(vec![(finding("n1", w), hold)], at(30));
        assert_eq!(
            (c[0].previous, c[0].record.state),
            (Some(State::Pending), State::Firing)
        );
        let r = e.records().next().unwrap().clone();
        assert_eq!(r.started_at, ns(at(0)));
        assert_eq!(r.fired_at, Some(ns(at(30))));
        // Critical while firing: a severity change.
        let c = e.update(vec![(finding("n1", Severity::Critical), hold)], at(40));
        assert_eq!(c[0].previous_severity, Some(Severity::Warning));
        assert_eq!(c[0].record.state, State::Firing);
        // Clear: resolved, with resolved_at.
        let c = e.update(vec![], at(50));
        assert_eq!(
            (c[0].previous, c[0].record.state),
            (Some(State::Firing), State::Resolved)
        );
        assert_eq!(c[0].record.resolved_at, Some(ns(at(50))));
        // Back again: a new episode, pending from now, same id.
        let c = e.update(vec![(finding("n1", w), hold)], at(60));
        assert_eq!(
            (c[0].previous, c[0].record.state),
            (Some(State::Resolved), State::Pending)
        );
        assert_eq!(c[0].record.id, r.id);
        assert_eq!(c[0].record.started_at, ns(at(60)));
        // A pending finding that clears is dropped without a change.
        assert!(e.update(vec![], at(70)).is_empty());
        assert!(e.records().next().is_none());
    }

    #[test]
    fn zero_for_fires_at_once_and_resolved_ones_expire() {
        let mut e = Engine::new(Duration::from_secs(60), Duration::ZERO, at(0));
        let c = e.update(
            vec![(finding("n1", Severity::Critical), Duration::ZERO)],
            at(0),
        );
        assert_eq!((c[0].previous, c[0].record.state), (None, State::Firing));
        e.update(vec![], at(10));
        assert_eq!(states(&e), [("n1".to_string(), State::Resolved)]);
        e.update(vec![], at(70));
        assert_eq!(states(&e).len(), 1, "kept for keep_resolved (60 s)");
        e.update(vec![], at(71));
        assert!(states(&e).is_empty());
    }

    #[test]
    fn restart_from_the_state_file_keeps_firing_and_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("findings.json");
        let hold = Duration::from_secs(30);
        let grace = Duration::from_secs(60);
        let mut e = Engine::new(Duration::from_secs(3600), grace, at(0));
        e.update(vec![(finding("n1", Severity::Warning), hold)], at(0));
        e.update(
            vec![
                (finding("n1", Severity::Warning), hold),
                (finding("n2", Severity::Warning), hold),
            ],
            at(30),
        );
        assert_eq!(
            states(&e),
            [
                ("n1".to_string(), State::Firing),
                ("n2".to_string(), State::Pending)
            ]
        );
        e.save(&path).unwrap();
        assert!(!dir.path().join("findings.json.tmp").exists());
        // "Restart" at 100 s.
        let mut e2 = Engine::load(&path, Duration::from_secs(3600), grace, at(100)).unwrap();
        assert_eq!(states(&e2), states(&e));
        // The fleet is empty right after the start: within the grace nothing resolves…
        assert!(e2.update(vec![], at(110)).is_empty());
        // …and n1 found again is no new page (no change), n2 fires on its own schedule.
        let c = e2.update(
            vec![
                (finding("n1", Severity::Warning), hold),
                (finding("n2", Severity::Warning), hold),
            ],
            at(120),
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].record.subject.node.as_deref(), Some("n2"));
        assert_eq!(c[0].previous, Some(State::Pending));
        let n1 = e2
            .records()
            .find(|r| r.subject.node.as_deref() == Some("n1"))
            .unwrap();
        assert_eq!(n1.fired_at, Some(ns(at(30))));
        // After the grace, clearing resolves as usual.
        let c = e2.update(vec![], at(161));
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.record.state == State::Resolved));
        // A damaged file is one clear error, not a panic.
        std::fs::write(&path, "{not json").unwrap();
        let err = Engine::load(&path, Duration::ZERO, Duration::ZERO, at(0))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid state_file"), "{err}");
        // No file: an empty engine.
        let none = Engine::load(
            &dir.path().join("absent.json"),
            Duration::ZERO,
            Duration::ZERO,
            at(0),
        )
        .unwrap();
        assert!(none.records().next().is_none());
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::rules::{Severity, Subject};
    use std::time::UNIX_EPOCH;

    fn finding(node: &str) -> (Finding, Duration) {
        (
            Finding {
                rule: "R".into(),
                severity: Severity::Warning,
                subject: Subject {
                    cluster: "c".into(),
                    node: Some(node.into()),
                    ..Subject::default()
                },
                summary: String::new(),
                evidence: BTreeMap::new(),
                fix: String::new(),
                cost: None,
            },
            Duration::ZERO,
        )
    }

    #[test]
    fn findings_are_bounded_oldest_resolved_first() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let mut e = Engine::new(Duration::from_secs(3600), Duration::ZERO, at(0)).bounded(3);
        e.update(vec![finding("a"), finding("b")], at(1));
        e.update(vec![finding("b")], at(2)); // a resolves
        e.update(vec![finding("c")], at(3)); // b resolves; a, b resolved, c firing
        e.update(vec![finding("c"), finding("d")], at(4));
        let nodes: Vec<_> = e.records().filter_map(|r| r.subject.node.clone()).collect();
        assert_eq!(nodes.len(), 3);
        assert!(!nodes.contains(&"a".to_string()), "{nodes:?}");
        assert_eq!(e.dropped(), 1);
        // All firing: no room, new ones are not tracked but counted.
        e.update(
            vec![finding("c"), finding("d"), finding("e"), finding("f")],
            at(5),
        );
        assert_eq!(e.records().count(), 3);
        assert!(e.dropped() >= 2);
    }
}
