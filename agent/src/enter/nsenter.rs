//! The namespace engine: from a pinned target and a request to a running
//! tool inside exactly the namespaces asked for.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::enter::cgroup::SessionCgroup;
use crate::kernel::ns::{KernelNs, NsKind, NsSet};
use crate::kernel::procfs;
use crate::sys::plan::{ChildPlan, SpawnOutcome};
use crate::sys::pty;
use crate::sys::spawner::Spawner;
use crate::sys::{self, Creds, Join, NsFile, Stage};
use crate::target::resolve::{Pinned, Resolved};

pub use kns_proto::agent::ToolSource;

/// PATH for tools when the caller sets none: the usual system directories.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Pipes are grown to this size so large outputs move in big chunks.
const PIPE_SIZE: i32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NsenterError {
    #[error("empty command: give the tool to run after --")]
    EmptyCommand,
    #[error("no namespace chosen: pick at least one (-n, -p, -m, -u, -i, -U, -C, -T, or -a)")]
    NoNamespace,
    #[error("the command or environment contains a NUL byte")]
    Nul,
    #[error(
        "the agent's tools (--tools agent) run in the agent's own mount namespace, and the mount namespace (-m) \
         makes the tool the container image's own binary: pick one; nor may they enter the target's user \
         namespace (-U), where the target's processes could reach the agent's filesystem through the tool"
    )]
    AgentToolsWithMntOrUser,
    #[error("this kernel has no {kinds} namespaces: drop the flag for them (-a enters the kinds that exist)")]
    Unsupported { kinds: NsSet },
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
    /// The container's seccomp profile cannot be applied: the tool does
    /// not run without it.
    #[error("{0}; the tool is not run without it (--privileged runs it as node root instead)")]
    Seccomp(#[from] crate::enter::seccomp::SeccompError),
    #[error("cannot open {what} of process {pid}: {source}")]
    Open {
        what: String,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the tool's {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", stage_message(*stage, *errno, namespaces, *pid))]
    Child {
        stage: Stage,
        errno: i32,
        namespaces: NsSet,
        pid: i32,
    },
    #[error(
        "-m runs the target's own binary, so it runs with the container's identity (uid, groups, capabilities, \
         no_new_privs) as the container runtime reports it, and none is known for process {pid} (a pid/ target, \
         a pod sandbox, or a container found by its cgroup because the runtime did not answer). Rather than run an \
         image's binary as root on the node, kubectl-ns refuses. Drop -m to run the node's own tool, or add \
         --privileged to run the image's binary as node root (only for images you trust)"
    )]
    NoIdentity { pid: i32 },
    #[error(
        "process {pid} runs in a user namespace of its own, to which its uid and capabilities belong: add -U to run \
         the container's binary (-m) with the container's identity, or --privileged to run it as node root"
    )]
    IdentityNeedsUserNs { pid: i32 },
    /// The tool could not be executed: 127 (not found) or 126 (not
    /// executable), with a message for the user.
    #[error("{message}")]
    Exec { code: i32, message: String },
}

impl NsenterError {
    /// Whether the agent declines the request by its own rules (rather
    /// than failing to carry it out): a denial, for the audit trail.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            NsenterError::NoIdentity { .. }
                | NsenterError::IdentityNeedsUserNs { .. }
                | NsenterError::AgentToolsWithMntOrUser
                | NsenterError::Seccomp(_)
        )
    }
}

fn stage_message(stage: Stage, errno: i32, ns: &NsSet, pid: i32) -> String {
    let err = std::io::Error::from_raw_os_error(errno);
    match stage {
        Stage::NodeJoin => format!(
            "cannot join the node's namespaces [{ns}] (those of the node reference process {pid}, which \
             stand for every kind not chosen): {err}"
        ),
        Stage::Setns if errno == libc::ESRCH => {
            format!("process {pid} exited before its namespaces could be joined")
        }
        Stage::Setns | Stage::SetnsUser => {
            format!("cannot join the namespaces [{ns}] of process {pid}: {err}")
        }
        Stage::Root => format!("cannot enter the root directory of process {pid}: {err}"),
        Stage::Cwd => format!("cannot enter the working directory of process {pid}: {err}"),
        Stage::Fork => format!("cannot fork inside the target's namespaces: {err}"),
        Stage::MountProc => format!(
            "cannot give the tool a private mount namespace, or a /proc for the target's PID namespace there: \
             {err} (without --tools agent, --no-mount-proc keeps the node's /proc)"
        ),
        Stage::Ids => format!(
            "cannot become root in the user namespace of process {pid}: {err} (does its uid/gid map \
             map 0? `kubectl ns ls` shows the maps)"
        ),
        Stage::Creds => format!(
            "cannot give the tool the identity of the container of process {pid} (uid, groups, capabilities): \
             {err} (the agent needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP for it; --privileged runs the tool \
             as node root instead)"
        ),
        Stage::Seccomp => format!(
            "cannot load the seccomp profile of the container of process {pid} for the tool: {err} \
             (--privileged runs the tool as node root instead)"
        ),
        Stage::Workdir => format!("cannot change to the working directory: {err}"),
        Stage::Session | Stage::Stdio => format!("cannot set up the tool's terminal or stdio: {err}"),
        Stage::Exec => format!("cannot execute the tool: {err}"),
    }
}

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
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub pid: i32,
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
        Ok(Node { pid, differs })
    }
}

/// Everything a session started, owned: the tool (its PID stays reserved
/// until it is reaped) and the session's cgroup. Dropped before the tool
/// was reaped — a request cancelled while its tool was being spawned, a
/// session that failed — it kills all of it and reaps the tool, so neither
/// a process nor a zombie is left.
#[derive(Debug)]
pub struct Tool {
    pub pid: i32,
    pidfd: OwnedFd,
    /// The session's cgroup, which holds the tool and all it starts; `None`
    /// where the node has no usable cgroup v2 hierarchy (then the tool's
    /// process group is all that can be killed).
    cgroup: Option<SessionCgroup>,
    reaped: bool,
}

impl Tool {
    /// Signals the tool's process group; never once the tool is reaped,
    /// when its PID, and so the group's ID, may be reused.
    pub fn signal_group(&self, sig: nix::sys::signal::Signal) {
        if self.reaped {
            return;
        }
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pid = self.pid, ?sig, error = %e, "cannot signal the tool's process group")
            }
        }
    }

    /// Kills everything of the session: its cgroup (which also holds what
    /// left the tool's process group) and the tool's process group.
    pub fn kill_all(&self) {
        if let Some(cg) = &self.cgroup
            && let Err(e) = cg.kill()
        {
            tracing::warn!(pid = self.pid, error = %e, "cannot kill the session's cgroup");
        }
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }

    /// Why the session's processes were killed, when the kernel did it
    /// for the sessions' memory limit.
    pub fn oom_note(&self) -> Option<String> {
        self.cgroup.as_ref()?.oom_note()
    }

    /// Records that the tool was reaped.
    pub fn set_reaped(&mut self) {
        self.reaped = true;
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill_all();
        let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        if let Err(e) = sys::reap_pidfd(&self.pidfd) {
            tracing::warn!(pid = self.pid, error = %e, "cannot reap an abandoned tool");
        }
    }
}

/// A running tool, with the agent's ends of its stdio.
#[derive(Debug)]
pub struct Spawned {
    pub tool: Tool,
    /// The tool's pidfd, for the session to watch it exit.
    pub pidfd: OwnedFd,
    /// Write end of stdin (or the PTY master), if stdin is forwarded.
    pub stdin: Option<OwnedFd>,
    /// Read end of stdout (or the PTY master).
    pub stdout: OwnedFd,
    /// Read end of stderr; `None` with a TTY, where it joins stdout.
    pub stderr: Option<OwnedFd>,
    /// The PTY master, for resizing.
    pub pty: Option<OwnedFd>,
    /// What the user should be told about how the tool was started.
    pub notices: Vec<String>,
    /// Who the tool runs as, for the session's log line.
    pub runs_as: RunsAs,
    /// The target's namespaces the tool is in.
    pub entered: NsSet,
}

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
fn container_creds<'a>(
    target: &'a Pinned,
    req: &Request,
    set: NsSet,
    node: Node,
) -> Result<Option<&'a crate::target::cri::ProcessSpec>, NsenterError> {
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
fn as_the_container(
    pid: i32,
    req: &Request,
    node: Node,
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
    node: Node,
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
fn runs_as_container(pid: i32, req: &Request, set: NsSet, node: Node) -> Result<bool, NsenterError> {
    Ok(!req.privileged && set.contains(NsKind::Mnt) && own_ns(pid, node, NsKind::Mnt)?)
}

/// Whether the target has a namespace of kind `k` that is not the node's.
fn own_ns(pid: i32, node: Node, k: NsKind) -> Result<bool, NsenterError> {
    let ns = procfs::ns_id(pid, k)?;
    Ok(ns.is_some() && ns != procfs::ns_id(node.pid, k)?)
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

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, NsenterError> {
    CString::new(s.as_ref()).map_err(|_| NsenterError::Nul)
}

fn open_dir(pid: i32, what: &str) -> Result<OwnedFd, NsenterError> {
    // O_PATH: the fd is only for fchdir(2), and unlike a real open it asks
    // nothing of the target's filesystem (a FUSE daemon there that never
    // answers cannot hold this thread).
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/{what}"))
        .map(OwnedFd::from)
        .map_err(|source| NsenterError::Open {
            what: what.to_owned(),
            pid,
            source,
        })
}

/// How to join `set` of process `pid`'s namespaces: through its pidfd in
/// one call where the kernel takes one, else one file per kind.
fn join_for(pid: i32, pidfd: Option<&OwnedFd>, set: NsSet) -> Result<Join, NsenterError> {
    // Nothing left to join (-U on a target in the agent's own user
    // namespace): setns(2) refuses an empty mask with EINVAL.
    if set.is_empty() {
        return Ok(Join::Files(Vec::new()));
    }
    if let Some(pidfd) = pidfd {
        let pidfd = pidfd.try_clone().map_err(|source| NsenterError::Setup {
            what: "pidfd",
            source,
        })?;
        return Ok(Join::Pidfd {
            pidfd,
            mask: set.clone_mask(),
        });
    }
    set.iter()
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
        .collect::<Result<_, _>>()
        .map(Join::Files)
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

/// The environment: a minimal default, then the caller's.
fn environment(req: &Request) -> BTreeMap<String, String> {
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
fn candidates(argv0: &str, path: &str) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_owned()];
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{argv0}", d.trim_end_matches('/')))
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NsenterError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NsenterError::Setup {
        what: "pipes",
        source: e.into(),
    })
}

fn nonblocking(fd: &impl AsFd) -> Result<(), NsenterError> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| NsenterError::Setup {
        what: "non-blocking I/O",
        source: e.into(),
    })?;
    Ok(())
}

fn output_pipe() -> Result<(OwnedFd, OwnedFd), NsenterError> {
    let (r, w) = pipe()?;
    // Best effort: a smaller pipe still works, only slower.
    let _ = fcntl(&r, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    nonblocking(&r)?;
    Ok((r, w))
}

/// The child's copy of a session cgroup fd.
fn owned(fd: Option<BorrowedFd<'_>>) -> Result<Option<OwnedFd>, NsenterError> {
    fd.map(|f| f.try_clone_to_owned())
        .transpose()
        .map_err(|source| NsenterError::Setup {
            what: "session cgroup",
            source,
        })
}

/// Starts the tool. Blocking (it forks and waits for the exec): call it
/// from a blocking thread.
///
/// Everything the child needs is prepared here, in this order, before the
/// one fork: the namespaces to enter, the identity the tool runs with and
/// its seccomp filter, the handles to join them by, the strings for execve,
/// and the tool's stdio.
pub fn spawn(
    target: &Pinned,
    req: &Request,
    node: Node,
    spawner: &Spawner,
    cgroup: Option<SessionCgroup>,
) -> Result<Spawned, NsenterError> {
    check_request(req)?;
    let agent_tools = req.tools == ToolSource::Agent;
    let pid = target.resolved.pid;
    let NsPlan {
        set,
        entered,
        node_set,
        with_mnt,
        mut notices,
    } = plan_namespaces(pid, req, node, agent_tools)?;
    let identity = container_creds(target, req, set, node)?;
    // Compiled here, before the fork; the child only loads it.
    let seccomp = identity
        .and_then(|i| i.seccomp.as_ref())
        .map(crate::enter::seccomp::compile)
        .transpose()?;
    let mount_proc = req.mount_proc && set.contains(NsKind::Pid) && !with_mnt;
    let (join, late_user, node_join) = joins(target, node, set, node_set, mount_proc)?;
    let (root, cwd) = if with_mnt {
        (Some(open_dir(pid, "root")?), Some(open_dir(pid, "cwd")?))
    } else {
        (None, None)
    };
    let exec = ExecStrings::of(req)?;
    let stdio = Stdio::open(req)?;
    let creds = tool_creds(identity, &mut notices)?;
    let become_root = set.contains(NsKind::User) && creds.is_none();
    let runs_as = match &creds {
        Some(c) => RunsAs::Container {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.clone(),
        },
        None if become_root => RunsAs::UserNsRoot,
        None => RunsAs::NodeRoot,
    };
    let plan = ChildPlan {
        node: node_join,
        join,
        late_user,
        become_root,
        // Whenever the tool runs with an identity processes in the target
        // may hold, they may open its /proc/PID/exe (see exec_sealed_copy).
        exec_copy: runs_as != RunsAs::NodeRoot,
        creds,
        seccomp,
        root,
        cwd,
        mount_proc,
        private_mounts: agent_tools,
        workdir: exec.workdir,
        candidates: exec.candidates,
        argv: exec.argv,
        envp: exec.envp,
        stdio: stdio.child,
        tty: req.tty,
        cgroup: owned(cgroup.as_ref().map(|c| c.fd()))?,
        memory_procs: owned(cgroup.as_ref().and_then(|c| c.memory_procs()))?,
    };
    let outcome = spawner.spawn(plan).map_err(|source| NsenterError::Setup {
        what: "process",
        source,
    })?;
    let tool = match outcome {
        SpawnOutcome::Running(p) => p,
        SpawnOutcome::Failed { stage, errno } => {
            let failed = Failed {
                req,
                with_mnt,
                search_path: &exec.search_path,
                set,
                node_set,
                pid,
                node,
            };
            return Err(failed.error(stage, errno));
        }
    };
    let (tool, pidfd) = tool_handles(tool, cgroup)?;
    Ok(Spawned {
        tool,
        pidfd,
        stdin: stdio.stdin,
        stdout: stdio.stdout,
        stderr: stdio.stderr,
        pty: stdio.pty,
        notices,
        runs_as,
        entered,
    })
}

/// The checks `rpc::validate` makes, again for callers that come here
/// directly.
fn check_request(req: &Request) -> Result<(), NsenterError> {
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err(NsenterError::EmptyCommand);
    }
    if req.namespaces.is_empty() {
        return Err(NsenterError::NoNamespace);
    }
    if req.tools == ToolSource::Agent
        && (req.namespaces.contains(NsKind::Mnt) || req.namespaces.contains(NsKind::User))
    {
        return Err(NsenterError::AgentToolsWithMntOrUser);
    }
    Ok(())
}

/// Which namespaces the tool enters, of the target's and of the node's.
struct NsPlan {
    /// The target's kinds to join.
    set: NsSet,
    /// What the tool is in of the target's, for the audit trail: the kinds
    /// asked for that exist, and those `-m` adds.
    entered: NsSet,
    /// The node's kinds to join first.
    node_set: NsSet,
    /// Whether the tool runs in the target's mount namespace.
    with_mnt: bool,
    /// What the user is told about the choice.
    notices: Vec<String>,
}

fn plan_namespaces(pid: i32, req: &Request, node: Node, agent_tools: bool) -> Result<NsPlan, NsenterError> {
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
    if with_mnt
        && !set.contains(NsKind::Pid)
        && procfs::ns_id(pid, NsKind::Pid)? != procfs::ns_id(node.pid, NsKind::Pid)?
    {
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

/// The handles the child joins namespaces by: the target's first set, its
/// user namespace when that must come after mounting proc, and the node's.
fn joins(
    target: &Pinned,
    node: Node,
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
    let use_pidfd = pidfd_setns_supported();
    let target_pidfd = use_pidfd.then_some(&target.pidfd);
    let join = join_for(pid, target_pidfd, first)?;
    let late_user = if late_user {
        Some(join_for(pid, target_pidfd, [NsKind::User].into_iter().collect())?)
    } else {
        None
    };
    let node_join = if node_set.is_empty() {
        None
    } else {
        let node_pidfd = if use_pidfd {
            Some(sys::pidfd_open(node.pid).map_err(|source| NsenterError::Open {
                what: "pidfd".into(),
                pid: node.pid,
                source,
            })?)
        } else {
            None
        };
        Some(join_for(node.pid, node_pidfd.as_ref(), node_set)?)
    };
    Ok((join, late_user, node_join))
}

/// What execve is given, as C strings made before the fork.
struct ExecStrings {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: Option<CString>,
    /// The PATH the candidates came from, for an exec failure's message.
    search_path: String,
}

impl ExecStrings {
    fn of(req: &Request) -> Result<ExecStrings, NsenterError> {
        let env = environment(req);
        let search_path = env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
        let candidates = candidates(&req.argv[0], search_path)
            .into_iter()
            .map(cstr)
            .collect::<Result<_, _>>()?;
        let argv = req.argv.iter().map(cstr).collect::<Result<_, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let workdir = req
            .workdir
            .as_ref()
            .map(|w| cstr(std::ffi::OsStr::new(w).as_bytes()))
            .transpose()?;
        Ok(ExecStrings {
            candidates,
            argv,
            envp,
            workdir,
            search_path: search_path.to_owned(),
        })
    }
}

/// The tool's stdio: the child's three fds, and the agent's ends.
struct Stdio {
    child: [OwnedFd; 3],
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    pty: Option<OwnedFd>,
}

impl Stdio {
    fn open(req: &Request) -> Result<Stdio, NsenterError> {
        if req.tty {
            Stdio::terminal(req.window)
        } else {
            Stdio::pipes(req.stdin)
        }
    }

    /// A terminal (-t): the slave is all three of the child's fds.
    fn terminal(window: Option<(u16, u16)>) -> Result<Stdio, NsenterError> {
        let p = pty::open(window).map_err(|source| NsenterError::Setup {
            what: "terminal",
            source,
        })?;
        let slave = |fd: &OwnedFd| {
            fd.try_clone().map_err(|source| NsenterError::Setup {
                what: "terminal",
                source,
            })
        };
        let child = [slave(&p.slave)?, slave(&p.slave)?, p.slave];
        let reader = slave(&p.master)?;
        let writer = slave(&p.master)?;
        nonblocking(&p.master)?;
        Ok(Stdio {
            child,
            stdin: Some(writer),
            stdout: reader,
            stderr: None,
            pty: Some(p.master),
        })
    }

    /// Pipes, with stdin from /dev/null unless it is forwarded.
    fn pipes(stdin_on: bool) -> Result<Stdio, NsenterError> {
        let (in_r, in_w) = if stdin_on {
            let (r, w) = pipe()?;
            nonblocking(&w)?;
            (r, Some(w))
        } else {
            let null = File::open("/dev/null").map_err(|source| NsenterError::Setup {
                what: "stdin",
                source,
            })?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = output_pipe()?;
        let (err_r, err_w) = output_pipe()?;
        Ok(Stdio {
            child: [in_r, out_w, err_w],
            stdin: in_w,
            stdout: out_r,
            stderr: Some(err_r),
            pty: None,
        })
    }
}

/// The container's credentials for the tool, with the capabilities the
/// agent does not hold left out (and the user told which).
fn tool_creds(
    identity: Option<&crate::target::cri::ProcessSpec>,
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
                crate::target::cri::cap_names(lost)
            ));
        }
    }
    Ok(creds)
}

/// What a failed child's report is checked against to word its error.
struct Failed<'a> {
    req: &'a Request,
    with_mnt: bool,
    search_path: &'a str,
    set: NsSet,
    node_set: NsSet,
    pid: i32,
    node: Node,
}

impl Failed<'_> {
    fn error(&self, stage: Stage, errno: i32) -> NsenterError {
        match stage {
            Stage::Exec => {
                let source = match self.req.tools {
                    ToolSource::Agent => Source::Agent,
                    ToolSource::Node if self.with_mnt => Source::Target,
                    ToolSource::Node => Source::Node {
                        agent_has: agent_has(&self.req.argv[0], self.search_path),
                    },
                };
                exec_error(&self.req.argv[0], errno, source)
            }
            Stage::NodeJoin => NsenterError::Child {
                stage: Stage::NodeJoin,
                errno,
                namespaces: self.node_set,
                pid: self.node.pid,
            },
            stage => NsenterError::Child {
                stage,
                errno,
                namespaces: self.set,
                pid: self.pid,
            },
        }
    }
}

/// The running tool's handles: one pidfd for the session to watch, one
/// kept by the [`Tool`] to signal and reap it.
fn tool_handles(pid: i32, cgroup: Option<SessionCgroup>) -> Result<(Tool, OwnedFd), NsenterError> {
    let pidfd = sys::pidfd_open(pid).map_err(|source| NsenterError::Setup {
        what: "pidfd",
        source,
    })?;
    let tool = Tool {
        pid,
        pidfd: pidfd.try_clone().map_err(|source| NsenterError::Setup {
            what: "pidfd",
            source,
        })?,
        cgroup,
        reaped: false,
    };
    Ok((tool, pidfd))
}

/// Where a tool that could not be executed was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The node's filesystem; `agent_has` tells whether the agent's own
    /// image has the tool.
    Node { agent_has: bool },
    /// The target's (-m).
    Target,
    /// The agent's image (--tools agent).
    Agent,
}

/// Whether the agent's own filesystem (the agent process's mount
/// namespace, which in its pod is its image) has `argv0` as an executable
/// file, searched as the tool would be.
fn agent_has(argv0: &str, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    candidates(argv0, path)
        .iter()
        .filter_map(|c| std::fs::metadata(c).ok())
        .any(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The toolbox image matching this agent, for hints.
fn toolbox_image() -> String {
    format!(
        "{}:{}-toolbox",
        kns_proto::AGENT_IMAGE_REPOSITORY,
        env!("CARGO_PKG_VERSION")
    )
}

/// The user-facing message for a tool that could not be executed, with
/// where else to find it: with `-m` the tool comes from the container's
/// image, which for distroless and scratch images rarely has it; minimal
/// node OSes (Talos, Bottlerocket, Flatcar) ship few tools, which the
/// toolbox agent image brings. Not found is 127, as in sh(1) and `kubectl
/// exec`; found but not executable 126.
fn exec_error(tool: &str, errno: i32, source: Source) -> NsenterError {
    let not_found = errno == libc::ENOENT || errno == libc::ENOTDIR;
    let code = if not_found { 127 } else { 126 };
    let message = match (not_found, source) {
        (true, Source::Target) => format!(
            "{tool}: not found in the target's mount namespace: the container image has no such binary. \
             Drop -m (--mount) to run the node's {tool} inside the other namespaces, or use the agent's \
             (--tools agent)."
        ),
        (true, Source::Node { agent_has: true }) => format!(
            "{tool}: command not found on the node (searched PATH).\nHint: this node's kubectl-ns agent image \
             has {tool}: add --tools agent to run it from there."
        ),
        (true, Source::Node { agent_has: false }) => format!(
            "{tool}: command not found on the node (searched PATH).\nHint: for nodes without tools, install the \
             toolbox agent image (built by scripts/image --toolbox: kubectl ns install --image {}) and add \
             --tools agent.",
            toolbox_image()
        ),
        (true, Source::Agent) => format!(
            "{tool}: command not found in the agent's image (searched PATH; --tools agent).\nHint: the toolbox \
             agent image ({}) has busybox, ip, ss, ps, top, tcpdump, strace and dig; or drop --tools agent to run \
             the node's {tool}.",
            toolbox_image()
        ),
        (false, _) => format!(
            "{tool}: cannot execute: {}",
            std::io::Error::from_raw_os_error(errno)
        ),
    };
    NsenterError::Exec { code, message }
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
    fn exec_errors_map_to_shell_codes() {
        match exec_error("ss", libc::ENOENT, Source::Target) {
            NsenterError::Exec { code: 127, message } => {
                assert!(
                    message.contains("container image has no such binary"),
                    "{message}"
                );
                assert!(message.contains("Drop -m"), "{message}");
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            exec_error("x", libc::EACCES, Source::Node { agent_has: false }),
            NsenterError::Exec { code: 126, .. }
        ));
    }

    #[test]
    fn a_tool_missing_on_the_node_points_at_the_agents_tools() {
        let message = |source| match exec_error("tcpdump", libc::ENOENT, source) {
            NsenterError::Exec { code: 127, message } => message,
            e => panic!("{e:?}"),
        };
        let m = message(Source::Node { agent_has: false });
        assert!(
            m.contains("not found on the node") && m.contains("-toolbox") && m.contains("--tools agent"),
            "{m}"
        );
        let m = message(Source::Node { agent_has: true });
        assert!(m.contains("agent image has tcpdump: add --tools agent"), "{m}");
        let m = message(Source::Agent);
        assert!(
            m.contains("not found in the agent's image") && m.contains("drop --tools agent"),
            "{m}"
        );
    }

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

    /// Needs root (setns), as the end-to-end tests do.
    #[tokio::test]
    async fn a_tool_dropped_before_its_session_is_killed_and_reaped() {
        let me = std::process::id() as i32;
        let resolver = crate::target::resolve::Resolver::new(me, None, None);
        let resolved = resolver
            .resolve(&crate::target::resolve::Target::Pid(me))
            .await
            .unwrap();
        let pinned = crate::target::resolve::pin(&resolved).unwrap();
        let req = Request {
            namespaces: [NsKind::Net].into_iter().collect(),
            argv: vec!["sleep".into(), "100".into()],
            env: BTreeMap::new(),
            workdir: None,
            tty: false,
            stdin: false,
            mount_proc: false,
            all: false,
            window: None,
            privileged: false,
            tools: ToolSource::Node,
        };
        let spawner = Spawner::start().unwrap();
        let spawned = spawn(&pinned, &req, Node::probe(me).unwrap(), &spawner, None)
            .expect("spawn sleep (this test needs root)");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", spawned.tool.pid));
        assert!(proc_dir.exists());
        // As when the request is cancelled while the tool is being spawned.
        drop(spawned);
        // Neither running nor a zombie: a zombie keeps its /proc entry.
        assert!(!proc_dir.exists(), "{} is still there", proc_dir.display());
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
