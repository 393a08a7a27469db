//! Starting the tool inside the target: the namespace plan, the tool's
//! identity, its seccomp filter and its session cgroup.

pub mod cgroup;
pub mod error;
pub mod identity;
pub mod nsenter;
pub mod plan;
pub mod request;
pub mod seccomp;
pub mod stdio;
