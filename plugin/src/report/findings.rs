//! What `kubectl ns audit` finds: host namespaces a pod's spec asks for
//! (declared), the ones the kernel shows its containers in (observed, from
//! the agents' List), and where the two disagree (drift). Pure functions
//! over the API's pods and the agents' answers, so every rule is
//! unit-tested.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kns_proto::agent::{ContainerInfo, ListResponse, Namespace, ProcessInfo};
use serde::Serialize;

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

/// The kinds the spec decides and the kernel shows, compared for drift.
/// cgroup and time are left out: runtimes share the node's by design on
/// cgroup v1 and before time namespaces, whatever the spec says.
const COMPARED: [Namespace; 6] = [
    Namespace::Net,
    Namespace::Uts,
    Namespace::Ipc,
    Namespace::Pid,
    Namespace::Mnt,
    Namespace::User,
];

/// Capabilities that defeat a container's isolation, with how badly.
const DANGEROUS_CAPS: &[(&str, Severity, &str)] = &[
    (
        "ALL",
        Severity::Critical,
        "every capability: as good as privileged",
    ),
    (
        "SYS_ADMIN",
        Severity::Critical,
        "mount, setns, BPF and more: the usual step from container to node",
    ),
    (
        "SYS_PTRACE",
        Severity::High,
        "can read and alter the memory of processes it can see (all of the node's with hostPID)",
    ),
    (
        "NET_ADMIN",
        Severity::High,
        "can reconfigure interfaces, routes and firewall rules of its network namespace (the node's with hostNetwork)",
    ),
    (
        "NET_RAW",
        Severity::Medium,
        "raw sockets: can spoof packets and sniff its network namespace's traffic",
    ),
];

/// Runtime sockets: whoever can reach one can start privileged containers.
const RUNTIME_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/cri-dockerd.sock",
    "/var/run/cri-dockerd.sock",
    "/run/k3s/containerd/containerd.sock",
];

/// Why a hostPath is dangerous, if it is.
fn dangerous_path(path: &str) -> Option<(Severity, String)> {
    let p = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    match p {
        "/" => Some((
            Severity::Critical,
            "the node's whole filesystem: its credentials, kubelet config and runtime socket".into(),
        )),
        "/proc" | "/sys" => Some((
            Severity::High,
            format!(
                "the node's {p}: kernel settings and every process's details, writable where not read-only"
            ),
        )),
        _ if RUNTIME_SOCKETS
            .iter()
            .any(|s| *s == p || s.starts_with(&format!("{p}/"))) =>
        {
            Some((
                Severity::Critical,
                "a container runtime socket (or its directory): can start privileged containers on the node"
                    .into(),
            ))
        }
        _ => None,
    }
}

/// What the spec declares about the node's namespaces, by kind: `true`
/// where the container is to share the node's.
fn declared_host(spec: &PodSpec) -> BTreeMap<Namespace, bool> {
    let net = spec.host_network == Some(true);
    BTreeMap::from([
        (Namespace::Net, net),
        // The kubelet gives hostNetwork pods the node's UTS namespace too.
        (Namespace::Uts, net),
        (Namespace::Ipc, spec.host_ipc == Some(true)),
        (Namespace::Pid, spec.host_pid == Some(true)),
        (Namespace::Mnt, false),
        // Only hostUsers: false asks for a user namespace.
        (Namespace::User, spec.host_users != Some(false)),
    ])
}

/// The kinds in which `p` is in the node's namespace (same inode and
/// device), for the kinds both have.
pub fn observed_host(p: &ProcessInfo, node: &ProcessInfo) -> BTreeMap<Namespace, bool> {
    let ids = |p: &ProcessInfo| -> HashMap<i32, (u64, u64)> {
        p.namespaces
            .iter()
            .map(|n| (n.kind, (n.inode, n.device)))
            .collect()
    };
    let (mine, theirs) = (ids(p), ids(node));
    Namespace::ALL
        .into_iter()
        .filter_map(|k| Some((k, mine.get(&(k as i32))? == theirs.get(&(k as i32))?)))
        .collect()
}

fn share_explanation(k: Namespace) -> &'static str {
    match k {
        Namespace::Net => {
            "shares the node's network namespace: can bind node ports, see node traffic, reach services on the node's localhost"
        }
        Namespace::Pid => {
            "shares the node's PID namespace: sees every process on the node and can signal them (as root, ptrace them)"
        }
        Namespace::Ipc => {
            "shares the node's IPC namespace: can read and tamper with other processes' System V shared memory and queues"
        }
        Namespace::Uts => "shares the node's UTS namespace: can change the node's hostname",
        Namespace::Mnt => "shares the node's mount namespace: sees and can change the node's filesystem",
        Namespace::User => "shares the node's user namespace: its root is the node's root",
        _ => "shares a namespace with the node",
    }
}

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

/// The annotation a mirror pod carries: the static pod's UID, which its
/// containers' labels name.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

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

/// The node's net, pid and ipc namespaces, declared or observed.
fn host_namespaces(
    declared: &BTreeMap<Namespace, bool>,
    host: &BTreeMap<Namespace, bool>,
    base: &Finding,
    out: &mut Vec<Finding>,
) {
    let obs = |k: Namespace| host.get(&k).copied();
    for (kind, k, severity) in [
        (Kind::HostNet, Namespace::Net, Severity::High),
        (Kind::HostPid, Namespace::Pid, Severity::High),
        (Kind::HostIpc, Namespace::Ipc, Severity::Medium),
    ] {
        if declared[&k] || obs(k) == Some(true) {
            out.push(Finding {
                kind,
                declared: Some(declared[&k]),
                observed: obs(k),
                severity,
                explanation: share_explanation(k).into(),
                ..base.clone()
            });
        }
    }
}

/// Where what runs differs from what the spec declares.
fn drift(
    declared: &BTreeMap<Namespace, bool>,
    host: &BTreeMap<Namespace, bool>,
    base: &Finding,
    out: &mut Vec<Finding>,
) {
    for k in COMPARED {
        let Some(o) = host.get(&k).copied() else { continue };
        if o == declared[&k] {
            continue;
        }
        let (severity, explanation) = if o {
            (
                Severity::Critical,
                format!(
                    "the spec keeps it out of the node's {0} namespace, but its process is in it (a setns, a \
                     process started by hand, a runtime bug): {1}",
                    k.proc_name(),
                    share_explanation(k)
                ),
            )
        } else {
            (
                Severity::High,
                format!(
                    "the spec asks for the node's {} namespace, but the runtime gave it its own: the spec \
                     does not describe what runs",
                    k.proc_name()
                ),
            )
        };
        out.push(Finding {
            kind: Kind::Drift,
            detail: k.proc_name().to_owned(),
            declared: Some(declared[&k]),
            observed: Some(o),
            severity,
            explanation,
            ..base.clone()
        });
    }
}

/// Findings from one container's own spec: privileged, capabilities,
/// hostPort, hostPath mounts.
fn declared_container(
    c: &Container,
    host_paths: &HashMap<&str, &str>,
    base: &Finding,
    out: &mut Vec<Finding>,
) {
    let declared = |kind, detail: String, severity, explanation: String| Finding {
        kind,
        detail,
        declared: Some(true),
        severity,
        explanation,
        ..base.clone()
    };
    let sc = c.security_context.as_ref();
    if sc.and_then(|s| s.privileged) == Some(true) {
        out.push(declared(
            Kind::Privileged,
            String::new(),
            Severity::Critical,
            "privileged: every capability and device, no seccomp or AppArmor: it can take over the node"
                .into(),
        ));
    }
    let added = sc
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten();
    let mut caps = BTreeSet::new();
    for cap in added {
        let name = cap.to_ascii_uppercase();
        let name = name.strip_prefix("CAP_").unwrap_or(&name).to_owned();
        if let Some((_, severity, why)) = DANGEROUS_CAPS.iter().find(|(n, ..)| *n == name)
            && caps.insert(name.clone())
        {
            out.push(declared(Kind::Capability, name, *severity, (*why).into()));
        }
    }
    for p in c.ports.iter().flatten() {
        if let Some(hp) = p.host_port.filter(|p| *p > 0) {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            out.push(declared(
                Kind::HostPort,
                format!("{hp}/{proto}"),
                Severity::Medium,
                "binds a port on the node's addresses, outside network policies".into(),
            ));
        }
    }
    let mounts: BTreeSet<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| host_paths.get(m.name.as_str()).copied())
        .collect();
    for path in mounts {
        if let Some((severity, why)) = dangerous_path(path) {
            out.push(declared(Kind::HostPath, path.to_owned(), severity, why));
        }
    }
}

/// What the API's pods own: their UIDs, the static pods' UIDs their
/// mirror pods name, and their running containers' IDs.
pub struct Owners(HashSet<String>);

impl Owners {
    pub fn of(pods: &[Pod]) -> Owners {
        let mut owned = HashSet::new();
        for p in pods {
            owned.extend(p.metadata.uid.clone());
            owned.extend(
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MIRROR_ANNOTATION))
                    .cloned(),
            );
            owned.extend(containers(p).into_iter().filter_map(|(_, id)| id));
        }
        Owners(owned)
    }

    /// Whether a pod owns the container the agent listed.
    pub fn owns(&self, c: &ContainerInfo) -> bool {
        self.0.contains(&c.id) || (!c.pod_uid.is_empty() && self.0.contains(&c.pod_uid))
    }
}

/// Containers the agents see that no listed pod owns: neither by its
/// container ID in a pod's status, nor by its pod's UID (a mirror pod
/// names its static pod's UID in an annotation).
fn unknown_workloads(pods: &[Pod], observed: &Observations, unknowns: &Unknowns, out: &mut Vec<Finding>) {
    let owned = Owners::of(pods);
    for (node, list) in observed {
        let Ok(list) = list else { continue };
        for c in &list.containers {
            let in_scope = match unknowns {
                Unknowns::All => true,
                Unknowns::Namespace(ns) => &c.pod_namespace == ns,
                Unknowns::Off => false,
            };
            if !in_scope || owned.owns(c) {
                continue;
            }
            let host: Vec<&str> = match (&c.process, &list.node) {
                (Some(p), Some(n)) => observed_host(p, n)
                    .into_iter()
                    // The node's user namespace is every container's unless
                    // it asked for its own: not worth naming.
                    .filter(|(k, host)| *host && *k != Namespace::User && COMPARED.contains(k))
                    .map(|(k, _)| k.proc_name())
                    .collect(),
                _ => Vec::new(),
            };
            out.push(Finding {
                node: node.clone(),
                namespace: c.pod_namespace.clone(),
                pod: c.pod_name.clone(),
                container: c.name.clone(),
                container_id: Some(c.id.clone()),
                kind: Kind::UnknownWorkload,
                detail: if host.is_empty() {
                    String::new()
                } else {
                    format!("in the node's {}", host.join(","))
                },
                declared: None,
                observed: Some(true),
                severity: Severity::High,
                explanation:
                    "runs on the node, but no pod in the API owns it: started outside Kubernetes or \
                              left behind, so nothing the API shows covers it"
                        .into(),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
