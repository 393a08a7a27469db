//! The namespace plan: which of the target's namespaces the tool enters,
//! which of the node's, in what order, and the handles to join them by.

use std::fs::File;
use std::os::fd::OwnedFd;

use crate::enter::error::NsenterError;
use crate::enter::identity::as_the_container;
use crate::enter::request::{Node, Request};
use crate::kernel::ns::{KernelNs, NsKind, NsSet};
use crate::kernel::procfs;
use crate::sys::{Join, NsFile};
use crate::target::resolve::Pinned;

/// Which namespaces the tool enters, of the target's and of the node's.
pub(super) struct NsPlan {
    /// The target's kinds to join.
    pub(super) set: NsSet,
    /// What the tool is in of the target's, for the audit trail: the kinds
    /// asked for that exist, and those `-m` adds.
    pub(super) entered: NsSet,
    /// The node's kinds to join first.
    pub(super) node_set: NsSet,
    /// Whether the tool runs in the target's mount namespace.
    pub(super) with_mnt: bool,
    /// What the user is told about the choice.
    pub(super) notices: Vec<String>,
}

pub(super) fn plan_namespaces(
    pid: i32,
    req: &Request,
    node: &Node,
    agent_tools: bool,
) -> Result<NsPlan, NsenterError> {
    let mut notices = Vec::new();
    let mut present = NsSet::default();
    for k in req.namespaces.iter() {
        if procfs::ns_id(pid, k)?.is_some() {
            present.insert(k);
        }
    }
    let (mut set, skipped) = existing_kinds(req.namespaces, present, req.all)?;
    notices.extend(skipped);
    notices.extend(as_the_container(pid, req, node, &mut set)?);
    let entered = set;
    // Every kind not chosen is the node's, also where the agent's own (its
    // pod's) differs; but for the agent's tools the mount namespace stays
    // the agent's, whose root filesystem is its image.
    let mut node_set = node.differs.without(set);
    if agent_tools {
        node_set.remove(NsKind::Mnt);
    }
    // setns(2) refuses to rejoin the caller's own user namespace (EINVAL);
    // being in it already is what was asked, so it is skipped.
    if set.contains(NsKind::User) && procfs::shares_ns_with_self(pid, NsKind::User)? {
        set.remove(NsKind::User);
    }
    let with_mnt = set.contains(NsKind::Mnt);
    if with_mnt && !set.contains(NsKind::Pid) && procfs::ns_id(pid, NsKind::Pid)? != node.ns_id(NsKind::Pid) {
        notices.push(PROC_MISMATCH.to_owned());
    }
    Ok(NsPlan {
        set,
        entered,
        node_set,
        with_mnt,
        notices,
    })
}

/// The chosen kinds this kernel has (`present`). With -a (`all`) the others
/// are skipped with a notice naming them; asked for by name, they are an
/// error rather than setns(2)'s bare EINVAL.
fn existing_kinds(chosen: NsSet, present: NsSet, all: bool) -> Result<(NsSet, Option<String>), NsenterError> {
    let missing = chosen.without(present);
    if missing.is_empty() {
        return Ok((chosen, None));
    }
    if !all {
        return Err(NsenterError::Unsupported { kinds: missing });
    }
    let set = chosen.without(missing);
    Ok((
        set,
        Some(format!(
            "this kernel has no {missing} namespaces: entered [{set}], skipped [{missing}]"
        )),
    ))
}

/// Told when `-m` comes without `-p` and the target has its own PID
/// namespace: its /proc is mounted for that namespace, where the tool
/// (left in the node's) has no entry.
const PROC_MISMATCH: &str = "-m without -p: the container's /proc belongs to its own PID namespace, \
     where this tool does not exist (no /proc/self; ps lists the container's processes without the tool). \
     Add -p to join that PID namespace too.";

/// The handles the child joins namespaces by: the target's first set, its
/// user namespace when that must come after mounting proc, and the node's.
pub(super) fn joins(
    target: &Pinned,
    node: &Node,
    set: NsSet,
    node_set: NsSet,
    mount_proc: bool,
) -> Result<(Join, Option<Join>, Option<Join>), NsenterError> {
    let pid = target.resolved.pid;
    // Mounting proc needs the agent's privileges, which joining the target's
    // user namespace gives up; so the user namespace then comes after.
    let late_user = mount_proc && set.contains(NsKind::User);
    let mut first = set;
    if late_user {
        first.remove(NsKind::User);
    }
    let by_pidfd = pidfd_setns_supported();
    let join = join_for(pid, &target.pidfd, by_pidfd, first)?;
    let late_user = if late_user {
        Some(join_for(
            pid,
            &target.pidfd,
            by_pidfd,
            [NsKind::User].into_iter().collect(),
        )?)
    } else {
        None
    };
    let node_join = if node_set.is_empty() {
        None
    } else {
        node.unmoved(node_set)?;
        Some(join_for(node.pid, &node.pidfd, by_pidfd, node_set)?)
    };
    Ok((join, late_user, node_join))
}

/// How to join `set` of the namespaces of process `pid`, held by `pidfd`:
/// through the pidfd in one call where the kernel takes one, else one file
/// per kind, opened by PID and so checked against the pidfd afterwards.
fn join_for(pid: i32, pidfd: &OwnedFd, by_pidfd: bool, set: NsSet) -> Result<Join, NsenterError> {
    // Nothing left to join (-U on a target in the agent's own user
    // namespace): setns(2) refuses an empty mask with EINVAL.
    if set.is_empty() {
        return Ok(Join::Files(Vec::new()));
    }
    if by_pidfd {
        let pidfd = pidfd.try_clone().map_err(|source| NsenterError::Setup {
            what: "pidfd",
            source,
        })?;
        return Ok(Join::Pidfd {
            pidfd,
            mask: set.clone_mask(),
        });
    }
    let files = set
        .iter()
        .map(|k| {
            let fd = File::open(k.path(pid)).map_err(|source| NsenterError::Open {
                what: format!("ns/{}", k.proc_name()),
                pid,
                source,
            })?;
            Ok(NsFile {
                fd: fd.into(),
                nstype: k.clone_flag(),
            })
        })
        .collect::<Result<Vec<_>, NsenterError>>()?;
    procfs::still_runs(pid, pidfd)?;
    Ok(Join::Files(files))
}

/// Whether `setns` accepts a pidfd and a namespace mask (Linux ≥ 5.8).
/// `KNS_NSFD_FALLBACK=1` forces the per-namespace-file path, for testing it.
pub fn pidfd_setns_supported() -> bool {
    if std::env::var_os("KNS_NSFD_FALLBACK").is_some_and(|v| v == "1") {
        return false;
    }
    let Ok(u) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = u.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    #[test]
    fn kinds_the_kernel_lacks_are_skipped_with_all_and_refused_by_name() {
        let time: NsSet = [NsKind::Time].into_iter().collect();
        let all = NsSet::all();
        let present = all.without(time);
        let (set, notice) = existing_kinds(all, present, true).unwrap();
        assert_eq!(set, present);
        let notice = notice.unwrap();
        assert!(
            notice.contains("no time namespaces") && notice.contains("skipped [time]"),
            "{notice}"
        );
        match existing_kinds(time, present, false) {
            Err(e @ NsenterError::Unsupported { .. }) => {
                assert!(e.to_string().contains("no time namespaces"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(existing_kinds(present, present, false).unwrap(), (present, None));
    }

    /// A pidfd of a process that has exited and been reaped.
    fn dead_pidfd() -> OwnedFd {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pidfd = sys::pidfd_open(child.id() as i32).unwrap();
        child.wait().unwrap();
        pidfd
    }

    #[test]
    fn namespace_files_are_not_used_once_the_process_held_has_exited() {
        // The PID names a live process (this one), as a reused PID would,
        // but the pidfd the process was held by has exited.
        let me = std::process::id() as i32;
        let uts: NsSet = [NsKind::Uts].into_iter().collect();
        match join_for(me, &dead_pidfd(), false, uts) {
            Err(NsenterError::Proc(procfs::ProcError::NoSuchProcess { pid })) => assert_eq!(pid, me),
            other => panic!("{other:?}"),
        }
        let mine = sys::pidfd_open(me).unwrap();
        assert!(matches!(join_for(me, &mine, false, uts), Ok(Join::Files(f)) if f.len() == 1));
    }
}
