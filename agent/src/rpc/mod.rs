//! The gRPC service: [`service`] (its state and the small RPCs),
//! `validate` (a start message into a typed
//! request), `admit` (the checks every request
//! passes, in order), `exec` (the Exec RPC as steps),
//! [`inventory`] (List), and [`error`], the one place a request's errors
//! become `tonic::Status`. A running session's ends (shutdown, age limit,
//! lost tool) are statuses worded in [`crate::session`], which sends them
//! itself.

mod admit;
pub mod error;
mod exec;
pub mod inventory;
pub mod service;
mod validate;
