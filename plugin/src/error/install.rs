//! The failures of `install` and `uninstall` (`commands::install`,
//! `kube::manifests`). Here, beside the other failures, so that `error`
//! imports nothing from the layers that return them.

/// Why the agents could not be installed or removed, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The API server refused `what` (403): the user lacks the rights to
    /// install, which are not the ones `kubectl ns` users need.
    #[error("{what}: forbidden: {message}")]
    Forbidden { what: String, message: String },
    /// The agent namespace exists and is not kubectl-ns's: labelling it
    /// `label` would let its pods run privileged (a usage error: the
    /// arguments choose the namespace); `default`: the agent namespace
    /// unless told otherwise.
    #[error(
        "namespace {namespace} exists and was not created by kubectl-ns: installing labels it \
         {label} (the agent needs hostPID and node capabilities), which lets every pod in it \
         run privileged"
    )]
    NamespaceTaken {
        namespace: String,
        label: String,
        default: &'static str,
    },
    #[error("internal error in the embedded manifests: {0}")]
    Manifests(String),
    #[error("the agent DaemonSet {name} was deleted while waiting for its rollout")]
    DaemonSetDeleted { name: String },
    #[error("watching the agent DaemonSet failed: {message}")]
    Watch { message: String },
    /// The rollout did not finish within `secs`: `last`, its last progress;
    /// `agents`, why each agent pod that is not ready is not.
    #[error(
        "the agents did not become ready within {secs}s ({last}).{}",
        .agents.iter().map(|a| format!("\n  {a}")).collect::<String>()
    )]
    NotReady {
        secs: u64,
        last: String,
        agents: Vec<String>,
        namespace: String,
        daemonset: String,
    },
}

impl InstallError {
    /// What to do next, where the message alone does not say it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            InstallError::Forbidden { .. } => vec![
                "installing and uninstalling kubectl-ns need the rights to create and delete a namespace, \
                 ClusterRoles and ClusterRoleBindings, and a DaemonSet with hostPID (in practice cluster-admin); \
                 ask a cluster administrator to run `kubectl ns install` or `kubectl apply -k manifests/`"
                    .to_owned(),
            ],
            InstallError::NamespaceTaken {
                namespace, default, ..
            } => vec![format!(
                "install into a namespace of its own (the default, {default}, or --agent-namespace NEW), or pass \
                 --adopt-namespace to label {namespace} anyway"
            )],
            InstallError::NotReady {
                namespace, daemonset, ..
            } => vec![format!(
                "`kubectl ns status` shows which nodes lack a ready agent and why; `kubectl -n {namespace} \
                 describe daemonset {daemonset}` shows the DaemonSet's events"
            )],
            _ => Vec::new(),
        }
    }
}
