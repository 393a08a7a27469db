//! The gRPC service: each RPC's checks in order, and the mapping of the
//! agent's errors to `tonic::Status`.

mod admit;
pub mod error;
mod exec;
pub mod inventory;
pub mod service;
mod validate;
