//! What to run and where: a session's request as the rest of `enter`
//! takes it, and the node reference whose namespaces are the node's.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::kernel::ns::{KernelNs, NsKind, NsSet};
use crate::kernel::procfs;
use crate::sys;

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
/// namespace gives the node's tools.
#[derive(Debug, Clone)]
pub struct Node {
    pub pid: i32,
    /// The reference process itself, opened before it was probed: sessions
    /// join the node's namespaces through it, so that once it has exited
    /// they fail rather than join whatever process reuses its PID.
    pub pidfd: Arc<OwnedFd>,
    /// The kinds in which the agent itself is not in the node's namespace.
    /// In its pod (hostPID only) that is net, uts, ipc, mnt, and cgroup on
    /// cgroup v2: a tool left in those would see the agent pod's interfaces,
    /// hostname and loopback listener instead of the node's.
    pub differs: NsSet,
}

impl Node {
    /// Reads which of the node reference's namespaces the agent is not in,
    /// and checks they can be opened, which entry needs.
    pub fn probe(pid: i32) -> Result<Node, procfs::ProcError> {
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| procfs::map_err(pid, format!("a pidfd of process {pid}").into(), e))?;
        let mut differs = NsSet::default();
        for k in NsKind::ALL {
            if procfs::shares_ns_with_self(pid, k)? {
                continue;
            }
            File::open(k.path(pid)).map_err(|source| procfs::ProcError::Read {
                path: k.path(pid),
                source,
            })?;
            differs.insert(k);
        }
        Ok(Node {
            pid,
            pidfd: Arc::new(pidfd),
            differs,
        })
    }
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
}
