//! The node's namespaces a container's process is in, against what its
//! spec declares: shared with the node, and drift where the two differ.

use std::collections::{BTreeMap, HashMap};

use kns_proto::agent::{Namespace, ProcessInfo};

use super::{Finding, Kind, Severity};

/// The kinds the spec decides and the kernel shows, compared for drift.
/// cgroup and time are left out: runtimes share the node's by design on
/// cgroup v1 and before time namespaces, whatever the spec says.
pub(super) const COMPARED: [Namespace; 6] = [
    Namespace::Net,
    Namespace::Uts,
    Namespace::Ipc,
    Namespace::Pid,
    Namespace::Mnt,
    Namespace::User,
];

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

/// The node's net, pid and ipc namespaces, declared or observed.
pub(super) fn host_namespaces(
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
pub(super) fn drift(
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
