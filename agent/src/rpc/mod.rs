//! The gRPC service: [`service`] (its state and the small RPCs),
//! `validate` (a start message into a typed request), `admit` (the checks
//! every request passes, in order), `exec` (the Exec RPC as steps),
//! [`inventory`] (List), `sessions` (the Sessions service: ListSessions,
//! KillSession), `replay` (a recording read back). Every error a request or
//! a session meets becomes a `tonic::Status` in one place,
//! [`crate::status`].

mod admit;
mod exec;
pub mod inventory;
mod replay;
pub mod service;
mod sessions;
mod validate;
