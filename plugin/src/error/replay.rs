//! The failures of `kubectl ns replay` on this side (`commands::replay`):
//! what the agent sent is no recording to play. Here, beside the other
//! failures, so that `error` imports nothing from the layers that return
//! them.

/// Why a recording the agent streamed cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `line` (from 1; 0: the file is empty) is not what asciicast v2 has
    /// there.
    #[error("{name} is not an asciicast v2 recording: line {line}: {why}")]
    NotACast { name: String, line: usize, why: String },
    /// `--agent` reached an agent whose recordings are another node's:
    /// with `--agent` the node of NODE/RECORDING picks no agent.
    #[error(
        "the agent at --agent is not node {asked}'s: it answered with {name}, a recording of node {node}"
    )]
    OtherNode {
        asked: String,
        node: String,
        name: String,
    },
}

impl ReplayError {
    /// What to do instead.
    pub fn hints(&self) -> Vec<String> {
        match self {
            ReplayError::NotACast { .. } => {
                vec!["`-o cast` writes the file as the agent keeps it, to look at it as it is".to_owned()]
            }
            ReplayError::OtherNode { node, .. } => vec![format!(
                "ask for {node}/… to replay that agent's recordings, or drop --agent to reach the named node's \
                 agent through the API server"
            )],
        }
    }
}
