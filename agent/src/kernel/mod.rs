//! What the kernel calls things: namespace kinds and identities, the
//! parts of /proc the agent reads, and the node's cgroup layout.

pub mod cgroupfs;
pub mod ns;
pub mod procfs;
