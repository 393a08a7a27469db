//! What the parent prepares for the child and what the child reports
//! back: shared by both sides of the fork ([`crate::sys::fork`] and
//! `crate::sys::child`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys::{Creds, Join, Stage};

/// A compiled seccomp profile (`enter::seccomp` compiles it; the child
/// loads it): one instruction is 8 bytes of `struct sock_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: Vec<u8>,
    /// seccomp(2) `SECCOMP_FILTER_FLAG_*` bits.
    pub flags: u32,
}

/// Everything the child needs, prepared before the fork so that the child
/// only makes system calls.
#[derive(Debug)]
pub struct ChildPlan {
    /// The node's namespaces for every kind not chosen where the agent's
    /// own differ, joined first: the tool comes from the node's filesystem
    /// and sees the node's network, hostname, IPC, not the agent pod's.
    pub node: Option<Join>,
    /// The target's chosen namespaces.
    pub join: Join,
    /// Entered after /proc is mounted: mounting proc needs privileges the
    /// process gives up when it joins a user namespace.
    pub late_user: Option<Join>,
    /// The target's user namespace was joined: become root in it, as
    /// nsenter(1) does, so the tool holds that namespace's capabilities
    /// instead of running as the overflow uid.
    pub become_root: bool,
    /// Run the tool with this identity instead of the agent's (or root's
    /// of the target's user namespace).
    pub creds: Option<Creds>,
    /// The container's seccomp filter, loaded with its identity.
    pub seccomp: Option<Filter>,
    /// Execute a sealed memfd copy of the tool instead of its file; see
    /// `child::exec_sealed_copy`.
    pub exec_copy: bool,
    /// The target's root and working directory (with the mount namespace).
    pub root: Option<OwnedFd>,
    pub cwd: Option<OwnedFd>,
    pub mount_proc: bool,
    /// Give the tool a private copy of its mount namespace: the agent's
    /// own, for the agent's tools, whose mounts must not change what the
    /// agent sees.
    pub private_mounts: bool,
    pub workdir: Option<CString>,
    /// Full paths to try in order (PATH resolved before the fork).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The child's ends of stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    pub tty: bool,
    /// The session's cgroup (a directory fd): the children start in it.
    pub cgroup: Option<OwnedFd>,
    /// cgroup v1 nodes: the `tasks` of the session's memory cgroup, which
    /// the first child (single-threaded) writes itself into before anything
    /// else.
    pub memory_tasks: Option<OwnedFd>,
}

impl ChildPlan {
    /// Whether a PID namespace is joined, which only the child's own
    /// children enter (setns(2)): then the tool is a second process.
    pub(super) fn joins_pid(&self) -> bool {
        [self.node.as_ref(), Some(&self.join), self.late_user.as_ref()]
            .into_iter()
            .flatten()
            .any(|j| match j {
                Join::Pidfd { mask, .. } => mask & libc::CLONE_NEWPID != 0,
                Join::Files(files) => files.iter().any(|f| f.nstype == libc::CLONE_NEWPID),
            })
    }

    /// The fds the children use, with stdio's numbers (0-2, where the
    /// tool's stdio goes) and `report`, sorted: everything else of the
    /// agent's is closed before the first child enters any namespace.
    /// The session cgroup is not among them: only clone3 in the parent
    /// uses it.
    pub(super) fn kept_fds(&self, report: RawFd) -> Vec<RawFd> {
        let join = |j: &Join| -> Vec<RawFd> {
            match j {
                Join::Pidfd { pidfd, .. } => vec![pidfd.as_raw_fd()],
                Join::Files(files) => files.iter().map(|f| f.fd.as_raw_fd()).collect(),
            }
        };
        let mut fds: Vec<RawFd> = [self.node.as_ref(), Some(&self.join), self.late_user.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(join)
            .chain(
                [&self.root, &self.cwd, &self.memory_tasks]
                    .into_iter()
                    .flatten()
                    .map(|f| f.as_raw_fd()),
            )
            .chain(self.stdio.iter().map(|f| f.as_raw_fd()))
            .chain([0, 1, 2, report])
            .collect();
        fds.sort_unstable();
        fds.dedup();
        fds
    }
}

/// What the parent learns from a spawn.
#[derive(Debug)]
pub enum SpawnOutcome {
    /// The tool was exec'd; its PID in the agent's PID namespace.
    Running(i32),
    /// A setup step failed; the tool (if it was created) has been reaped.
    Failed { stage: Stage, errno: i32 },
}

/// The child's reports to the parent, 12 bytes each: a kind, then two
/// numbers (the tool's PID; or the failed stage and its errno).
pub(super) const REPORT_PID: u32 = 1;
pub(super) const REPORT_ERR: u32 = 2;
pub(super) const REPORT_LEN: usize = 12;
