//! DNSThrottleRisk (an ENI's one-second peak toward the 1024 packets/s link-local limit, or EC2
//! dropping now) and DNSConsolidationRisk (what-if: a node group loses a node, as Cluster
//! Autoscaler or Karpenter would consolidate, and its DNS moves to the rest).

use super::{evidence, r3, Finding, Input, Rule, Severity, Subject, Thresholds};
use crate::fleet::{ClusterSnapshot, EniSnapshot, NodeSnapshot};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The ENA counter that says EC2 dropped link-local packets.
pub const LINKLOCAL_EXCEEDED: &str = "linklocal_allowance_exceeded";
/// Top sources and names listed in evidence and fixes.
const TOP: usize = 5;

pub struct ThrottleRisk(pub Thresholds);

/// One ENI's DNS packets/s in its latest window: the DNS-only peak when the agent sent it,
/// else the whole link-local peak (an upper bound).
pub(crate) fn dns_peak(i: &EniSnapshot) -> u64 {
    i.latest
        .as_ref()
        .map(|w| w.dns_peak_pps.unwrap_or(w.peak_pps))
        .unwrap_or(0)
}

/// What each cure would save on one ENI at its DNS peak, in packets/s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cures {
    /// The DNS peak the savings come off.
    pub peak: u64,
    /// NodeLocal DNSCache: the cacheable queries of the window's busiest second as the agent
    /// measured them (answers still within min(TTL, cap)), at most the peak; without the
    /// agent's figure, the whole peak (an upper bound) and `cache_measured` false.
    pub cache: u64,
    pub cache_measured: bool,
    pub cacheable_share: Option<f64>,
    /// The window's mean cache savings (packets/s), when measured.
    pub cache_mean: Option<f64>,
    /// ndots:2 and fully qualified names: their measured share of the window's queries
    /// applied to the peak (the busiest second is assumed to have the window's mix).
    pub ndots2: u64,
    pub fqdn: u64,
    /// (pod or source, pps) for spreading the top pods.
    pub spread: Vec<(String, u64)>,
}

impl Cures {
    /// The peak left after one cure.
    pub fn after(&self, saves: u64) -> u64 {
        self.peak.saturating_sub(saves)
    }
}

/// What each cure would save on one ENI (see [`Cures`]).
pub fn savings(i: &EniSnapshot) -> Cures {
    let mut c = measured(i);
    let Some(d) = &i.dns else { return c };
    let total = d.queries_latest.max(1) as f64;
    c.spread = d
        .top_sources
        .iter()
        .take(TOP)
        .map(|s| {
            let who = if s.pod.is_empty() {
                s.source.to_string()
            } else if s.namespace.is_empty() {
                s.pod.to_string()
            } else {
                format!("{}/{}", s.namespace, s.pod)
            };
            (
                who,
                (c.peak as f64 * s.queries as f64 / total).round() as u64,
            )
        })
        .collect();
    c
}

/// [`savings`] without `spread` (its names are formatted strings): what a group's shares sum,
/// over every ENI of a node group, for every consolidation finding and packing plan.
fn measured(i: &EniSnapshot) -> Cures {
    let peak = dns_peak(i);
    let Some(d) = &i.dns else {
        return Cures {
            peak,
            cache: peak,
            ..Default::default()
        };
    };
    let m = &d.measured;
    let (cache, cache_measured) = match m.cache_peak_pps {
        Some(c) => ((c.round() as u64).min(peak), true),
        None => (peak, false),
    };
    // FQDNs save every failed suffix query (the search-expansion share); ndots:2 the part of
    // them whose name has two dots or more, as the agent measured (ndots2/fqdn figures).
    let fqdn_share = d.search_expansion_share;
    let ndots2_share = match (m.ndots2_pps, m.fqdn_pps) {
        (Some(n), Some(f)) if f > 0.0 => fqdn_share * (n / f).min(1.0),
        (Some(_), Some(_)) => 0.0,
        _ => fqdn_share, // an agent without the split: the old reading
    };
    let at_peak = |share: f64| ((peak as f64 * share).round() as u64).min(peak);
    Cures {
        peak,
        cache,
        cache_measured,
        cacheable_share: m.cacheable_share,
        cache_mean: m.cache_pps,
        ndots2: at_peak(ndots2_share),
        fqdn: at_peak(fqdn_share),
        spread: Vec::new(),
    }
}

/// The fix line for NodeLocal DNSCache on one ENI, with what was measured.
fn cache_fix(c: &Cures) -> String {
    let head = "Run NodeLocal DNSCache on this node's group: pods then ask 169.254.20.10 on the node and only cache misses reach the resolver";
    if !c.cache_measured {
        return format!(
            "{head} (saves ≈ {}/s at most, the whole DNS peak: this agent does not measure what a cache would answer).",
            c.cache
        );
    }
    format!(
        "{head}. Measured from the answers' TTLs: {:.0}% of queries would have been cache hits; saves ≈ {}/s in the busiest second (mean {:.1}/s), so the DNS peak would become ≈ {}/s of {}/s.",
        c.cacheable_share.unwrap_or(0.0) * 100.0,
        c.cache,
        c.cache_mean.unwrap_or(0.0),
        c.after(c.cache),
        c.peak
    )
}

fn eni_subject(c: &ClusterSnapshot, n: &NodeSnapshot, i: &EniSnapshot) -> Subject {
    Subject {
        cluster: c.name.clone(),
        node: Some(n.name.clone()),
        interface: Some(i.interface.clone()),
        eni: i.eni_id.clone(),
        ..Default::default()
    }
}

impl Rule for ThrottleRisk {
    fn id(&self) -> &'static str {
        "DNSThrottleRisk"
    }

    fn for_duration(&self) -> Duration {
        self.0.dns_for
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let t = &self.0;
        let mut out = Vec::new();
        for c in &input.fleet.clusters {
            for n in &c.nodes {
                for i in &n.interfaces {
                    let Some(w) = &i.latest else { continue };
                    let exceeded = i
                        .allowance_exceeded_latest
                        .get(LINKLOCAL_EXCEEDED)
                        .copied()
                        .unwrap_or(0);
                    let (unanswered, unanswered_before) = i
                        .dns
                        .as_ref()
                        .map(|d| (d.unanswered_latest, d.unanswered_previous))
                        .unwrap_or((0, 0));
                    let jump = unanswered.saturating_sub(unanswered_before);
                    let dropping =
                        exceeded > 0 || t.dns_unanswered_jump > 0 && jump >= t.dns_unanswered_jump;
                    let u = w.utilization;
                    let severity = if dropping || u >= t.dns_critical {
                        Severity::Critical
                    } else if u >= t.dns_warning {
                        Severity::Warning
                    } else {
                        continue;
                    };
                    let cures = savings(i);
                    let spread = &cures.spread;
                    let d = i.dns.clone().unwrap_or_default();
                    let names: Vec<&str> =
                        d.top_qnames.iter().take(TOP).map(|q| &*q.qname).collect();
                    let eni = i.eni_id.as_deref().unwrap_or(&i.interface);
                    let summary = if dropping {
                        format!(
                            "{}/{} ({eni}): EC2 is dropping link-local packets now ({exceeded} over the allowance, unanswered DNS queries {unanswered_before} → {unanswered}); peak {}/s of {}/s",
                            n.name, i.interface, w.peak_pps, w.limit_pps
                        )
                    } else {
                        format!(
                            "{}/{} ({eni}): link-local peak {}/s is {:.0}% of the {}/s limit",
                            n.name,
                            i.interface,
                            w.peak_pps,
                            u * 100.0,
                            w.limit_pps
                        )
                    };
                    let mut fix = vec![cache_fix(&cures)];
                    if cures.fqdn > 0 {
                        fix.push(format!(
                            "Set `dnsConfig.options: [{{name: ndots, value: \"2\"}}]` on the pods, or use fully qualified names with a trailing dot, for {} ({:.0}% of queries are search-suffix expansions): ndots:2 saves ≈ {}/s (peak → ≈ {}/s), fully qualified names ≈ {}/s (peak → ≈ {}/s).",
                            if names.is_empty() { "the names looked up".to_string() } else { names.join(", ") },
                            d.search_expansion_share * 100.0,
                            cures.ndots2,
                            cures.after(cures.ndots2),
                            cures.fqdn,
                            cures.after(cures.fqdn),
                        ));
                    }
                    if !spread.is_empty() {
                        fix.push(format!(
                            "Spread the top sources across nodes (topologySpreadConstraints or podAntiAffinity): {}.",
                            spread
                                .iter()
                                .map(|(who, pps)| format!("{who} ≈ {pps}/s"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    out.push(Finding {
                        rule: self.id().into(),
                        severity,
                        subject: eni_subject(c, n, i),
                        summary,
                        evidence: evidence([
                            ("peak_pps", json!(w.peak_pps)),
                            ("mean_pps", json!(r3(w.mean_pps))),
                            ("limit_pps", json!(w.limit_pps)),
                            ("utilization", json!(r3(u))),
                            ("dns_peak_pps", json!(dns_peak(i))),
                            ("window_end", json!(w.end)),
                            ("linklocal_allowance_exceeded", json!(exceeded)),
                            ("unanswered_latest", json!(unanswered)),
                            ("unanswered_previous", json!(unanswered_before)),
                            ("search_expansion_share", json!(r3(d.search_expansion_share))),
                            ("top_qnames", json!(d.top_qnames.iter().take(TOP).collect::<Vec<_>>())),
                            ("top_sources", json!(d.top_sources.iter().take(TOP).collect::<Vec<_>>())),
                            (
                                "savings_pps",
                                json!({
                                    "nodelocal_dnscache": cures.cache,
                                    "nodelocal_dnscache_measured": cures.cache_measured,
                                    "cacheable_share": cures.cacheable_share,
                                    "nodelocal_dnscache_mean": cures.cache_mean,
                                    "ndots2": cures.ndots2,
                                    "fqdn": cures.fqdn,
                                    "ndots2_or_fqdn": cures.fqdn,
                                    "spread_top_sources": spread.iter().map(|(w, p)| json!({"source": w, "pps": p})).collect::<Vec<_>>(),
                                }),
                            ),
                            (
                                "peak_after_pps",
                                json!({
                                    "nodelocal_dnscache": cures.after(cures.cache),
                                    "ndots2": cures.after(cures.ndots2),
                                    "fqdn": cures.after(cures.fqdn),
                                }),
                            ),
                        ]),
                        fix: fix.join("\n"),
                        cost: None,
                    });
                }
            }
        }
        out
    }
}

pub struct ConsolidationRisk(pub Thresholds);

/// A node's primary ENI: its first interface by name (eth0, ens5), which carries the
/// hostNetwork pods' and 169.254.169.253's DNS.
pub(crate) fn primary(n: &NodeSnapshot) -> Option<&EniSnapshot> {
    n.interfaces
        .iter()
        .filter(|i| i.latest.is_some())
        .min_by(|a, b| a.interface.cmp(&b.interface))
}

/// The node's DNS load: the DNS peaks of its interfaces added up.
pub(crate) fn node_load(n: &NodeSnapshot) -> u64 {
    n.interfaces.iter().map(dns_peak).sum()
}

/// One node of a group in the what-if.
#[derive(Debug, Clone)]
struct Member<'a> {
    node: &'a NodeSnapshot,
    load: f64,
    /// The primary ENI's peak and limit.
    peak: f64,
    limit: f64,
}

/// Pure what-if: removes the least loaded node and spreads its load over the rest in proportion
/// to their own (evenly when they have none). Returns the remaining members with their new
/// primary peaks and the worst one's utilization.
fn remove_one<'a>(members: &[Member<'a>]) -> (Member<'a>, Vec<Member<'a>>) {
    let idx = members
        .iter()
        .enumerate()
        .min_by(|a, b| {
            a.1.load
                .total_cmp(&b.1.load)
                .then(a.1.node.name.cmp(&b.1.node.name))
        })
        .map(|(i, _)| i)
        .expect("at least one member");
    remove_at(members, idx)
}

/// The what-if of [`remove_one`] for the member at `idx`.
fn remove_at<'a>(members: &[Member<'a>], idx: usize) -> (Member<'a>, Vec<Member<'a>>) {
    let mut rest = members.to_vec();
    let gone = rest.remove(idx);
    let total: f64 = rest.iter().map(|m| m.load).sum();
    let k = rest.len() as f64;
    for m in &mut rest {
        let share = if total > 0.0 { m.load / total } else { 1.0 / k };
        m.load += gone.load * share;
        m.peak += gone.load * share;
    }
    (gone, rest)
}

/// After `gone` leaves a group of `nodes` (it among them), its DNS load spread over the rest as
/// DNSConsolidationRisk spreads it: the remaining primary ENI closest to its limit, as (node,
/// ENI id or interface, predicted peak pps, predicted utilization). None when fewer than two
/// nodes of the group report a primary ENI.
pub fn after_removal(nodes: &[&NodeSnapshot], gone: &str) -> Option<(String, String, f64, f64)> {
    let members: Vec<Member> = nodes
        .iter()
        .filter_map(|n| {
            let p = primary(n)?;
            let w = p.latest.as_ref()?;
            Some(Member {
                node: n,
                load: node_load(n) as f64,
                peak: w.peak_pps as f64,
                limit: w.limit_pps.max(1) as f64,
            })
        })
        .collect();
    let idx = members.iter().position(|m| m.node.name == gone)?;
    if members.len() < 2 {
        return None;
    }
    let (_, after) = remove_at(&members, idx);
    let w = worst(&after)?;
    let eni = primary(w.node)
        .map(|i| i.eni_id.clone().unwrap_or_else(|| i.interface.clone()))
        .unwrap_or_default();
    Some((w.node.name.clone(), eni, w.peak, w.peak / w.limit))
}

/// The share of a group's DNS peaks each cure would take off, over the interfaces whose agents
/// measured the cache savings: (NodeLocal DNSCache, ndots:2, FQDN); None when none did.
pub(crate) fn group_shares<'a>(
    nodes: impl IntoIterator<Item = &'a NodeSnapshot>,
) -> Option<(f64, f64, f64)> {
    let (mut peak, mut cache, mut ndots2, mut fqdn) = (0u64, 0u64, 0u64, 0u64);
    for n in nodes {
        for c in n.interfaces.iter().map(measured) {
            if c.cache_measured {
                peak += c.peak;
                cache += c.cache;
                ndots2 += c.ndots2;
                fqdn += c.fqdn;
            }
        }
    }
    let p = peak as f64;
    (peak > 0).then(|| (cache as f64 / p, ndots2 as f64 / p, fqdn as f64 / p))
}

/// DNSConsolidationRisk's fix: how many nodes to keep, and what each cure measured in the
/// group would leave of the predicted peak.
fn consolidation_fix(members: &[Member], w: &Member, group: &str) -> String {
    let keep = format!(
        "Keep at least {} nodes in {group} (e.g. Karpenter NodePool `disruption.budgets` or Cluster Autoscaler `scale-down-utilization-threshold`), or cut DNS per node first",
        members.len()
    );
    let Some((cache, ndots2, fqdn)) = group_shares(members.iter().map(|m| m.node)) else {
        return format!(
            "{keep}: NodeLocal DNSCache takes at most the DNS peak ({:.0}/s on {}) off the ENI (not measured by these agents), ndots:2 and spreading the top pods lower it.",
            w.load, w.node.name
        );
    };
    let after = |share: f64| (w.peak - w.load * share).max(0.0);
    format!(
        "{keep}. Measured in the group (answers' TTLs, failed search suffixes): NodeLocal DNSCache takes ≈ {:.0}% of the DNS peaks off, so {} would peak at ≈ {:.0}/s instead of {:.0}/s; ndots:2 ≈ {:.0}% (≈ {:.0}/s); fully qualified names ≈ {:.0}% (≈ {:.0}/s); spreading the top pods lowers it too.",
        cache * 100.0,
        w.node.name,
        after(cache),
        w.peak,
        ndots2 * 100.0,
        after(ndots2),
        fqdn * 100.0,
        after(fqdn),
    )
}

fn worst<'a, 'b>(members: &'b [Member<'a>]) -> Option<&'b Member<'a>> {
    members
        .iter()
        .max_by(|a, b| (a.peak / a.limit).total_cmp(&(b.peak / b.limit)))
}

impl ConsolidationRisk {
    fn group_of(&self, input: &Input, n: &NodeSnapshot) -> String {
        let label = &self.0.consolidation_group_label;
        if !label.is_empty() {
            if let Some(v) = input
                .kube
                .node_labels
                .get(&n.name)
                .and_then(|l| l.get(label))
            {
                return format!("{label}={v}");
            }
        }
        format!(
            "{}/{}",
            n.instance_type.as_deref().unwrap_or("unknown-type"),
            n.availability_zone.as_deref().unwrap_or("unknown-zone")
        )
    }
}

impl Rule for ConsolidationRisk {
    fn id(&self) -> &'static str {
        "DNSConsolidationRisk"
    }

    fn for_duration(&self) -> Duration {
        self.0.consolidation_for
    }

    fn evaluate(&self, input: &Input, _now: SystemTime) -> Vec<Finding> {
        let limit_share = self.0.consolidation_threshold;
        let mut out = Vec::new();
        for c in &input.fleet.clusters {
            let mut groups: BTreeMap<String, Vec<Member>> = BTreeMap::new();
            for n in &c.nodes {
                let Some(p) = primary(n) else { continue };
                let w = p.latest.as_ref().expect("primary has a window");
                groups
                    .entry(self.group_of(input, n))
                    .or_default()
                    .push(Member {
                        node: n,
                        load: node_load(n) as f64,
                        peak: w.peak_pps as f64,
                        limit: w.limit_pps.max(1) as f64,
                    });
            }
            for (group, members) in groups {
                if members.len() < 2 {
                    continue;
                }
                let (gone, after) = remove_one(&members);
                let Some(w) = worst(&after) else { continue };
                let u = w.peak / w.limit;
                if u < limit_share {
                    continue;
                }
                // Keep consolidating to find where it first breaks (here: at once) and how many
                // nodes the group needs at least: the smallest count still under the threshold.
                let breaks_at = after.len();
                let now_worst = worst(&members).map(|m| m.peak / m.limit).unwrap_or(0.0);
                let primary_eni = primary(w.node)
                    .map(|i| i.eni_id.clone().unwrap_or_else(|| i.interface.clone()))
                    .unwrap_or_default();
                out.push(Finding {
                    rule: self.id().into(),
                    severity: Severity::Warning,
                    subject: Subject {
                        cluster: c.name.clone(),
                        node_group: Some(group.clone()),
                        ..Default::default()
                    },
                    summary: format!(
                        "node group {group}: if it lost {} ({} DNS/s), {} ({primary_eni}) would peak at {:.0}/s, {:.0}% of its limit",
                        gone.node.name,
                        gone.load.round(),
                        w.node.name,
                        w.peak,
                        u * 100.0
                    ),
                    evidence: evidence([
                        ("nodes", json!(members.len())),
                        ("breaks_at_nodes", json!(breaks_at)),
                        ("min_safe_nodes", json!(members.len())),
                        ("removed_node", json!(gone.node.name)),
                        ("moved_dns_pps", json!(gone.load.round())),
                        ("worst_node", json!(w.node.name)),
                        ("worst_eni", json!(primary_eni)),
                        ("predicted_peak_pps", json!(w.peak.round())),
                        ("predicted_utilization", json!(r3(u))),
                        ("utilization_now", json!(r3(now_worst))),
                        ("threshold", json!(limit_share)),
                    ]),
                    fix: consolidation_fix(&members, w, &group),
                    cost: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{DnsSnapshot, FleetSnapshot, QnameCount, SourceCount, WindowFigures};
    use crate::kube::KubeView;

    fn eni(name: &str, peak: u64, dns_peak: Option<u64>) -> EniSnapshot {
        EniSnapshot {
            interface: name.into(),
            eni_id: Some(format!("eni-{name}")),
            latest: Some(WindowFigures {
                peak_pps: peak,
                mean_pps: peak as f64 / 2.0,
                limit_pps: 1024,
                utilization: peak as f64 / 1024.0,
                dns_peak_pps: dns_peak,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(name: &str, ifaces: Vec<EniSnapshot>) -> NodeSnapshot {
        NodeSnapshot {
            name: name.into(),
            instance_type: Some("m5.large".into()),
            availability_zone: Some("us-east-1a".into()),
            interfaces: ifaces,
            ..Default::default()
        }
    }

    fn fleet(nodes: Vec<NodeSnapshot>) -> FleetSnapshot {
        FleetSnapshot::one_cluster("prod", nodes, vec![])
    }

    fn run(rule: &dyn Rule, f: &FleetSnapshot) -> Vec<Finding> {
        rule.evaluate(
            &Input {
                fleet: f,
                kube: &KubeView::default(),
            },
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn throttle_thresholds_at_each_edge() {
        let t = Thresholds::default();
        // (peak/s, linklocal_allowance_exceeded rise, unanswered previous, latest, expected)
        let table: &[(u64, u64, u64, u64, Option<Severity>)] = &[
            (818, 0, 0, 0, None),                      // 0.7988
            (820, 0, 0, 0, Some(Severity::Warning)),   // 0.8008
            (972, 0, 0, 0, Some(Severity::Warning)),   // 0.9492
            (973, 0, 0, 0, Some(Severity::Critical)),  // 0.9502
            (100, 1, 0, 0, Some(Severity::Critical)),  // dropping now, whatever the peak
            (100, 0, 5, 14, None),                     // +9 unanswered: below the jump
            (100, 0, 5, 15, Some(Severity::Critical)), // +10
            (100, 0, 50, 20, None),                    // fewer than before
        ];
        for &(peak, exceeded, before, latest, want) in table {
            let mut i = eni("eth0", peak, None);
            if exceeded > 0 {
                i.allowance_exceeded_latest
                    .insert(LINKLOCAL_EXCEEDED.into(), exceeded);
            }
            i.dns = Some(DnsSnapshot {
                unanswered_previous: before,
                unanswered_latest: latest,
                ..Default::default()
            });
            let got = run(&ThrottleRisk(t.clone()), &fleet(vec![node("n1", vec![i])]));
            assert_eq!(
                got.first().map(|f| f.severity),
                want,
                "peak {peak}, exceeded {exceeded}, unanswered {before}→{latest}: {got:?}"
            );
            if let Some(f) = got.first() {
                assert_eq!(f.subject.eni.as_deref(), Some("eni-eth0"));
                assert_eq!(f.evidence["peak_pps"], peak);
                if exceeded > 0 || latest >= before + 10 {
                    assert!(f.summary.contains("dropping"), "{}", f.summary);
                }
            }
        }
    }

    #[test]
    fn throttle_fix_figures() {
        let mut i = eni("eth0", 900, Some(880));
        i.dns = Some(DnsSnapshot {
            search_expansion_share: 0.6,
            queries_latest: 1000,
            top_qnames: vec![QnameCount {
                qname: "db.example.com".into(),
                queries: 500,
            }],
            top_sources: vec![
                SourceCount {
                    source: "10.0.1.5".into(),
                    namespace: "shop".into(),
                    pod: "web-1".into(),
                    queries: 500,
                    ..Default::default()
                },
                SourceCount {
                    source: "10.0.1.6".into(),
                    queries: 250,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        // What a group's shares sum is the same figures, without the spread's names.
        let (with, without) = (savings(&i), measured(&i));
        assert_eq!(with.spread.len(), 2);
        assert_eq!(
            without,
            Cures {
                spread: Vec::new(),
                ..with
            }
        );
        let f = &run(
            &ThrottleRisk(Thresholds::default()),
            &fleet(vec![node("n1", vec![i])]),
        )[0];
        let s = &f.evidence["savings_pps"];
        // NodeLocal DNSCache ≈ the DNS peak; ndots ≈ 880 × 0.6 = 528; spreading = the share of
        // queries × the DNS peak: 880 × 500/1000 = 440, 880 × 250/1000 = 220.
        assert_eq!(s["nodelocal_dnscache"], 880);
        assert_eq!(s["ndots2_or_fqdn"], 528);
        assert_eq!(s["spread_top_sources"][0]["source"], "shop/web-1");
        assert_eq!(s["spread_top_sources"][0]["pps"], 440);
        assert_eq!(s["spread_top_sources"][1]["source"], "10.0.1.6");
        assert_eq!(s["spread_top_sources"][1]["pps"], 220);
        assert!(f.fix.contains("saves ≈ 880/s"), "{}", f.fix);
        assert!(f.fix.contains("db.example.com"), "{}", f.fix);
        assert!(f.fix.contains("saves ≈ 528/s"), "{}", f.fix);
        assert!(f.fix.contains("shop/web-1 ≈ 440/s"), "{}", f.fix);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.evidence["search_expansion_share"], 0.6);
        // Without the DNS-only peak, the whole link-local peak stands in for it.
        let mut j = eni("eth0", 900, None);
        j.dns = None;
        let g = &run(
            &ThrottleRisk(Thresholds::default()),
            &fleet(vec![node("n1", vec![j])]),
        )[0];
        assert_eq!(g.evidence["savings_pps"]["nodelocal_dnscache"], 900);
        assert_eq!(g.evidence["savings_pps"]["ndots2_or_fqdn"], 0);
    }

    /// An agent that measured the cures: the fix quotes them and what the peak would become.
    #[test]
    fn throttle_fix_quotes_measured_savings() {
        use crate::fleet::Savings;
        let mut i = eni("eth0", 950, Some(900));
        i.dns = Some(DnsSnapshot {
            search_expansion_share: 0.4,
            queries_latest: 9000,
            measured: Savings {
                cacheable_share: Some(0.62),
                cache_pps: Some(540.4),
                cache_peak_pps: Some(571.0),
                ndots2_pps: Some(90.0),
                fqdn_pps: Some(360.0),
            },
            ..Default::default()
        });
        let f = &run(
            &ThrottleRisk(Thresholds::default()),
            &fleet(vec![node("n1", vec![i])]),
        )[0];
        let s = &f.evidence["savings_pps"];
        // Cache: the busiest second's cacheable queries; FQDN 900 × 0.4 = 360; ndots:2 a
        // quarter of those (90 of 360 per second in the window) = 90.
        assert_eq!(s["nodelocal_dnscache"], 571);
        assert_eq!(s["nodelocal_dnscache_measured"], true);
        assert_eq!(s["cacheable_share"], 0.62);
        assert_eq!(
            (s["fqdn"].as_u64(), s["ndots2"].as_u64()),
            (Some(360), Some(90))
        );
        let a = &f.evidence["peak_after_pps"];
        assert_eq!(
            (
                a["nodelocal_dnscache"].as_u64(),
                a["ndots2"].as_u64(),
                a["fqdn"].as_u64()
            ),
            (Some(329), Some(810), Some(540))
        );
        for part in [
            "62% of queries would have been cache hits",
            "saves ≈ 571/s in the busiest second (mean 540.4/s)",
            "peak would become ≈ 329/s of 900/s",
            "ndots:2 saves ≈ 90/s (peak → ≈ 810/s)",
            "fully qualified names ≈ 360/s (peak → ≈ 540/s)",
        ] {
            assert!(f.fix.contains(part), "{part} not in {}", f.fix);
        }
        assert!(!f.fix.contains("at most"), "{}", f.fix);
        // More cacheable in the busiest second than the DNS peak (a sliding peak in another
        // second): at most the peak.
        let mut j = eni("eth0", 900, Some(800));
        j.dns = Some(DnsSnapshot {
            measured: Savings {
                cache_peak_pps: Some(850.0),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(savings(&j).cache, 800);
        assert_eq!(savings(&j).after(800), 0);
    }

    #[test]
    fn consolidation_fix_quotes_measured_shares() {
        use crate::fleet::Savings;
        let measured = |name: &str, peak: u64, cache: f64| {
            let mut i = eni("eth0", peak, Some(peak));
            i.dns = Some(DnsSnapshot {
                search_expansion_share: 0.1,
                measured: Savings {
                    cache_peak_pps: Some(cache),
                    ndots2_pps: Some(1.0),
                    fqdn_pps: Some(2.0),
                    ..Default::default()
                },
                ..Default::default()
            });
            node(name, vec![i])
        };
        let f = &run(
            &ConsolidationRisk(Thresholds::default()),
            &fleet(vec![
                measured("a", 700, 350.0),
                measured("b", 700, 350.0),
                measured("c", 240, 120.0),
            ]),
        )[0];
        // Half of every peak is cacheable: a peaks at 820 with 820 of DNS → 410. FQDN 10 % → 738;
        // ndots:2 half of that, 5 % → 779.
        for part in [
            "NodeLocal DNSCache takes ≈ 50% of the DNS peaks off",
            "would peak at ≈ 410/s instead of 820/s",
            "ndots:2 ≈ 5% (≈ 779/s)",
            "fully qualified names ≈ 10% (≈ 738/s)",
        ] {
            assert!(f.fix.contains(part), "{part} not in {}", f.fix);
        }
        // Unmeasured: the upper bound, said so.
        let f = &run(
            &ConsolidationRisk(Thresholds::default()),
            &fleet(vec![loaded("a", 700), loaded("b", 700), loaded("c", 240)]),
        )[0];
        assert!(
            f.fix.contains("at most the DNS peak (820/s on b)"),
            "{}",
            f.fix
        );
    }

    /// A node whose only (primary) ENI has `peak` link-local packets/s, all DNS.
    fn loaded(name: &str, peak: u64) -> NodeSnapshot {
        node(name, vec![eni("eth0", peak, Some(peak))])
    }

    #[test]
    fn consolidation_edges() {
        let t = Thresholds::default();
        // Three nodes: 400, 400, 100. Remove the 100 (least loaded): each 400 gets half → 450,
        // 44%: fine. 700, 700, 236 → 818 = 79.9%: fine; 700, 700, 240 → 820 = 80.08%: flagged.
        let table: &[(&[u64], bool)] = &[
            (&[400, 400, 100], false),
            (&[700, 700, 236], false),
            (&[700, 700, 240], true),
            // Proportional: 900 and 100 share the 200 as 180/20 → 1080 on the first.
            (&[900, 100, 200], true),
            (&[820], false), // a group of one has nothing to consolidate into
        ];
        for (loads, want) in table {
            let nodes = loads
                .iter()
                .enumerate()
                .map(|(k, &l)| loaded(&format!("n{k}"), l))
                .collect();
            let got = run(&ConsolidationRisk(t.clone()), &fleet(nodes));
            assert_eq!(!got.is_empty(), *want, "{loads:?}: {got:?}");
            if let Some(f) = got.first() {
                assert_eq!(f.evidence["nodes"], loads.len());
                assert_eq!(f.evidence["breaks_at_nodes"], loads.len() - 1);
                assert_eq!(f.subject.node_group.as_deref(), Some("m5.large/us-east-1a"));
            }
        }
        let f = &run(
            &ConsolidationRisk(t.clone()),
            &fleet(vec![loaded("a", 700), loaded("b", 700), loaded("c", 240)]),
        )[0];
        assert_eq!(f.evidence["removed_node"], "c");
        assert_eq!(f.evidence["moved_dns_pps"], 240.0);
        assert_eq!(f.evidence["predicted_peak_pps"], 820.0);
        assert_eq!(f.evidence["predicted_utilization"], 0.801);
        let f = &run(
            &ConsolidationRisk(t),
            &fleet(vec![loaded("a", 900), loaded("b", 100), loaded("c", 200)]),
        )[0];
        assert_eq!(f.evidence["removed_node"], "b");
        // 100 moves: 900/(900+200) → 81.8 to a, 18.2 to c: a peaks at 982.
        assert_eq!(f.evidence["predicted_peak_pps"], 982.0);
        assert_eq!(f.evidence["worst_node"], "a");
    }

    #[test]
    fn consolidation_groups_by_type_and_zone_or_label() {
        let mut other = loaded("c", 240);
        other.availability_zone = Some("us-east-1b".into());
        let nodes = vec![loaded("a", 700), loaded("b", 700), other];
        // a and b alone: losing one puts 1400 on the other.
        let f = run(
            &ConsolidationRisk(Thresholds::default()),
            &fleet(nodes.clone()),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].evidence["nodes"], 2);
        // With a label that puts all three in one pool, c joins them again: 820 → flagged as
        // one group of three.
        let t = Thresholds {
            consolidation_group_label: "karpenter.sh/nodepool".into(),
            ..Thresholds::default()
        };
        let mut kube = KubeView::default();
        for n in ["a", "b", "c"] {
            kube.node_labels.insert(
                n.into(),
                [("karpenter.sh/nodepool".to_string(), "general".to_string())].into(),
            );
        }
        let fl = fleet(nodes);
        let got = ConsolidationRisk(t).evaluate(
            &Input {
                fleet: &fl,
                kube: &kube,
            },
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].evidence["nodes"], 3);
        assert_eq!(
            got[0].subject.node_group.as_deref(),
            Some("karpenter.sh/nodepool=general")
        );
    }
}
