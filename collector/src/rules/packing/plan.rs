//! The arithmetic of NodeGroupPacking, pure: a node group's pods (today's requests, or the
//! recommended ones where a workload has them) packed at `target_node_utilization` on its own
//! instance type and on each candidate of the catalog, and the DNS each move would put on an
//! ENI — the group's measured link-local DNS spread over the new node count and their ENIs,
//! from the same per-node figures DNSConsolidationRisk reads ([`dns::primary`],
//! [`dns::dns_peak`], [`dns::group_shares`]).

use crate::catalog::{Catalog, InstanceType, HOURS_PER_MONTH};
use crate::fleet::NodeSnapshot;
use crate::kube::objects::{NodeInfo, INSTANCE_TYPE, REGION};
use crate::kube::pod::PodInfo;
use crate::rules::dns;
use std::collections::{BTreeMap, HashMap};

/// Candidate instance types judged per group at most (the shipped catalog holds hundreds).
pub const MAX_CANDIDATES: usize = 48;
/// Instance classes a group may move between: compute, general purpose, memory optimized.
/// Burstable (t) types run on CPU credits, so requests at 65 % would spend them.
const CLASSES: [&str; 3] = ["c", "m", "r"];
const MIB: f64 = 1024.0 * 1024.0;

/// A workload as [`PodInfo::workload`] names it: (namespace, kind, name).
pub type WorkloadKey = (String, String, String);

/// Recommended requests per pod of a workload, (CPU cores, memory bytes), from
/// RequestsRightSizing's `RecommendedRequests` (`packing::recommended`); empty means today's.
pub type Recommended = HashMap<WorkloadKey, Requests>;

/// Requests of one pod: (CPU cores, memory bytes).
pub type Requests = (f64, u64);

/// CPU in cores and memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Res {
    pub cpu: f64,
    pub mem: f64,
}

impl Res {
    fn max(self, o: Res) -> Res {
        Res {
            cpu: self.cpu.max(o.cpu),
            mem: self.mem.max(o.mem),
        }
    }
}

/// What a group's pods ask of its nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Demand {
    /// The requests of the pods that move between nodes, added up.
    pub pods: Res,
    /// The largest single request of a moving pod (a node must hold it whole).
    pub largest: Res,
    /// DaemonSet and static pods: every node carries them (the heaviest node's set).
    pub per_node: Res,
    pub pods_moving: usize,
    /// Moving pods whose workload has a recommendation.
    pub pods_recommended: usize,
}

/// The group's demand, with `rec` replacing the requests of the workloads it names.
pub fn demand(pods: &[&PodInfo], rec: &Recommended) -> Demand {
    let mut d = Demand::default();
    let mut per_node: HashMap<&str, Res> = HashMap::new();
    // One look-up per workload, not per pod (thousands of workloads, 150 000 pods).
    let mut seen: HashMap<(&str, &str, &str), Option<Requests>> = HashMap::new();
    for p in pods {
        let today = Res {
            cpu: p.cpu_m as f64 / 1000.0,
            mem: p.memory as f64,
        };
        if p.daemonset || p.mirror {
            let r = per_node.entry(&p.node).or_default();
            r.cpu += today.cpu;
            r.mem += today.mem;
            continue;
        }
        let recommended = p
            .workload()
            .filter(|_| !rec.is_empty())
            .and_then(|(kind, name)| {
                *seen.entry((&*p.namespace, kind, name)).or_insert_with(|| {
                    rec.get(&(p.namespace.to_string(), kind.to_string(), name.to_string()))
                        .copied()
                })
            });
        let r = match recommended {
            Some((cpu, mem)) if cpu.is_finite() && cpu >= 0.0 => {
                d.pods_recommended += 1;
                Res {
                    cpu,
                    mem: mem as f64,
                }
            }
            _ => today,
        };
        d.pods.cpu += r.cpu;
        d.pods.mem += r.mem;
        d.largest = d.largest.max(r);
        d.pods_moving += 1;
    }
    d.per_node = per_node.into_values().fold(Res::default(), Res::max);
    d
}

/// Nodes of `usable` size (allocatable) that hold `d` with every node at most `target`
/// requested; None when a node cannot (its DaemonSets alone fill the target, or the largest
/// pod does not fit). At least one node.
pub fn nodes_needed(d: &Demand, usable: Res, target: f64) -> Option<u64> {
    let room = |u: f64, per: f64| u * target - per;
    let (rc, rm) = (
        room(usable.cpu, d.per_node.cpu),
        room(usable.mem, d.per_node.mem),
    );
    if rc <= 0.0
        || rm <= 0.0
        || d.largest.cpu > usable.cpu - d.per_node.cpu
        || d.largest.mem > usable.mem - d.per_node.mem
    {
        return None;
    }
    // A hair under a whole number is that number (11.999999 nodes of floating point are 12).
    let n = |need: f64, room: f64| (need / room - 1e-9).ceil().max(1.0) as u64;
    Some(n(d.pods.cpu, rc).max(n(d.pods.mem, rm)))
}

/// The group's link-local DNS as its agents measured it, per node today.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupDns {
    /// DNS peaks on primary ENIs and on the other ENIs, added over the group (scaled up to
    /// every node when some nodes send no figures).
    pub primary: f64,
    pub secondary: f64,
    /// Secondary ENIs that carried figures, over the group (scaled likewise).
    pub secondary_enis: f64,
    /// The most non-DNS link-local traffic (IMDS, Time Sync) on one primary ENI: it stays per node.
    pub base: f64,
    pub limit: f64,
    pub nodes_measured: usize,
    /// The busiest primary ENI's share of its limit today.
    pub worst_now: f64,
    /// NodeLocal DNSCache's measured share of the DNS peaks (None: not measured).
    pub cache_share: Option<f64>,
}

impl GroupDns {
    /// The group's DNS from its nodes' agents, `nodes_now` nodes in all; None when none report.
    pub fn measure(agents: &[&NodeSnapshot], nodes_now: usize) -> Option<GroupDns> {
        let mut g = GroupDns {
            primary: 0.0,
            secondary: 0.0,
            secondary_enis: 0.0,
            base: 0.0,
            limit: f64::MAX,
            nodes_measured: 0,
            worst_now: 0.0,
            cache_share: None,
        };
        for n in agents {
            let Some(p) = dns::primary(n) else { continue };
            let Some(w) = p.latest.as_ref() else { continue };
            let dns_primary = dns::dns_peak(p) as f64;
            g.primary += dns_primary;
            g.secondary += dns::node_load(n) as f64 - dns_primary;
            g.secondary_enis += n
                .interfaces
                .iter()
                .filter(|i| i.latest.is_some() && i.interface != p.interface)
                .count() as f64;
            g.base = g.base.max(w.peak_pps as f64 - dns_primary);
            let limit = w.limit_pps.max(1) as f64;
            g.limit = g.limit.min(limit);
            g.worst_now = g.worst_now.max(w.peak_pps as f64 / limit);
            g.nodes_measured += 1;
        }
        if g.nodes_measured == 0 {
            return None;
        }
        let scale = nodes_now.max(g.nodes_measured) as f64 / g.nodes_measured as f64;
        g.primary *= scale;
        g.secondary *= scale;
        g.secondary_enis *= scale;
        g.cache_share = dns::group_shares(agents.iter().copied()).map(|s| s.0);
        Some(g)
    }

    /// The busiest ENI's link-local peak after the group moves to `nodes` nodes of up to
    /// `max_enis` ENIs each, with `cut` (0..1) of the DNS taken off first: each node's primary
    /// ENI takes its share of today's primary DNS (hostNetwork pods, 169.254.169.253) plus the
    /// IMDS and Time Sync it sends; the secondary DNS spreads over the secondary ENIs in use,
    /// which grow with the pods per node (today's count × the packing), at most `max_enis` − 1.
    pub fn peak_after(&self, nodes: u64, max_enis: u32, cut: f64) -> f64 {
        let n = nodes.max(1) as f64;
        let keep = 1.0 - cut.clamp(0.0, 1.0);
        let secondaries = ((self.secondary_enis / n).ceil()).min(max_enis.saturating_sub(1) as f64);
        let (primary, secondary) = if secondaries >= 1.0 {
            (self.primary / n, self.secondary / (n * secondaries))
        } else {
            ((self.primary + self.secondary) / n, 0.0)
        };
        (primary * keep + self.base).max(secondary * keep)
    }
}

/// One instance type a group could move to.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub instance_type: String,
    pub size: InstanceType,
    pub usd_per_hour: f64,
    /// Nodes needed with the recommended requests (today's where there are none).
    pub nodes: u64,
    /// Nodes needed with today's requests.
    pub nodes_today: Option<u64>,
    pub usd_per_month: f64,
    /// The busiest ENI's link-local peak after the move and its share of the limit (None: the
    /// group sends no DNS figures).
    pub dns_peak: Option<f64>,
    pub dns_utilization: Option<f64>,
    pub keeps_dns: bool,
}

/// What a group needs and where it could go.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub nodes_now: usize,
    /// The group's most common instance type and region.
    pub instance_type: String,
    pub region: Option<String>,
    /// Every node's on-demand price, added up (None: some node's price is not in the catalog).
    pub usd_now: Option<f64>,
    /// Nodes of today's type needed with today's and with the recommended requests.
    pub needed_today: Option<u64>,
    pub needed_recommended: Option<u64>,
    pub demand_today: Demand,
    pub demand: Demand,
    pub dns: Option<GroupDns>,
    /// Candidates that keep DNS under the threshold, cheapest first.
    pub ranked: Vec<Candidate>,
    /// Candidates cheaper than the best kept one that would put an ENI over the threshold.
    pub ranked_out: Vec<Candidate>,
    /// Candidate types judged (at most [`MAX_CANDIDATES`]).
    pub judged: usize,
}

impl Plan {
    pub fn best(&self) -> Option<&Candidate> {
        self.ranked.first()
    }
}

/// The settings the plan reads.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub target: f64,
    pub dns_threshold: f64,
}

/// `m5.4xlarge` → ("m", "5", "", "4xlarge"): class, generation, attributes (a, g, i, d, n…), size.
fn family(t: &str) -> Option<(&str, &str, &str, &str)> {
    let (fam, size) = t.split_once('.')?;
    let c = fam.find(|ch: char| ch.is_ascii_digit())?;
    let rest = &fam[c..];
    let g = rest
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((&fam[..c], &rest[..g], &rest[g..], size))
}

/// The catalog's types a group of `current` may move to in `region`: itself, and the c, m and
/// r types of its generation and attributes (the same CPU maker and architecture, so images
/// and per-core speed hold), bare metal left out; at most [`MAX_CANDIDATES`].
pub fn candidates<'c>(
    catalog: &'c Catalog,
    current: &str,
    region: &str,
) -> Vec<(&'c str, InstanceType, f64)> {
    let Some((_, gen, attrs, _)) = family(current) else {
        return Vec::new();
    };
    let mut v: Vec<(&str, InstanceType, f64)> = catalog
        .types
        .iter()
        .filter(|(name, _)| {
            name.as_str() == current
                || family(name).is_some_and(|(c, g, a, s)| {
                    CLASSES.contains(&c) && g == gen && a == attrs && !s.starts_with("metal")
                })
        })
        .filter_map(|(name, t)| {
            let p = catalog.prices.get(&(name.clone(), region.to_string()))?;
            Some((name.as_str(), *t, *p))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.truncate(MAX_CANDIDATES);
    v
}

fn most_common<'a>(it: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for s in it {
        *count.entry(s).or_default() += 1;
    }
    count
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(s, _)| s.to_string())
}

/// The group's plan: `nodes` with their `pods`, the agents' figures of those nodes, and the
/// recommended requests. None for an empty group or one whose allocatable is unknown.
pub fn plan(
    nodes: &[&NodeInfo],
    pods: &[&PodInfo],
    agents: &[&NodeSnapshot],
    rec: &Recommended,
    catalog: &Catalog,
    p: Params,
) -> Option<Plan> {
    let instance_type = most_common(nodes.iter().filter_map(|n| n.label(INSTANCE_TYPE)))?;
    let region = most_common(nodes.iter().filter_map(|n| n.label(REGION)));
    // Allocatable of today's nodes, and its share of the catalog's capacity (what the kubelet
    // and system reserve), which the candidates are assumed to keep.
    let (mut alloc, mut share, mut shares, mut known) = (Res::default(), Res::default(), 0, 0);
    for n in nodes {
        let (Some(c), Some(m)) = (n.cpu_m, n.memory) else {
            continue;
        };
        alloc.cpu += c as f64 / 1000.0;
        alloc.mem += m as f64;
        known += 1;
        if let Some(t) = n.label(INSTANCE_TYPE).and_then(|t| catalog.types.get(t)) {
            share.cpu += c as f64 / 1000.0 / t.vcpu as f64;
            share.mem += m as f64 / (t.memory_mib as f64 * MIB);
            shares += 1;
        }
    }
    if known == 0 {
        return None;
    }
    let usable_now = Res {
        cpu: alloc.cpu / known as f64,
        mem: alloc.mem / known as f64,
    };
    let kept = if shares > 0 {
        Res {
            cpu: (share.cpu / shares as f64).min(1.0),
            mem: (share.mem / shares as f64).min(1.0),
        }
    } else {
        Res { cpu: 1.0, mem: 1.0 }
    };
    let demand_today = demand(pods, &Recommended::new());
    let demand = if rec.is_empty() {
        demand_today
    } else {
        demand(pods, rec)
    };
    let dns = GroupDns::measure(agents, nodes.len());
    let mut usd_now = Some(0.0);
    for n in nodes {
        let m = catalog
            .monthly(n.label(INSTANCE_TYPE), n.label(REGION), false)
            .usd_per_month;
        usd_now = usd_now.zip(m).map(|(a, b)| a + b);
    }
    let mut all: Vec<Candidate> = Vec::new();
    let list = region
        .as_deref()
        .map(|r| candidates(catalog, &instance_type, r))
        .unwrap_or_default();
    let judged = list.len();
    for (name, size, usd_per_hour) in list {
        let usable = Res {
            cpu: size.vcpu as f64 * kept.cpu,
            mem: size.memory_mib as f64 * MIB * kept.mem,
        };
        let Some(count) = nodes_needed(&demand, usable, p.target) else {
            continue;
        };
        let dns_peak = dns.map(|g| g.peak_after(count, size.max_enis, 0.0));
        let dns_utilization = dns_peak.zip(dns).map(|(pk, g)| pk / g.limit);
        all.push(Candidate {
            instance_type: name.to_string(),
            size,
            usd_per_hour,
            nodes: count,
            nodes_today: nodes_needed(&demand_today, usable, p.target),
            usd_per_month: round2(count as f64 * usd_per_hour * HOURS_PER_MONTH),
            dns_peak,
            dns_utilization,
            keeps_dns: dns_utilization.map_or(true, |u| u < p.dns_threshold),
        });
    }
    // Cheapest first; at equal cost the lower DNS peak (more nodes), then the name.
    all.sort_by(|a, b| {
        a.usd_per_month
            .total_cmp(&b.usd_per_month)
            .then(
                a.dns_peak
                    .unwrap_or(0.0)
                    .total_cmp(&b.dns_peak.unwrap_or(0.0)),
            )
            .then(a.instance_type.cmp(&b.instance_type))
    });
    let (ranked, out): (Vec<Candidate>, Vec<Candidate>) =
        all.into_iter().partition(|c| c.keeps_dns);
    let bar = ranked.first().map(|c| c.usd_per_month).unwrap_or(f64::MAX);
    let ranked_out = out.into_iter().filter(|c| c.usd_per_month <= bar).collect();
    Some(Plan {
        nodes_now: nodes.len(),
        instance_type,
        region,
        usd_now: usd_now.map(round2),
        needed_today: nodes_needed(&demand_today, usable_now, p.target),
        needed_recommended: nodes_needed(&demand, usable_now, p.target),
        demand_today,
        demand,
        dns,
        ranked,
        ranked_out,
        judged,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
