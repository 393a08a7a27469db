//! The gRPC service: each RPC's checks in order, and the mapping of the
//! agent's errors to `tonic::Status`.

pub mod error;
pub mod inventory;
pub mod service;
