//! Kubernetes objects in fixes: quantities, and JSON values (an HPA's spec as the API server
//! has it) written as block-style YAML, the way `kubectl get -o yaml` shows them. Strings are
//! plain only where YAML cannot read them as anything else (a letter first, then letters,
//! digits, `.`, `_`, `/`, `-`, and not a YAML 1.1 boolean or null), else JSON-quoted, which
//! YAML reads as the same string; numbers, booleans and null as JSON writes them.

use serde_json::Value;

/// A Kubernetes quantity for a target average: whole numbers plain, else milli-units.
pub fn quantity(v: f64) -> String {
    let milli = (v * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// `v` as a YAML document (block style, two-space indents, sequences at their key's indent).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out += &scalar(other);
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.push_str(&" ".repeat(indent));
}

/// A mapping at `indent`; with `inline`, its first key goes where the cursor is (after `- `).
fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize, inline: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if !(inline && i == 0) {
            pad(out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        match v {
            Value::Object(c) if !c.is_empty() => {
                out.push('\n');
                map(out, c, indent + 2, false);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                seq(out, a, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        pad(out, indent);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                map(out, m, indent + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// Words YAML 1.1 (what many Kubernetes tools still parse) reads as booleans or null.
const RESERVED: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

fn string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(quantity(2.8), "2800m");
        assert_eq!(quantity(2.0), "2");
        assert_eq!(quantity(60.0114), "60011m");
    }

    #[test]
    fn an_hpa_reads_as_kubectl_writes_it() {
        let v = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"maxReplicas": 40, "metrics": [
                {"type": "External", "external": {
                    "metric": {"name": "envoy.upstream_rq_total",
                        "selector": {"matchLabels": {"app": "web", "on": "yes"}}},
                    "target": {"type": "AverageValue", "averageValue": "2"}}},
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {}, "tags": [["a", 1], []], "flag": true, "none": null,
                "odd key": "line\nbreak \"quoted\""}
        });
        let want = "apiVersion: autoscaling/v2\n\
kind: HorizontalPodAutoscaler\n\
metadata:\n  name: web\n  namespace: shop\n\
spec:\n  behavior: {}\n  flag: true\n  maxReplicas: 40\n  metrics:\n  \
- external:\n      metric:\n        name: envoy.upstream_rq_total\n        selector:\n          \
matchLabels:\n            app: web\n            \"on\": \"yes\"\n      \
target:\n        averageValue: \"2\"\n        type: AverageValue\n    type: External\n  \
- resource:\n      name: cpu\n      target:\n        averageUtilization: 50\n        type: Utilization\n    \
type: Resource\n  none: null\n  \"odd key\": \"line\\nbreak \\\"quoted\\\"\"\n  tags:\n  -\n    - a\n    - 1\n  - []\n";
        assert_eq!(to_yaml(&v), want, "{}", to_yaml(&v));
        assert_eq!(to_yaml(&json!("2")), "\"2\"\n");
        assert_eq!(to_yaml(&json!([])), "[]\n");
    }
}
