//! Why what the user named cannot be entered: the failures of `kube`'s
//! resolution (`kube::resolve`, `kube::resolver`) and of reading the
//! kubeconfig (`agent::route::resolver`). Here, beside the other failures,
//! so that `error` imports nothing from the layers that return them.

/// A target that does not resolve to a running container (or a node) with
/// an agent, one variant per reason, with what the user named.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The kubeconfig (or the in-cluster configuration) cannot be used;
    /// `direct`: `--agent` was given, which does not spare the lookup.
    #[error("{what}: {reason}")]
    Config {
        what: String,
        reason: String,
        direct: bool,
    },
    #[error("pod {pod} not found in namespace {namespace}.")]
    PodNotFound { pod: String, namespace: String },
    #[error("node {node} not found.")]
    NodeNotFound { node: String },
    #[error("no pods match -l {selector} in {scope}")]
    NoPodMatches { selector: String, scope: String },
    #[error(
        "pod {pod} runs under runtime class `{class}`: its containers run inside a VM or a \
         user-space kernel, not as processes on the node, so kubectl-ns cannot enter them."
    )]
    Sandboxed { pod: String, class: String },
    #[error("pod {pod} is not scheduled to a node yet (phase {phase}); nothing runs to enter.")]
    Unscheduled { pod: String, phase: String },
    #[error("pod {pod} has no containers")]
    NoContainers { pod: String },
    #[error("container {container} of pod {pod} has not started yet (no status reported)")]
    NotStarted { container: String, pod: String },
    /// `known`: the pod's containers, to pick from.
    #[error("pod {pod} has no container {container}; its containers: {}", .known.join(", "))]
    NoSuchContainer {
        pod: String,
        container: String,
        known: Vec<String>,
    },
    /// `kind`: container, init container or ephemeral container; `others`:
    /// the pod's running containers, to pick from. The state is boxed:
    /// every `Failure` would be as large as this variant.
    #[error("{kind} {container} of pod {pod} is {state}{}", pick_another(.others))]
    NotRunning {
        kind: &'static str,
        container: String,
        pod: String,
        state: Box<Stopped>,
        others: Vec<String>,
    },
    #[error("pod {pod} has no running container")]
    NoRunningContainer { pod: String },
    /// `label`: the label that marks agent pods.
    #[error("node {node} has no kubectl-ns agent (no pod labelled {label} in namespace {namespace}).")]
    NoAgent {
        node: String,
        label: &'static str,
        namespace: String,
    },
    /// `pods`: the node's agent pods, none of them ready.
    #[error("the kubectl-ns agent on node {node} ({}) is not ready.", .pods.join(", "))]
    AgentNotReady {
        node: String,
        pods: Vec<String>,
        namespace: String,
    },
}

/// Why a container does not run, from its status.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// `last`: the exit code and reason of its last run, if it ended.
    #[error("waiting ({reason}{})", last_exit(.last))]
    Waiting {
        reason: String,
        last: Option<(i32, Option<String>)>,
    },
    #[error("terminated (exit code {code}{})", .reason.as_ref().map(|r| format!(", {r}")).unwrap_or_default())]
    Terminated { code: i32, reason: Option<String> },
    #[error("not running")]
    NotRunning,
}

fn last_exit(last: &Option<(i32, Option<String>)>) -> String {
    last.as_ref()
        .map(|(code, why)| {
            let why = why.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
            format!("; last exit code {code}{why}")
        })
        .unwrap_or_default()
}

fn pick_another(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!("; pick another with -c: {}", others.join(", "))
    }
}

impl ResolveError {
    /// Where to look next, where the message alone does not say it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            ResolveError::Config { direct, .. } => {
                let mut hints = vec![
                    "kubectl-ns reads the same kubeconfig as kubectl (--kubeconfig, $KUBECONFIG, ~/.kube/config) \
                     or runs in-cluster"
                        .to_owned(),
                ];
                if *direct {
                    hints.push(
                        "with --agent, a pod or node/NODE target is still looked up through the Kubernetes API; \
                         on a node without a kubeconfig, name the container/ID (crictl ps), pid/PID or node instead"
                            .to_owned(),
                    );
                }
                hints
            }
            ResolveError::PodNotFound { pod, .. } => vec![format!(
                "is it in another namespace? Use --namespace NS or NS/{pod}; `kubectl get pods -A | grep {pod}` \
                 finds it"
            )],
            ResolveError::NodeNotFound { .. } => vec!["`kubectl get nodes` lists them".to_owned()],
            ResolveError::Sandboxed { .. } => {
                vec!["use `kubectl exec` or `kubectl debug` for sandboxed pods".to_owned()]
            }
            ResolveError::Unscheduled { pod, .. } => {
                vec![format!("`kubectl describe pod {pod}` shows why it is pending")]
            }
            ResolveError::NoAgent { .. } => vec![
                "install it with `kubectl ns install`; `kubectl ns status` lists the nodes that lack one"
                    .to_owned(),
            ],
            ResolveError::AgentNotReady { pods, namespace, .. } => vec![format!(
                "`kubectl -n {namespace} describe pod {}` shows why",
                pods.first().map(String::as_str).unwrap_or_default()
            )],
            _ => Vec::new(),
        }
    }
}
