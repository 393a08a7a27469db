//! What to run and where: a session's request as the rest of `enter`
//! takes it, and the node reference whose namespaces are the node's.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::kernel::ns::{KernelNs, NsId, NsKind, NsSet};
use crate::kernel::procfs;
use crate::sys;

use kns_proto::agent::ProcessInfo;
pub use kns_proto::agent::ToolSource;

/// PATH for tools when the caller sets none: the usual system directories.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct Request {
    pub namespaces: NsSet,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub mount_proc: bool,
    /// Asked as -a: kinds the kernel lacks are skipped, not refused.
    pub all: bool,
    pub window: Option<(u16, u16)>,
    /// With -m, run the target's binary as node root rather than with the
    /// container's identity.
    pub privileged: bool,
    /// Where the binary comes from: the node's filesystem (the target's
    /// with -m) or the agent's own image.
    pub tools: ToolSource,
}

impl Request {
    /// Where the tool comes from, as the audit trail and the session's log
    /// line name it: `node`, `target` (-m) or `agent`.
    pub fn tool_source(&self) -> &'static str {
        match self.tools {
            ToolSource::Agent => "agent",
            ToolSource::Node if self.namespaces.contains(NsKind::Mnt) => "target",
            ToolSource::Node => "node",
        }
    }
}

/// The node reference process, whose namespaces are the node's: the tool
/// gets them for every kind the user did not choose (nsenter's contract:
/// what you choose is the target's, the rest is the host's), and its mount
/// namespace gives the node's tools. It is read once, when probed: once it
/// exits its PID may name any process, whose namespaces must never pass
/// for the node's.
#[derive(Debug, Clone)]
pub struct Node {
    pub pid: i32,
    /// Its start time when probed, which pins it as a target (`node`).
    pub start_time: u64,
    /// The process itself, opened before it was probed: sessions join the
    /// node's namespaces through it, so that once it has exited they fail.
    pub pidfd: Arc<OwnedFd>,
    /// Its namespaces (and PID in its own PID namespace) when probed: what
    /// those of a target are compared with, and what List and Inspect
    /// report as the node's.
    pub info: Arc<ProcessInfo>,
    /// The kinds in which the agent itself is not in the node's namespace.
    /// In its pod (hostPID only) that is net, uts, ipc, mnt, and cgroup on
    /// cgroup v2: a tool left in those would see the agent pod's interfaces,
    /// hostname and loopback listener instead of the node's.
    pub differs: NsSet,
}

impl Node {
    /// Reads the node reference's start time and namespaces, which of them
    /// the agent is not in, and checks those can be opened, which entry
    /// needs; all of it from the process the pidfd holds.
    pub fn probe(pid: i32) -> Result<Node, procfs::ProcError> {
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| procfs::map_err(pid, format!("a pidfd of process {pid}").into(), e))?;
        let start_time = procfs::stat(pid)?.start_time;
        let info = procfs::process_info(pid)?;
        let me = std::process::id() as i32;
        let mut differs = NsSet::default();
        for k in NsKind::ALL {
            if info.namespace(k).map(NsId::from) == procfs::ns_id(me, k)? {
                continue;
            }
            File::open(k.path(pid)).map_err(|source| procfs::ProcError::Read {
                path: k.path(pid),
                source,
            })?;
            differs.insert(k);
        }
        procfs::still_runs(pid, &pidfd)?;
        Ok(Node {
            pid,
            start_time,
            pidfd: Arc::new(pidfd),
            info: Arc::new(info),
            differs,
        })
    }

    /// The node's namespace of kind `k`, as probed; `None` where the kernel
    /// has no such kind.
    pub fn ns_id(&self, k: NsKind) -> Option<NsId> {
        self.info.namespace(k).map(NsId::from)
    }

    /// Checks that the reference is still in the namespaces of kinds `set`
    /// it was probed in, before the tool joins them through its pidfd: a
    /// reference that moved (setns, unshare) would hand the tool other
    /// namespaces than those the request was judged against.
    pub fn unmoved(&self, set: NsSet) -> Result<(), NodeMoved> {
        for k in set.iter() {
            if procfs::ns_id(self.pid, k).ok().flatten() != self.ns_id(k) {
                return Err(NodeMoved {
                    pid: self.pid,
                    kind: k,
                });
            }
        }
        Ok(())
    }
}

/// The node reference is no longer in a namespace it was probed in (or it
/// exited, and its PID names another process).
#[derive(Debug, thiserror::Error)]
#[error(
    "the node reference process {pid} is no longer in the {} namespace it had when the agent started \
     (it moved, or exited and its PID is another process's): restart the agent, with --node-pid \
     (KNS_NODE_PID) a process that stays in the host's namespaces (PID 1 with hostPID)",
    kind.proc_name()
)]
pub struct NodeMoved {
    pub pid: i32,
    pub kind: NsKind,
}

/// The environment: a minimal default, then the caller's.
pub(super) fn environment(req: &Request) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ]);
    if req.tty {
        env.insert("TERM".into(), "xterm".into());
    }
    env.extend(req.env.clone());
    env
}

/// Where execve is tried: argv[0] itself if it has a slash, else each PATH
/// entry (resolved in the entered mount namespace, so inside the child).
pub(super) fn candidates(argv0: &str, path: &str) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_owned()];
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{argv0}", d.trim_end_matches('/')))
        .collect()
}

#[cfg(test)]
impl Node {
    /// This node's PID and namespaces with another process held, which
    /// differs from the agent in `differs`: as when the reference exited
    /// and its PID was taken by a process that did not.
    pub(crate) fn holding(self, pidfd: OwnedFd, differs: NsSet) -> Node {
        Node {
            pidfd: Arc::new(pidfd),
            differs,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path() {
        assert_eq!(
            candidates("ss", "/usr/sbin:/bin/"),
            vec!["/usr/sbin/ss", "/bin/ss"]
        );
        assert_eq!(candidates("./x", "/bin"), vec!["./x"]);
        assert_eq!(candidates("ss", "::"), Vec::<String>::new());
    }

    #[test]
    fn caller_env_overrides_defaults() {
        let req = Request {
            namespaces: NsSet::default(),
            argv: vec!["x".into()],
            env: BTreeMap::from([("PATH".into(), "/opt/bin".into()), ("A".into(), "1".into())]),
            workdir: None,
            tty: true,
            stdin: false,
            mount_proc: true,
            all: false,
            window: None,
            privileged: false,
            tools: ToolSource::Node,
        };
        let env = environment(&req);
        assert_eq!(env["PATH"], "/opt/bin");
        assert_eq!(env["A"], "1");
        assert_eq!(env["TERM"], "xterm");
    }

    #[test]
    fn the_node_reference_is_read_once_when_probed() {
        // A reference in a UTS namespace of its own, so that its namespaces
        // differ from this process's.
        let mut child = std::process::Command::new("unshare")
            .args(["--uts", "--", "sleep", "100"])
            .spawn()
            .expect("unshare (this test needs root)");
        let pid = child.id() as i32;
        let mine = procfs::ns_id(std::process::id() as i32, NsKind::Uts).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let theirs = loop {
            let id = procfs::ns_id(pid, NsKind::Uts).unwrap();
            if id != mine {
                break id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "unshare never left this UTS namespace"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let node = Node::probe(pid).unwrap();
        assert!(node.differs.contains(NsKind::Uts));
        assert_eq!(node.ns_id(NsKind::Uts), theirs);
        assert_eq!(node.start_time, procfs::stat(pid).unwrap().start_time);
        let uts: NsSet = [NsKind::Uts].into_iter().collect();
        node.unmoved(NsSet::all()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Gone: what stands for the node is what was probed, never what
        // its PID names now, and its pidfd says it has exited.
        assert_eq!(node.ns_id(NsKind::Uts), theirs);
        assert!(sys::pidfd_exited(&node.pidfd).unwrap());
        let e = node.unmoved(uts).unwrap_err();
        assert_eq!((e.pid, e.kind), (pid, NsKind::Uts));
        assert!(e.to_string().contains("restart the agent"), "{e}");
        match Node::probe(pid) {
            Err(procfs::ProcError::NoSuchProcess { pid: p }) => assert_eq!(p, pid),
            other => panic!("{other:?}"),
        }
    }
}
