//! Starting the tool inside the target: [`nsenter::spawn`] is the
//! sequence, from a [`request::Request`] through the namespace [`plan`],
//! the tool's [`identity`], its [`stdio`], [`seccomp`] filter and session
//! [`cgroup`], to the fork in [`crate::sys`]; [`error`] words what went
//! wrong for the user.

pub mod cgroup;
pub mod error;
pub mod identity;
pub mod nsenter;
pub mod plan;
pub mod request;
pub mod seccomp;
pub mod stdio;
