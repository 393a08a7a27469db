//! Who is calling and what they may do: authentication (tokens, client
//! certificates, unix peers), authorization against the API server, the
//! node operator's policy (and which sessions it records), the audit trail,
//! and the agent's own API client.

pub mod audit;
pub mod authn;
pub mod authz;
pub mod clientcert;
pub mod identity;
pub mod kubeclient;
pub mod policy;
pub mod recording;
