//! Why a tool could not be started, worded for the user: each failed step
//! of the child, and an exec failure with the shell's exit code and where
//! the tool was looked for.

use crate::enter::request::candidates;
use crate::kernel::ns::NsSet;
use crate::kernel::procfs;
use crate::sys::Stage;

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
    #[error(transparent)]
    NodeMoved(#[from] crate::enter::request::NodeMoved),
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
    /// than failing to carry it out): a denial, for the audit trail. The
    /// request's shape (no command, no namespace, a NUL, the agent's tools
    /// with -m or -U) is checked before anyone is identified, like any
    /// malformed request, and is no denial.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            NsenterError::NoIdentity { .. }
                | NsenterError::IdentityNeedsUserNs { .. }
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

/// Where a tool that could not be executed was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
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
pub(super) fn agent_has(argv0: &str, path: &str) -> bool {
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
pub(super) fn exec_error(tool: &str, errno: i32, source: Source) -> NsenterError {
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
}
