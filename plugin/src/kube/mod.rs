//! The Kubernetes side: pods and their containers resolved to a node and
//! its agent, where the agent's DaemonSet can run, and the manifests
//! `install` applies.

pub mod agents;
pub mod manifests;
pub mod placement;
pub mod resolve;
pub mod resolver;
