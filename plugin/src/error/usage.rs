//! Usage errors (exit 2): flags or arguments that do not go together,
//! found by `cli`, the commands and `agent::route` once the arguments are
//! parsed. Here, beside the other failures, so that `error` imports
//! nothing from the layers that return them.

/// What `-i` is here, for the refusal of `-i -t` and the notes about `-i`.
pub const IPC_FLAG: &str = "-i is the IPC namespace here (as in nsenter), not kubectl's --stdin";

/// A mistake in the arguments, one variant each; the message says what
/// was given, [`hints`](Self::hints) what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{IPC_FLAG}: -i -t would enter only the IPC namespace.")]
    IpcWithTty,
    #[error(
        "no namespace chosen: pick at least one of -n (net), -p (pid), -m (mount), -u (uts), \
         -i (ipc), -U (user), -C (cgroup), -T (time), or -a (all)"
    )]
    NoNamespace,
    /// `-o` or `-A` without `-l`.
    #[error("{flag} goes with -l SELECTOR (many pods at once); one target prints its own output")]
    WithoutSelector { flag: &'static str },
    #[error(
        "-c {container} names a container of a pod, and the target is not a pod (container/ID is one container \
         already)"
    )]
    ContainerOfNoPod { container: String },
    #[error(
        "--tools agent and -U exclude each other: in the target's user namespace the tool could be traced by \
         the target's processes, which would reach the agent's filesystem (its ServiceAccount token) \
         through it."
    )]
    AgentToolsWithUser,
    #[error(
        "--tools agent and -m exclude each other: -m makes the tool the container image's own binary (run \
         as the container), --tools agent runs the agent image's as node root in the agent's mount \
         namespace."
    )]
    AgentToolsWithMount,
    #[error(
        "--privileged only changes -m (or -a without --tools agent): without the mount namespace the tool \
         is the node's or the agent's own binary and runs as node root already"
    )]
    PrivilegedWithoutMount,
    #[error(
        "--no-mount-proc only changes -p without -m (or -a): with -m the tool sees the container's own /proc, \
         without -p it keeps the node's anyway"
    )]
    NoMountProcUnused,
    #[error("-e {given}: expected KEY=VALUE")]
    NotKeyValue { given: String },
    #[error("-l runs in many pods at once, without a terminal or stdin: drop -t and --stdin")]
    ManyWithTerminal,
    /// `ls` with `--agent` and no target.
    #[error(
        "--agent reaches one node's agent: name container/ID, pid/PID or node (a pod or node/NODE needs a \
         kubeconfig)"
    )]
    ListWithoutTarget,
    /// `ls TARGET` with `-A` or `-l`.
    #[error("-A and -l list many pods: give them without a target, or name one target without them")]
    ListTargetAndMany,
    /// `audit` with `--agent` and no `--node`.
    #[error("--agent reaches one node's agent: give --node NODE, the node it runs on")]
    AuditWithoutNode,
    /// A pid/, container/ or node target without `--agent`.
    #[error(
        "{target}: pid/, container/ and node targets name things on one node; give --agent ADDR, \
         or name a pod (POD, NS/POD) or a node (node/NODE)"
    )]
    DirectWithoutAgent { target: String },
    /// `--namespace` with a target that is not a pod.
    #[error(
        "--namespace {namespace} names a pod's namespace, and {target} is not a pod: pid/, container/ and node \
         each name one thing on the agent's node, whichever namespace its pod is in."
    )]
    NamespaceOfNoPod { namespace: String, target: String },
    /// `--agent` for a command that works through the Kubernetes API only.
    #[error(
        "{command} works through the Kubernetes API, for the agents of every node, and --agent {addr} \
         (or KNS_AGENT) names one agent to talk to directly: drop it (for that agent alone, \
         `kubectl-ns status --agent {addr}` and `kubectl-ns version --agent {addr}` report on it)"
    )]
    AgentOfNoUse { command: &'static str, addr: String },
    /// `sessions kill` given something that is no session.
    #[error(
        "`{given}`: expected NODE/ID or ID, a session as `kubectl ns sessions` lists it (e.g. worker-3/42)"
    )]
    NotASession { given: String },
    /// `sessions kill` with the listing's scope.
    #[error(
        "kill names one session: -A and --namespace choose what the listing shows; give NODE/ID or ID alone"
    )]
    KillWithScope,
    /// `--namespace` for a command about the agents, which it would not
    /// change: the agents' own namespace is --agent-namespace.
    #[error(
        "{command} is about the kubectl-ns agents, and --namespace {namespace} names the namespace of pods \
         to enter: it changes nothing here"
    )]
    NamespaceForAgents {
        command: &'static str,
        namespace: String,
    },
    #[error("kill needs the session: NODE/ID, or ID alone, as `kubectl ns sessions` lists it")]
    KillWithoutSession,
    /// A session ID alone that more than one node has: `on` lists them as
    /// NODE/ID.
    #[error("session {id} runs on more than one node ({on}): name it as NODE/ID")]
    SessionOnManyNodes { id: u64, on: String },
    /// `replay` given something that is no NODE/RECORDING.
    #[error(
        "`{given}`: expected NODE/RECORDING: the node, a slash, then the recording's file name \
         (NODE_SESSION_UNIXTIME.cast, as the audit trail's `recording.name` gives it) or the session's id \
         (e.g. worker-3/7)"
    )]
    NotARecording { given: String },
}

impl UsageError {
    /// What to do instead, where the message alone does not say it.
    pub fn hints(&self) -> Vec<String> {
        let hint = match self {
            UsageError::IpcWithTty => {
                "-t already passes stdin; pick the namespaces you want, e.g. -n -t or -a -t; to enter only the \
                 IPC namespace with a terminal, write --ipc -t"
            }
            UsageError::AgentToolsWithUser => {
                "drop -U; the agent's tool runs as node root in the other namespaces you chose"
            }
            UsageError::AgentToolsWithMount => {
                "drop -m to run the agent's tool in the other namespaces you chose, or drop --tools agent to run \
                 the image's binary"
            }
            UsageError::NamespaceOfNoPod { .. } => "drop --namespace, or name the pod (NS/POD)",
            UsageError::NamespaceForAgents { .. } => {
                "if the agents run in that namespace, say --agent-namespace (KNS_AGENT_NAMESPACE) instead"
            }
            _ => return Vec::new(),
        };
        vec![hint.to_owned()]
    }
}
