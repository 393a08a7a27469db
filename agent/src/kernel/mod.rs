//! What the kernel calls things: namespace kinds and identities, and the
//! parts of /proc the agent reads.

pub mod ns;
pub mod procfs;
