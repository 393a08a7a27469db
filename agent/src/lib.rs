//! The kubectl-ns node agent: resolves a container to its host process
//! through the CRI, joins exactly the namespaces asked for, runs a tool from
//! the node there, and streams its I/O over gRPC.
#![deny(unsafe_code)]

pub mod audit;
pub mod authn;
pub mod authz;
pub mod cgroup;
pub mod clientcert;
pub mod cri;
pub mod inventory;
pub mod kubeclient;
pub mod ns;
pub mod nsenter;
pub mod policy;
pub mod procfs;
pub mod pty;
pub mod resolve;
pub mod seccomp;
pub mod server;
pub mod service;
pub mod session;
pub mod spawner;
pub mod sys;
