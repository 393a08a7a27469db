//! The failures of `kubectl ns sessions` (`commands::sessions`): who is
//! inside cannot be told, or the session to end is not there. Here, beside
//! the other failures, so that `error` imports nothing from the layers that
//! return them.

/// Why the live sessions could not be listed or one ended.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no node has a kubectl-ns agent pod to ask")]
    NoAgents,
    /// Every agent asked was silent: an empty list would claim nobody is
    /// inside.
    #[error("no agent answered (the {asked} above): who is inside is unknown")]
    NoneAnswered { asked: String },
    #[error("no session {id} on the {asked} asked")]
    NoSuchSession { id: u64, asked: String },
    /// The caller may see only their own sessions on `restricted`.
    #[error(
        "no session {id} among those you may see on the {asked} asked: only your own are listed on {restricted}"
    )]
    NotAmongYours {
        id: u64,
        asked: String,
        restricted: String,
    },
    /// The node's agent could not be reached (`why`, worded as one node's
    /// entry of a report).
    #[error("cannot reach the agent on {node}: {why}")]
    Unreachable { node: String, why: String },
}

impl LiveError {
    /// What to do next, where the message alone does not say it.
    pub fn hints(&self) -> Vec<String> {
        let hint = match self {
            LiveError::NoAgents => {
                "`kubectl ns status` shows where the agents run (--agent-namespace if they are not in \
                 kubectl-ns-system)"
            }
            LiveError::NoSuchSession { .. } => "`kubectl ns sessions -A` lists them",
            LiveError::NotAmongYours { .. } => {
                "name another user's session as NODE/ID; ending it needs delete on nodes/sessions (API group \
                 kubectl-ns.io), as the ClusterRole kubectl-ns-session-admin grants"
            }
            _ => return Vec::new(),
        };
        vec![hint.to_owned()]
    }
}
