//! Finding the process to enter: a container, a PID or the node, resolved
//! and pinned with a pidfd ([`resolve`]). A container is asked of the
//! runtime over the CRI ([`cri`]), whose answers carry OCI runtime
//! information ([`oci`], with capability names in [`caps`]); without a
//! runtime, /proc's cgroup paths name it ([`cgroup_scan`]).

pub mod caps;
pub mod cgroup_scan;
pub mod cri;
pub mod oci;
pub mod resolve;
