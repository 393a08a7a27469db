//! Generated gRPC types: the kubectl-ns agent API (`kns.agent.v1`) and the
//! subset of the CRI `runtime.v1` RuntimeService that kubectl-ns uses.
#![forbid(unsafe_code)]

/// The agent's API, spoken between `kubectl-ns` and `kubectl-ns-agent`.
pub mod agent {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("kns.agent.v1");
}

/// The CRI `runtime.v1` subset (see `cri/runtime/v1/api.proto` for the
/// upstream version it follows).
pub mod cri {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("runtime.v1");
}
