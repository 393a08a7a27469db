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

#[derive(Debug, Args)]
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
    /// namespace).
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
