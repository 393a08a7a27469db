//! What a pod's spec declares that weakens its isolation: the node's
//! namespaces it asks for, privileged, dangerous capabilities, hostPorts
//! and hostPath mounts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use kns_proto::agent::Namespace;

use super::{Finding, Kind, Severity};

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
pub(super) fn declared_host(spec: &PodSpec) -> BTreeMap<Namespace, bool> {
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

/// Findings from one container's own spec: privileged, capabilities,
/// hostPort, hostPath mounts.
pub(super) fn declared_container(
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
