//! Where the fake's DaemonSet controller and scheduler place a pod: its own
//! reading of the pod template's `nodeSelector` and required node affinity
//! (the scheduler's NodeAffinity plugin) and of the node's Ready condition,
//! over the JSON as the API server stores it. It shares no code with the
//! plugin's `placement`, which `status` and `install` use to explain the
//! same decisions: a bug there shows as a disagreement with this.

use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

/// Whether the scheduler would place a pod of `template` (a pod spec as
/// JSON) on `node`: every `nodeSelector` label equal, and, when there are
/// required node selector terms, at least one term whose every requirement
/// holds.
pub fn fits(template: &Value, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let label = |k: &str| labels.get(k).map(String::as_str);
    let selector_ok = template["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let terms = template["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array();
    let affinity_ok = match terms {
        None => true,
        Some(terms) if terms.is_empty() => true,
        Some(terms) => terms.iter().any(|t| {
            let name = node.metadata.name.as_deref();
            let exprs = t["matchExpressions"].as_array().into_iter().flatten();
            let fields = t["matchFields"].as_array().into_iter().flatten();
            exprs
                .map(|r| requirement(r, label(r["key"].as_str().unwrap_or_default())))
                .chain(
                    fields.map(|r| requirement(r, (r["key"] == "metadata.name").then_some(name).flatten())),
                )
                .all(|ok| ok)
        }),
    };
    selector_ok && affinity_ok
}

/// One `NodeSelectorRequirement` against the node's value for its key.
fn requirement(r: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = r["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare =
        |ord: std::cmp::Ordering| match (value.and_then(number), values.first().and_then(|w| number(w))) {
            (Some(v), Some(w)) => v.cmp(&w) == ord,
            _ => false,
        };
    match r["operator"].as_str() {
        Some("In") => value.is_some_and(|v| values.contains(&v)),
        Some("NotIn") => !value.is_some_and(|v| values.contains(&v)),
        Some("Exists") => value.is_some(),
        Some("DoesNotExist") => value.is_none(),
        Some("Gt") => compare(std::cmp::Ordering::Greater),
        Some("Lt") => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

/// Whether a kubelet reports for `node`: its Ready condition is True.
pub fn kubelet_reports(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()},
        }))
        .unwrap()
    }

    #[test]
    fn the_scheduler_reads_selectors_and_required_affinity() {
        let amd = node("a", &[("kubernetes.io/arch", "amd64"), ("rank", "5")]);
        let arm = node("b", &[("kubernetes.io/arch", "arm64")]);
        let t = json!({"nodeSelector": {"kubernetes.io/arch": "amd64"}});
        assert!(fits(&t, &amd) && !fits(&t, &arm));
        let term = |e: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [e]}}}});
        let gt = term(json!({"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["4"]}]}));
        assert!(fits(&gt, &amd) && !fits(&gt, &arm));
        let absent = term(json!({"matchExpressions": [{"key": "rank", "operator": "DoesNotExist"}]}));
        assert!(!fits(&absent, &amd) && fits(&absent, &arm));
        let by_name =
            term(json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}));
        assert!(!fits(&by_name, &amd) && fits(&by_name, &arm));
        // Terms are alternatives.
        let either = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]},
            {"matchExpressions": [{"key": "rank", "operator": "Exists"}]},
        ]}}}});
        assert!(fits(&either, &amd) && fits(&either, &arm));
    }
}
