//! Who the tool runs as: node root, root of the target's user namespace,
//! or the container's own identity (with `-m`), and what running as the
//! container implies (all of its namespaces, its capabilities within the
//! agent's).

use crate::enter::error::NsenterError;
use crate::enter::request::{Node, Request};
use crate::kernel::ns::{NsKind, NsSet};
use crate::kernel::procfs;
use crate::sys::{self, Creds};
use crate::target::resolve::{Pinned, Resolved};

/// The identity a tool runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsAs {
    /// The agent's own: root on the node with the agent's capabilities.
    NodeRoot,
    /// Root of the target's user namespace (-U), as nsenter(1) makes it.
    UserNsRoot,
    /// The container's, from the runtime (-m on a container).
    Container { uid: u32, gid: u32, groups: Vec<u32> },
}

impl std::fmt::Display for RunsAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunsAs::NodeRoot => f.write_str("node-root"),
            RunsAs::UserNsRoot => f.write_str("userns-root"),
            RunsAs::Container { uid, gid, groups } => {
                write!(f, "container uid={uid} gid={gid} groups={groups:?}")
            }
        }
    }
}

/// The identity for a tool run from the target's own filesystem (`-m` on
/// a mount namespace that is not the node's): the container's, unless
/// `--privileged` keeps node root. Without -m the tool is the node's own
/// binary and keeps running as node root: what it runs is the node's, and
/// the namespaces only change what it sees.
pub(super) fn container_creds<'a>(
    target: &'a Pinned,
    req: &Request,
    set: NsSet,
    node: &Node,
) -> Result<Option<&'a crate::target::oci::ProcessSpec>, NsenterError> {
    let pid = target.resolved.pid;
    if !runs_as_container(pid, req, set, node)? {
        return Ok(None);
    }
    let identity = target
        .resolved
        .identity
        .as_ref()
        .ok_or(NsenterError::NoIdentity { pid })?;
    // `set` keeps the user kind only where the target's differs from the
    // agent's: an id of the container's user namespace taken in the
    // agent's would be another user, with capabilities over the node.
    if !set.contains(NsKind::User) && !procfs::shares_ns_with_self(pid, NsKind::User)? {
        return Err(NsenterError::IdentityNeedsUserNs { pid });
    }
    Ok(Some(identity))
}

/// A tool run as the container (`-m` with its identity) enters every
/// namespace of the container's: left in the node's PID, network, IPC or UTS
/// namespace, the image's binary could signal node processes of its uid,
/// reach services on the node's loopback, or trace other tenants'
/// processes. Adds those kinds to `set`, and says which.
pub(super) fn as_the_container(
    pid: i32,
    req: &Request,
    node: &Node,
    set: &mut NsSet,
) -> Result<Option<String>, NsenterError> {
    if !runs_as_container(pid, req, *set, node)? {
        return Ok(None);
    }
    let mut added = Vec::new();
    for k in NsKind::ALL {
        if !set.contains(k) && own_ns(pid, node, k)? {
            set.insert(k);
            added.push(k.proc_name());
        }
    }
    Ok((!added.is_empty()).then(|| {
        format!(
            "-m runs the image's binary as the container, so in all of its namespaces: also entered {} \
             (--privileged runs it as node root in only the namespaces chosen)",
            added.join(", ")
        )
    }))
}

/// `-a` on a target with a mount namespace of its own but no identity from
/// the runtime (a `pid/` target, a pod sandbox, a container found by its
/// cgroup): the image's binaries have no identity to run with, so the mount
/// namespace is left out and the tool is the node's, in every other kind,
/// as `-a --tools agent` keeps the agent's. Decided before the rights are
/// checked, which then ask for the node tool's. Returns the note telling
/// the user; `None` when the request stays as it is.
pub fn keep_node_filesystem(
    req: &mut Request,
    target: &Resolved,
    node: &Node,
) -> Result<Option<String>, NsenterError> {
    let pid = target.pid;
    if !req.all
        || req.privileged
        || target.identity.is_some()
        || !req.namespaces.contains(NsKind::Mnt)
        || !own_ns(pid, node, NsKind::Mnt)?
    {
        return Ok(None);
    }
    req.namespaces.remove(NsKind::Mnt);
    Ok(Some(format!(
        "-a entered every namespace of process {pid} but its mount namespace: the tool is the node's, run as \
         root on the node, because the container runtime gives no container identity for {pid} for the \
         image's own binaries to run with. Its files are under /proc/{pid}/root; --privileged enters the mount \
         namespace too and runs the image's binary as node root (only for images you trust)"
    )))
}

/// Whether the tool runs as the container: `-m` on a mount namespace of
/// the target's own, without `--privileged`.
fn runs_as_container(pid: i32, req: &Request, set: NsSet, node: &Node) -> Result<bool, NsenterError> {
    Ok(!req.privileged && set.contains(NsKind::Mnt) && own_ns(pid, node, NsKind::Mnt)?)
}

/// Whether the target has a namespace of kind `k` that is not the node's.
fn own_ns(pid: i32, node: &Node, k: NsKind) -> Result<bool, NsenterError> {
    let ns = procfs::ns_id(pid, k)?;
    Ok(ns.is_some() && ns != node.ns_id(k))
}

/// The container's credentials for the tool, with the capabilities the
/// agent does not hold left out (and the user told which).
pub(super) fn tool_creds(
    identity: Option<&crate::target::oci::ProcessSpec>,
    notices: &mut Vec<String>,
) -> Result<Option<Creds>, NsenterError> {
    let own = sys::own_caps().map_err(|source| NsenterError::Setup {
        what: "capabilities",
        source,
    })?;
    let creds = identity.map(|i| Creds {
        caps: i.creds.caps.within(own),
        ..i.creds.clone()
    });
    if let (Some(i), Some(c)) = (identity, &creds) {
        let lost = (i.creds.caps.bounding | i.creds.caps.permitted) & !(c.caps.bounding | c.caps.permitted);
        if lost != 0 {
            notices.push(format!(
                "the tool lacks capabilities the container has, which the agent does not hold: {}",
                crate::target::caps::cap_names(lost)
            ));
        }
    }
    Ok(creds)
}
