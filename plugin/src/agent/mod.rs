//! Reaching agents: the route to one (`--agent` directly, or a port-forward
//! to its pod with the kubeconfig's credentials and the agent cache), the
//! transport under it, and fan-out to many nodes' agents at once.

pub mod cache;
pub mod deadline;
pub mod fanout;
pub mod route;
pub mod transport;
