//! Why a node has no ready agent: the DaemonSet does not select it (OS,
//! architecture), the node is not Ready, or the agent pod's own reason
//! (its container's waiting or last termination state). Pure functions over
//! the API objects, for `status` and `install`.

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec};

/// The well-known node labels the kubelet sets.
pub const OS_LABEL: &str = "kubernetes.io/os";
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether one requirement holds for `value` (the label's or field's,
/// `None` when absent), with the scheduler's operator semantics.
fn holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(int), values.first().and_then(|w| int(w))), (Some(v), Some(w)) if v > w)
        }
        "Lt" => {
            matches!((value.and_then(int), values.first().and_then(|w| int(w))), (Some(v), Some(w)) if v < w)
        }
        _ => false,
    }
}

/// The unmet requirement, worded: the node OS and architecture as the user
/// thinks of them, anything else as the selector says.
fn word(r: &NodeSelectorRequirement, value: Option<&str>) -> String {
    let wanted = r.values.as_deref().unwrap_or_default().join(", ");
    let have = value.unwrap_or("unknown (label missing)");
    match (r.key.as_str(), r.operator.as_str()) {
        (OS_LABEL, "In") => format!("node OS {have}: the agent runs on {wanted} only"),
        (ARCH_LABEL, "In") => {
            format!("architecture {have}: no agent image for it (the DaemonSet selects {wanted})")
        }
        (key, op) => {
            format!("label {key}={have} does not meet the DaemonSet's node selection ({key} {op} [{wanted}])")
        }
    }
}

/// Why the pod template's nodeSelector and required node affinity leave
/// `node` out, or `None` when they select it. Terms are alternatives; the
/// reason given is the first term's.
pub fn unselected(pod: &PodSpec, node: &Node) -> Option<String> {
    for (k, v) in pod.node_selector.iter().flatten() {
        let req = NodeSelectorRequirement {
            key: k.clone(),
            operator: "In".into(),
            values: Some(vec![v.clone()]),
        };
        if !holds(&req, label(node, k)) {
            return Some(word(&req, label(node, k)));
        }
    }
    let terms = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| s.node_selector_terms.as_slice())
        .unwrap_or_default();
    if terms.is_empty() || terms.iter().any(|t| failing(t, node).is_none()) {
        return None;
    }
    failing(&terms[0], node).map(|(r, v)| word(r, v))
}

/// The first requirement of `term` that `node` does not meet, with the
/// node's value for it.
fn failing<'a>(
    term: &'a NodeSelectorTerm,
    node: &'a Node,
) -> Option<(&'a NodeSelectorRequirement, Option<&'a str>)> {
    let exprs = term
        .match_expressions
        .iter()
        .flatten()
        .map(|r| (r, label(node, &r.key)));
    // The only field the scheduler supports in matchFields.
    let fields = term.match_fields.iter().flatten().map(|r| {
        let v = (r.key == "metadata.name")
            .then_some(node.metadata.name.as_deref())
            .flatten();
        (r, v)
    });
    exprs.chain(fields).find(|(r, v)| !holds(r, *v))
}

/// Whether the DaemonSet's pod template selects `node`.
pub fn selects(pod: &PodSpec, node: &Node) -> bool {
    unselected(pod, node).is_none()
}

/// Why `node` is not Ready (its Ready condition's reason and message), or
/// `None` when it is.
pub fn node_not_ready(node: &Node) -> Option<String> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let ready = conditions.and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => {
            let detail = [c.reason.as_deref(), c.message.as_deref()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            Some(if detail.is_empty() {
                format!("node not Ready (Ready={})", c.status)
            } else {
                format!("node not Ready ({detail})")
            })
        }
        None => Some("node not Ready (no Ready condition reported)".into()),
    }
}

/// Why an agent pod is not ready, in its own words: each container's
/// waiting reason and message and its last termination; else the pod's
/// phase and the Ready condition's reason.
pub fn pod_not_ready_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let mut parts = Vec::new();
    for c in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        if c.ready {
            continue;
        }
        let mut why = Vec::new();
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("");
            why.push(join(&["waiting", reason], w.message.as_deref()));
            if matches!(reason, "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") {
                why.push(
                    "the node cannot pull the agent image: push it to a registry the nodes can reach \
                     (scripts/image builds it) and run `kubectl ns install --image REF`"
                        .to_owned(),
                );
            }
        } else if c.state.as_ref().and_then(|s| s.running.as_ref()).is_some() {
            why.push("running, readiness probe not passing".to_owned());
        }
        if let Some(t) = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
        {
            let head = format!(
                "last terminated with exit code {}{}",
                t.exit_code,
                t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
            why.push(join(&[&head], t.message.as_deref()));
        }
        if why.is_empty() {
            why.push("not ready".into());
        }
        parts.push(format!("container {}: {}", c.name, why.join("; ")));
    }
    if parts.is_empty() {
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        let cond = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled" && c.status != "True"))
            .map(|c| {
                join(
                    &[": unschedulable", c.reason.as_deref().unwrap_or("")],
                    c.message.as_deref(),
                )
            })
            .unwrap_or_default();
        parts.push(format!("pod {phase}{cond}"));
    }
    parts.join("; ")
}

/// `a b: message`, leaving out empty parts.
fn join(head: &[&str], message: Option<&str>) -> String {
    let head = head
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("{head}: {m}"),
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        NodeAffinity, NodeCondition, NodeSelector, NodeStatus, PodStatus,
    };
    use kube::api::ObjectMeta;

    fn node(labels: &[(&str, &str)], ready: Option<(&str, &str)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some(crate::label_map(labels)),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: ready.map(|(status, reason)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: Some(reason.into()),
                        message: Some("kubelet stopped posting node status".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn template(terms: Vec<Vec<NodeSelectorRequirement>>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms
                            .into_iter()
                            .map(|e| NodeSelectorTerm {
                                match_expressions: Some(e),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn os_and_architecture_are_named() {
        let t = template(vec![vec![
            req(OS_LABEL, "In", &["linux"]),
            req(ARCH_LABEL, "In", &["amd64"]),
        ]]);
        assert_eq!(
            unselected(&t, &node(&[(OS_LABEL, "linux"), (ARCH_LABEL, "amd64")], None)),
            None
        );
        assert_eq!(
            unselected(&t, &node(&[(OS_LABEL, "windows"), (ARCH_LABEL, "amd64")], None)).unwrap(),
            "node OS windows: the agent runs on linux only"
        );
        assert_eq!(
            unselected(&t, &node(&[(OS_LABEL, "linux"), (ARCH_LABEL, "arm64")], None)).unwrap(),
            "architecture arm64: no agent image for it (the DaemonSet selects amd64)"
        );
        assert!(
            unselected(&t, &node(&[], None))
                .unwrap()
                .contains("unknown (label missing)")
        );
    }

    #[test]
    fn terms_are_alternatives_and_node_selector_applies() {
        let t = template(vec![
            vec![req(ARCH_LABEL, "In", &["amd64"])],
            vec![req("pool", "NotIn", &["gpu"]), req("zone", "Exists", &[])],
        ]);
        assert!(selects(&t, &node(&[("zone", "a")], None)));
        assert!(!selects(&t, &node(&[("zone", "a"), ("pool", "gpu")], None)));
        let t = PodSpec {
            node_selector: Some([(OS_LABEL.to_owned(), "linux".to_owned())].into()),
            ..Default::default()
        };
        assert!(
            unselected(&t, &node(&[(OS_LABEL, "windows")], None))
                .unwrap()
                .contains("windows")
        );
        assert!(selects(&PodSpec::default(), &node(&[], None)));
    }

    #[test]
    fn node_readiness_gives_the_condition() {
        assert_eq!(node_not_ready(&node(&[], Some(("True", "KubeletReady")))), None);
        assert_eq!(
            node_not_ready(&node(&[], Some(("Unknown", "NodeStatusUnknown")))).unwrap(),
            "node not Ready (NodeStatusUnknown: kubelet stopped posting node status)"
        );
        assert!(node_not_ready(&node(&[], None)).is_some());
    }

    #[test]
    fn pod_reason_is_the_containers_own() {
        let pod = Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "agent".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 40s restarting failed container".into()),
                        }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 128,
                            reason: Some("StartError".into()),
                            message: Some("exec: \"--listen\": executable file not found in $PATH".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_not_ready_reason(&pod),
            "container agent: waiting CrashLoopBackOff: back-off 40s restarting failed container; \
             last terminated with exit code 128 (StartError): exec: \"--listen\": executable file not found in $PATH"
        );
        assert_eq!(pod_not_ready_reason(&Pod::default()), "pod Unknown");
    }
}
