//! The failures of an `exec` session on kubectl-ns's side (`commands::exec`)
//! and of its own local means (stdout/stderr, threads, signals, the
//! encoding of a report, also `ls`'s). Here, beside the other failures, so
//! that `error` imports nothing from the layers that return them.

/// What broke in a session with the agent, one variant each.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("internal error: no target")]
    NoTarget,
    #[error("internal error: request stream closed")]
    RequestsClosed,
    #[error("internal error: the output ended before the session")]
    OutputEndedFirst,
    #[error("the agent ended the session without an exit status")]
    NoExitStatus,
    /// The agent ran the node's tool for `--tools agent`: it predates it.
    #[error(
        "the agent on this node is older than --tools agent and ran nothing from its image (the session \
         was ended)"
    )]
    AgentTools,
}

impl SessionError {
    /// What to do next, where the message alone does not say it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            SessionError::AgentTools => {
                vec![
                    "upgrade the agents: kubectl ns install --image … with this kubectl-ns's version"
                        .to_owned(),
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// What failed on this machine, around the session or a report.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot use stdout/stderr: {0}")]
    Stdio(#[source] std::io::Error),
    #[error("cannot start the output thread: {0}")]
    OutputThread(#[source] std::io::Error),
    #[error("cannot write the command's output: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Yaml(#[from] yaml_serde::Error),
}
