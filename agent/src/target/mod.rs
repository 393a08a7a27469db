//! Finding the process to enter: a container, a PID or the node, resolved
//! through the container runtime (CRI) or /proc and pinned with a pidfd.

pub mod cri;
pub mod resolve;
