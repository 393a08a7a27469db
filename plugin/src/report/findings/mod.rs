//! What `kubectl ns audit` finds: host namespaces a pod's spec asks for
//! (declared), the ones the kernel shows its containers in (observed, from
//! the agents' List), and where the two disagree (drift). Pure functions
//! over the API's pods and the agents' answers, so every rule is
//! unit-tested: `spec` judges what a container's spec declares,
//! `namespaces` what its process shares with the node, `unknown` what runs
//! that no pod owns; this module walks the pods and gathers their findings.

mod namespaces;
mod spec;
mod unknown;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod};
use kns_proto::agent::{ContainerInfo, ListResponse, Namespace, ProcessInfo};
use serde::Serialize;

pub use namespaces::observed_host;
use namespaces::{drift, host_namespaces};
use spec::{declared_container, declared_host};
pub use unknown::Owners;
use unknown::unknown_workloads;

/// A finding's kind: the names `--fail-on` takes and the JSON's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The node's network namespace (hostNetwork).
    HostNet,
    /// The node's PID namespace (hostPID).
    HostPid,
    /// The node's IPC namespace (hostIPC).
    HostIpc,
    /// Containers of the pod share one PID namespace (shareProcessNamespace).
    SharePid,
    /// The pod runs in a user namespace of its own (hostUsers: false).
    UserNs,
    /// A privileged container.
    Privileged,
    /// A container port bound on the node (hostPort).
    HostPort,
    /// An added capability that defeats isolation.
    Capability,
    /// A hostPath mount of the node's root, /proc, /sys or a runtime socket.
    HostPath,
    /// The spec and the kernel disagree about a namespace.
    Drift,
    /// A container on the node that no pod in the API owns.
    UnknownWorkload,
    /// A pod (or container) the agents could not look at.
    NotObserved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HostNet => "host-net",
            Kind::HostPid => "host-pid",
            Kind::HostIpc => "host-ipc",
            Kind::SharePid => "share-pid",
            Kind::UserNs => "user-ns",
            Kind::Privileged => "privileged",
            Kind::HostPort => "host-port",
            Kind::Capability => "capability",
            Kind::HostPath => "host-path",
            Kind::Drift => "drift",
            Kind::UnknownWorkload => "unknown-workload",
            Kind::NotObserved => "not-observed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One finding. `declared` and `observed` say whether what `kind` names
/// holds according to the spec and to the kernel; `null` where that source
/// cannot tell (no spec for an unknown workload; no agent, or a check the
/// kernel cannot make, for observed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    /// Empty for findings about the whole pod.
    pub container: String,
    pub container_id: Option<String>,
    pub kind: Kind,
    /// What exactly: the namespace kind of a drift, the capability, the
    /// path, the port, why a pod was not observed.
    pub detail: String,
    pub declared: Option<bool>,
    pub observed: Option<bool>,
    pub severity: Severity,
    pub explanation: String,
}

/// Which containers the agents see count as unknown when no listed pod
/// owns them: the listing must have covered their namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknowns {
    /// Pods were listed by label: containers outside the selection are
    /// simply not selected.
    Off,
    Namespace(String),
    All,
}

/// What an agent answered for a node, or why there is no answer.
pub type Observations = BTreeMap<String, Result<ListResponse, String>>;

/// A pod's spec containers with their runtime IDs when running.
fn containers(pod: &Pod) -> Vec<(&Container, Option<String>)> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let statuses = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().chain(&s.init_container_statuses))
        .flatten();
    let running: HashMap<&str, String> = statuses
        .filter(|s| s.state.as_ref().and_then(|st| st.running.as_ref()).is_some())
        .filter_map(|s| {
            let id = crate::kube::resolve::runtime_id(s.container_id.as_deref()?);
            (!id.is_empty()).then(|| (s.name.as_str(), id.to_owned()))
        })
        .collect();
    spec.into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| (c, running.get(c.name.as_str()).cloned()))
        .collect()
}

/// Audits `pods` against what the agents observed on their nodes.
pub fn audit(pods: &[Pod], observed: &Observations, unknowns: &Unknowns) -> Vec<Finding> {
    let by_id: HashMap<&str, (&ContainerInfo, &ProcessInfo)> = observed
        .values()
        .filter_map(|o| o.as_ref().ok())
        .flat_map(|l| {
            let node = l.node.as_ref();
            l.containers
                .iter()
                .filter_map(move |c| Some((c.id.as_str(), (c, node?))))
        })
        .collect();
    let mut out = Vec::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        audit_pod(pod, observed, &by_id, &mut out);
    }
    if *unknowns != Unknowns::Off {
        unknown_workloads(pods, observed, unknowns, &mut out);
    }
    out.sort_by(|a, b| {
        (&a.node, &a.namespace, &a.pod, &a.container, a.kind, &a.detail).cmp(&(
            &b.node,
            &b.namespace,
            &b.pod,
            &b.container,
            b.kind,
            &b.detail,
        ))
    });
    out
}

fn audit_pod(
    pod: &Pod,
    observed: &Observations,
    by_id: &HashMap<&str, (&ContainerInfo, &ProcessInfo)>,
    out: &mut Vec<Finding>,
) {
    let Some(spec) = pod.spec.as_ref() else { return };
    let node = spec.node_name.clone().unwrap_or_default();
    let base = Finding {
        node: node.clone(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        container: String::new(),
        container_id: None,
        kind: Kind::NotObserved,
        detail: String::new(),
        declared: None,
        observed: None,
        severity: Severity::Medium,
        explanation: String::new(),
    };
    let node_seen = node_observed(observed, &node, &base, out);
    let declared = declared_host(spec);
    if spec.share_process_namespace == Some(true) {
        out.push(Finding {
            kind: Kind::SharePid,
            declared: Some(true),
            severity: Severity::Low,
            explanation: "the pod's containers share one PID namespace: each sees the others' processes, \
                          environment and (as root) their files through /proc"
                .into(),
            ..base.clone()
        });
    }
    let host_paths: HashMap<&str, &str> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some((v.name.as_str(), v.host_path.as_ref()?.path.as_str())))
        .collect();
    for (c, id) in containers(pod) {
        let base = Finding {
            container: c.name.clone(),
            container_id: id.clone(),
            ..base.clone()
        };
        let seen = id.as_deref().and_then(|id| by_id.get(id));
        let host: BTreeMap<Namespace, bool> = match seen {
            Some((info, node)) => info
                .process
                .as_ref()
                .map(|p| observed_host(p, node))
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        if node_seen && id.is_some() && host.is_empty() {
            let why = match seen {
                Some((info, _)) => format!("its process could not be read: {}", info.error),
                None => "running according to the API, but not in the runtime's list".to_owned(),
            };
            out.push(Finding {
                detail: why,
                explanation: "the agent could not see this container's namespaces: unknown, not clean".into(),
                ..base.clone()
            });
        }
        host_namespaces(&declared, &host, &base, out);
        drift(&declared, &host, &base, out);
        if spec.host_users == Some(false) {
            out.push(Finding {
                kind: Kind::UserNs,
                declared: Some(true),
                observed: host.get(&Namespace::User).copied().map(|host| !host),
                severity: Severity::Info,
                explanation: "runs in a user namespace of its own: its root is an unprivileged user on the node"
                    .into(),
                ..base.clone()
            });
        }
        declared_container(c, &host_paths, &base, out);
    }
}

/// Whether an agent answered for the pod's node. Scheduled pods whose node
/// no agent answered for are said to be unobserved, never passed as clean.
fn node_observed(observed: &Observations, node: &str, base: &Finding, out: &mut Vec<Finding>) -> bool {
    match observed.get(node) {
        Some(Ok(_)) => true,
        _ if node.is_empty() => false,
        other => {
            let why = match other {
                Some(Err(e)) => e.clone(),
                _ => "the node was not asked".to_owned(),
            };
            out.push(Finding {
                detail: why,
                explanation: "no agent looked at this pod's node: its namespaces are unknown, not clean"
                    .into(),
                ..base.clone()
            });
            false
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
