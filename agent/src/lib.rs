//! The kubectl-ns node agent: resolves a container to its host process
//! through the CRI, joins exactly the namespaces asked for, runs a tool
//! there (the node's, the toolbox image's, or the agent's own), and streams
//! its I/O over gRPC.
//!
//! The folders follow one request from the socket to the kernel:
//! [`listen`] accepts the connection, [`rpc`] checks and answers it,
//! [`access`] says who is calling and what they may do, [`target`] finds the
//! process, [`enter`] plans the namespaces and starts the tool, [`session`]
//! moves its I/O, [`kernel`] names namespaces and reads /proc, and [`sys`]
//! holds the only `unsafe` code. [`status`] is where every failure on the
//! way becomes the answer the client gets, and [`metrics`] counts what
//! happens along the way, for Prometheus.
#![deny(unsafe_code)]

pub mod access;
pub mod enter;
pub mod kernel;
pub mod listen;
pub mod metrics;
pub mod record;
pub mod rpc;
pub mod session;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
pub mod target;
