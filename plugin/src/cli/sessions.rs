//! `sessions`' arguments: which agents to ask and how, and `kill ID`.

use clap::{Args, ValueEnum};

use crate::cli::{KubeArgs, NodeBounds, Output};

/// What `sessions` does besides listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionsAction {
    /// End the session NODE/ID names (or ID alone, when one session of
    /// the agents asked has it).
    Kill,
}

/// Who is inside right now: list the live sessions, or end one.
///
/// Every node's agent is asked at once (bounded, with a deadline per
/// node); nodes whose agent did not answer are named on stderr.
///
/// Each agent decides what you see: your own sessions always; everyone's
/// with `list` on nodes/sessions (API group kubectl-ns.io), which the
/// ClusterRole kubectl-ns-session-admin grants, as it grants `delete`
/// for ending another user's session. The killed session's client is
/// told who ended it and exits 255.
///
/// Examples:
///   kubectl ns sessions -A
///   kubectl ns sessions --node worker-3 -o wide
///   kubectl ns sessions kill worker-3/42
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// `kill NODE/ID` ends that session; without it, the sessions are listed.
    #[arg(value_enum, value_name = "ACTION")]
    pub action: Option<SessionsAction>,
    /// With kill: the session, NODE/ID or the ID alone, as the listing
    /// shows it.
    #[arg(value_name = "NODE/ID", requires = "action")]
    pub id: Option<String>,
    /// Sessions in every namespace's pods, and on nodes and host PIDs
    /// (default: those in pods of --namespace, else of the context's
    /// namespace; with --agent, all of that agent's).
    #[arg(short = 'A', long = "all-namespaces", conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only this node's agent (with --agent: the node that agent runs on).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Output format (wide adds the namespaces entered, the tool source,
    /// the start time and the container ID).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub bounds: NodeBounds,
}
