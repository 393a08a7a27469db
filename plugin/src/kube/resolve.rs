//! From what the user named (a pod, a node) to what the agent needs: the
//! node, the container ID, and the agent pod on that node.
//!
//! The decisions are pure functions over the API objects, so every error
//! path is unit-tested; `resolver::Resolver` only fetches.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::error::{Failure, ResolveError, Stopped};

/// The label that marks agent pods.
pub const AGENT_LABEL: &str = "app.kubernetes.io/name=kubectl-ns-agent";
/// The namespace the agent is installed in unless told otherwise.
pub const AGENT_NAMESPACE: &str = "kubectl-ns-system";
/// The annotation kubectl honours for the default container.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// What the user named, Kubernetes side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeTarget {
    /// A pod, with a namespace if the NS/POD form gave one.
    Pod { namespace: Option<String>, name: String },
    /// A node's own namespaces.
    Node(String),
}

/// A container resolved to where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedContainer {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The runtime's ID, without the `containerd://` scheme.
    pub container_id: String,
    pub node: String,
}

/// Every container of a pod that could be inspected, for `ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainers {
    pub node: String,
    /// (name, runtime ID) of the running containers.
    pub running: Vec<(String, String)>,
}

/// The runtime ID from a status's `containerID` (`containerd://abc…`).
pub fn runtime_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// Runtime classes whose containers run in a VM or a user-space kernel:
/// their processes are not the node's, so entering would be wrong.
fn sandboxed_runtime(class: &str) -> bool {
    let c = class.to_ascii_lowercase();
    ["kata", "gvisor", "runsc", "firecracker"]
        .iter()
        .any(|k| c.contains(k))
}

fn all_statuses(pod: &Pod) -> Vec<(&'static str, &ContainerStatus)> {
    let Some(s) = &pod.status else { return Vec::new() };
    [
        ("container", &s.container_statuses),
        ("init container", &s.init_container_statuses),
        ("ephemeral container", &s.ephemeral_container_statuses),
    ]
    .into_iter()
    .flat_map(|(kind, v)| v.iter().flatten().map(move |c| (kind, c)))
    .collect()
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Checks the pod can be entered at all: scheduled, not VM-sandboxed.
fn check_pod(pod: &Pod) -> Result<String, ResolveError> {
    let name = pod_name(pod);
    let spec = pod.spec.as_ref();
    if let Some(class) = spec.and_then(|s| s.runtime_class_name.as_deref())
        && sandboxed_runtime(class)
    {
        return Err(ResolveError::Sandboxed {
            pod: name,
            class: class.to_owned(),
        });
    }
    match spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
        Some(node) => Ok(node),
        None => {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            Err(ResolveError::Unscheduled { pod: name, phase })
        }
    }
}

/// The container kubectl would pick without `-c`: the default-container
/// annotation when it names one of the pod's containers, else the first,
/// with kubectl's notice when others were passed over (the notice names init
/// and ephemeral containers too, as kubectl's does).
fn default_container(pod: &Pod, spec_names: &[String]) -> Option<(String, Option<String>)> {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        .filter(|c| spec_names.contains(c));
    if let Some(c) = annotated {
        return Some((c.clone(), None));
    }
    let first = spec_names.first()?.clone();
    let spec = pod.spec.as_ref()?;
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| format!("{} (ephem)", c.name));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| format!("{} (init)", c.name));
    let all: Vec<String> = spec_names.iter().cloned().chain(ephemeral).chain(init).collect();
    let notice = (all.len() > 1).then(|| format!("Defaulted container {first:?} out of: {}", all.join(", ")));
    Some((first, notice))
}

/// Picks the container: `-c`, else the default-container annotation, else
/// the first container (as kubectl does, with its notice on stderr); and
/// checks it is running.
pub fn choose_container(pod: &Pod, wanted: Option<&str>) -> Result<ResolvedContainer, ResolveError> {
    let node = check_pod(pod)?;
    let name = pod_name(pod);
    let spec_names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let chosen = match wanted {
        Some(c) => c.to_owned(),
        None => {
            let (chosen, notice) = default_container(pod, &spec_names)
                .ok_or_else(|| ResolveError::NoContainers { pod: name.clone() })?;
            if let Some(n) = notice {
                eprintln!("{n}");
            }
            chosen
        }
    };
    let statuses = all_statuses(pod);
    let Some((kind, status)) = statuses.iter().find(|(_, s)| s.name == chosen) else {
        let known: Vec<String> = statuses.iter().map(|(_, s)| s.name.clone()).collect();
        return Err(if spec_names.contains(&chosen) {
            ResolveError::NotStarted {
                container: chosen,
                pod: name,
            }
        } else {
            ResolveError::NoSuchContainer {
                pod: name,
                container: chosen,
                known: if known.is_empty() { spec_names } else { known },
            }
        });
    };
    let state = status.state.as_ref();
    let running = state.and_then(|s| s.running.as_ref()).is_some();
    let id = status.container_id.as_deref().map(runtime_id).unwrap_or("");
    if !running || id.is_empty() {
        let state = if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            Stopped::Waiting {
                reason: w.reason.clone().unwrap_or_else(|| "Waiting".into()),
                last: status
                    .last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .map(|t| (t.exit_code, t.reason.clone())),
            }
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            Stopped::Terminated {
                code: t.exit_code,
                reason: t.reason.clone(),
            }
        } else {
            Stopped::NotRunning
        };
        let others = statuses
            .iter()
            .filter(|(_, s)| {
                s.name != chosen && s.state.as_ref().and_then(|st| st.running.as_ref()).is_some()
            })
            .map(|(_, s)| s.name.clone())
            .collect();
        return Err(ResolveError::NotRunning {
            kind,
            container: chosen,
            pod: name,
            state: Box::new(state),
            others,
        });
    }
    Ok(ResolvedContainer {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: name,
        container: chosen,
        container_id: id.to_owned(),
        node,
    })
}

/// What was found of a pod, and the node it runs on.
pub trait Placed {
    fn node(&self) -> &str;
}

impl Placed for ResolvedContainer {
    fn node(&self) -> &str {
        &self.node
    }
}

impl Placed for PodContainers {
    fn node(&self) -> &str {
        &self.node
    }
}

/// The running containers of a pod, for `ls`.
pub fn pod_containers(pod: &Pod) -> Result<PodContainers, ResolveError> {
    let node = check_pod(pod)?;
    let running = all_statuses(pod)
        .into_iter()
        .filter(|(_, s)| s.state.as_ref().and_then(|st| st.running.as_ref()).is_some())
        .filter_map(|(_, s)| {
            let id = runtime_id(s.container_id.as_deref()?);
            (!id.is_empty()).then(|| (s.name.clone(), id.to_owned()))
        })
        .collect::<Vec<_>>();
    if running.is_empty() {
        return Err(ResolveError::NoRunningContainer { pod: pod_name(pod) });
    }
    Ok(PodContainers { node, running })
}

/// Whether the pod's Ready condition is true.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Picks the agent pod among those listed for a node: a running, ready one.
pub fn choose_agent(pods: &[Pod], node: &str, agent_ns: &str) -> Result<String, Failure> {
    if pods.is_empty() {
        return Err(ResolveError::NoAgent {
            node: node.to_owned(),
            label: AGENT_LABEL,
            namespace: agent_ns.to_owned(),
        }
        .into());
    }
    match pods.iter().find(|p| pod_ready(p)) {
        Some(p) => Ok(pod_name(p)),
        None => Err(ResolveError::AgentNotReady {
            node: node.to_owned(),
            pods: pods.iter().map(pod_name).collect(),
            namespace: agent_ns.to_owned(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        EphemeralContainer, PodCondition, PodSpec, PodStatus,
    };
    use kube::api::ObjectMeta;

    fn status(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: Some(format!("containerd://{name}-id")),
            state: Some(state),
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn pod(containers: &[&str], statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: containers
                    .iter()
                    .map(|c| Container {
                        name: (*c).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(statuses),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_container_is_the_default() {
        let p = pod(&["app"], vec![status("app", running())]);
        let r = choose_container(&p, None).unwrap();
        assert_eq!(r.container_id, "app-id");
        assert_eq!((r.node.as_str(), r.namespace.as_str()), ("node-a", "prod"));
    }

    #[test]
    fn annotation_else_first_container_like_kubectl() {
        let mut p = pod(
            &["app", "sidecar"],
            vec![status("app", running()), status("sidecar", running())],
        );
        assert_eq!(choose_container(&p, None).unwrap().container, "app");
        let names = ["app".to_owned(), "sidecar".to_owned()];
        assert_eq!(
            default_container(&p, &names),
            Some((
                "app".to_owned(),
                Some(r#"Defaulted container "app" out of: app, sidecar"#.to_owned())
            ))
        );
        p.metadata.annotations = Some([(DEFAULT_CONTAINER.to_owned(), "sidecar".to_owned())].into());
        assert_eq!(default_container(&p, &names), Some(("sidecar".to_owned(), None)));
        assert_eq!(choose_container(&p, None).unwrap().container, "sidecar");
        assert_eq!(choose_container(&p, Some("app")).unwrap().container, "app");
        // An annotation naming no container falls back to the first.
        p.metadata.annotations = Some([(DEFAULT_CONTAINER.to_owned(), "gone".to_owned())].into());
        assert_eq!(choose_container(&p, None).unwrap().container, "app");
    }

    #[test]
    fn defaulted_notice_lists_ephemeral_then_init_containers() {
        let mut p = pod(&["app"], vec![status("app", running())]);
        let names = ["app".to_owned()];
        assert_eq!(default_container(&p, &names), Some(("app".to_owned(), None)));
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![Container {
            name: "setup".into(),
            ..Default::default()
        }]);
        spec.ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debugger".into(),
            ..Default::default()
        }]);
        assert_eq!(
            default_container(&p, &names).unwrap().1.as_deref(),
            Some(r#"Defaulted container "app" out of: app, debugger (ephem), setup (init)"#)
        );
        p.spec.as_mut().unwrap().containers.clear();
        let e = choose_container(&p, None).unwrap_err();
        assert_eq!(e.to_string(), "pod web-1 has no containers");
    }

    #[test]
    fn waiting_container_names_reason_and_last_exit() {
        let mut s = status(
            "app",
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        s.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("OOMKilled".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = pod(&["app", "side"], vec![s, status("side", running())]);
        let e = choose_container(&p, Some("app")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container app of pod web-1 is waiting (CrashLoopBackOff; last exit code 137 (OOMKilled)); pick another with -c: side"
        );
    }

    #[test]
    fn init_and_ephemeral_containers_can_be_named() {
        let mut p = pod(&["app"], vec![status("app", running())]);
        let st = p.status.as_mut().unwrap();
        st.init_container_statuses = Some(vec![status("init", running())]);
        st.ephemeral_container_statuses = Some(vec![status("debugger", running())]);
        assert_eq!(
            choose_container(&p, Some("init")).unwrap().container_id,
            "init-id"
        );
        assert_eq!(
            choose_container(&p, Some("debugger")).unwrap().container_id,
            "debugger-id"
        );
        let e = choose_container(&p, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("has no container nope"), "{}", e);
    }

    #[test]
    fn unscheduled_and_sandboxed_pods_are_refused() {
        let mut p = pod(&["app"], vec![status("app", running())]);
        p.spec.as_mut().unwrap().node_name = None;
        assert!(
            choose_container(&p, None)
                .unwrap_err()
                .to_string()
                .contains("not scheduled")
        );
        let mut p = pod(&["app"], vec![status("app", running())]);
        p.spec.as_mut().unwrap().runtime_class_name = Some("kata-qemu".into());
        assert!(
            choose_container(&p, None)
                .unwrap_err()
                .to_string()
                .contains("inside a VM")
        );
        p.spec.as_mut().unwrap().runtime_class_name = Some("gvisor".into());
        assert!(choose_container(&p, None).is_err());
        p.spec.as_mut().unwrap().runtime_class_name = Some("runc".into());
        assert!(choose_container(&p, None).is_ok());
    }

    #[test]
    fn agent_must_exist_and_be_ready() {
        let e = choose_agent(&[], "node-a", AGENT_NAMESPACE).unwrap_err();
        assert!(e.to_string().contains("kubectl ns install"), "{}", e);
        let mut agent = pod(&["agent"], vec![]);
        agent.metadata.name = Some("kubectl-ns-agent-x".into());
        let e = choose_agent(std::slice::from_ref(&agent), "node-a", AGENT_NAMESPACE).unwrap_err();
        assert!(e.to_string().contains("not ready"), "{}", e);
        agent.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        assert_eq!(
            choose_agent(&[agent], "node-a", AGENT_NAMESPACE).unwrap(),
            "kubectl-ns-agent-x"
        );
    }

    #[test]
    fn runtime_id_drops_the_scheme() {
        assert_eq!(runtime_id("containerd://abc"), "abc");
        assert_eq!(runtime_id("cri-o://def"), "def");
        assert_eq!(runtime_id("abc"), "abc");
    }
}
