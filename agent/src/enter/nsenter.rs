//! The namespace engine: from a pinned target and a request to a running
//! tool inside exactly the namespaces asked for. [`spawn`] is the sequence;
//! its steps are in [`crate::enter::plan`] (namespaces),
//! [`crate::enter::identity`] (who the tool runs as),
//! [`crate::enter::stdio`] and [`crate::sys`] (the fork).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use crate::enter::cgroup::SessionCgroup;
use crate::enter::error::{NsenterError, Source, agent_has, exec_error};
use crate::enter::identity::{RunsAs, container_creds, tool_creds};
use crate::enter::plan::{NsPlan, joins, plan_namespaces};
use crate::enter::request::{DEFAULT_PATH, Node, Request, ToolSource, candidates, environment};
use crate::enter::stdio::Stdio;
use crate::kernel::ns::{NsKind, NsSet};
use crate::sys::plan::{ChildPlan, SpawnOutcome};
use crate::sys::spawner::Spawner;
use crate::sys::{self, Stage};
use crate::target::resolve::Pinned;

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
    node: &Node,
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
        memory_tasks: owned(cgroup.as_ref().and_then(|c| c.memory_tasks()))?,
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
                node_pid: node.pid,
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

/// What a request must be for [`spawn`] to start anything: a command, a
/// namespace, and the agent's tools not in the target's filesystem or
/// user namespace. `rpc::validate` checks it first; `spawn` again, for
/// callers that come here directly.
pub fn check_request(req: &Request) -> Result<(), NsenterError> {
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

/// What a failed child's report is checked against to word its error.
struct Failed<'a> {
    req: &'a Request,
    with_mnt: bool,
    search_path: &'a str,
    set: NsSet,
    node_set: NsSet,
    pid: i32,
    node_pid: i32,
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
                pid: self.node_pid,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::target::resolve::{self, Resolver};

    /// This process, pinned as a `pid/` target, and `argv` to run in its
    /// network namespace.
    async fn in_own_net(argv: &[&str]) -> (Pinned, Request) {
        let me = std::process::id() as i32;
        let resolver = Resolver::new(me, 0, None, None, Default::default());
        let resolved = resolver.resolve(&resolve::Target::Pid(me)).await.unwrap();
        let req = Request {
            namespaces: [NsKind::Net].into_iter().collect(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
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
        (resolve::pin(&resolved).unwrap(), req)
    }

    #[tokio::test]
    async fn a_tool_dropped_before_its_session_is_killed_and_reaped() {
        let me = std::process::id() as i32;
        let (pinned, req) = in_own_net(&["sleep", "100"]).await;
        let spawner = Spawner::start().unwrap();
        let spawned = spawn(&pinned, &req, &Node::probe(me).unwrap(), &spawner, None)
            .expect("spawn sleep (this test needs root)");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", spawned.tool.pid));
        assert!(proc_dir.exists());
        // As when the request is cancelled while the tool is being spawned.
        drop(spawned);
        // Neither running nor a zombie: a zombie keeps its /proc entry.
        assert!(!proc_dir.exists(), "{} is still there", proc_dir.display());
    }

    #[tokio::test]
    async fn the_nodes_namespaces_are_joined_through_the_reference_held_not_its_pid() {
        let me = std::process::id() as i32;
        let (pinned, req) = in_own_net(&["true"]).await;
        // The reference exited and its PID now names a live process (this
        // one): the node's UTS namespace must not be taken from that.
        let mut reference = std::process::Command::new("true").spawn().unwrap();
        let pidfd = crate::sys::pidfd_open(reference.id() as i32).unwrap();
        reference.wait().unwrap();
        let node = Node::probe(me)
            .unwrap()
            .holding(pidfd, [NsKind::Uts].into_iter().collect());
        let spawner = Spawner::start().unwrap();
        match spawn(&pinned, &req, &node, &spawner, None) {
            Err(
                e @ NsenterError::Child {
                    stage: Stage::NodeJoin,
                    errno: libc::ESRCH,
                    ..
                },
            ) => assert!(
                e.to_string().contains("cannot join the node's namespaces [uts]"),
                "{e}"
            ),
            Err(e) => panic!("{e:?}"),
            Ok(s) => panic!("the tool ran as {}", s.tool.pid),
        }
    }
}
