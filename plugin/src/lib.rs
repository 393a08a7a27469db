//! `kubectl-ns`: a kubectl plugin that runs the node's tools inside exactly
//! the namespaces of a pod's container, through the kubectl-ns agent.
//!
//! The plugin never enters namespaces itself; it parses and validates what
//! the user asked for, reaches an agent, and drives it over gRPC.
#![forbid(unsafe_code)]

pub mod cache;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod complete;
pub mod exit;
pub mod manifests;
pub mod placement;
pub mod resolve;
pub mod target;
pub mod terminal;
pub mod timings;
pub mod transport;

/// Labels from pairs, for building test objects.
#[cfg(test)]
pub(crate) fn label_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
