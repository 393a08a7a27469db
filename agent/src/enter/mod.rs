//! Starting the tool inside the target: the namespace plan, the tool's
//! identity, its seccomp filter and its session cgroup.

pub mod cgroup;
pub mod nsenter;
pub mod seccomp;
