//! `headroom_node_scale_down_blocked{node,reason}`: per open ScaleDownBlocked finding, the
//! number of pods that pin the node for each reason the autoscaler would report (1 for a
//! node-level reason such as its scale-down-disabled annotation). Read from the findings.

use super::descriptors::{self as d};
use crate::findings::{Engine, State};
use crate::rules::scale_down::RULE;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockedLabels {
    node: String,
    reason: String,
}

pub fn register(r: &mut Registry, engine: &Engine) {
    let blocked = Family::<BlockedLabels, Gauge>::default();
    for rec in engine.records() {
        if rec.rule != RULE || rec.state == State::Resolved {
            continue;
        }
        let node = rec.subject.node.clone().unwrap_or_default();
        let reasons = rec.evidence.get("reasons").and_then(|v| v.as_object());
        for (reason, n) in reasons.into_iter().flatten() {
            blocked
                .get_or_create(&BlockedLabels {
                    node: node.clone(),
                    reason: reason.clone(),
                })
                .set(n.as_i64().unwrap_or(0));
        }
    }
    d::register(r, &d::NODE_SCALE_DOWN_BLOCKED, blocked);
}
