//! How long an agent may take to answer: an agent that accepted the
//! connection and then stopped (a stopped process, a wedged node) must not
//! hang kubectl-ns.

use crate::error::Failure;

/// How long an agent may take to answer a request, or to open a session
/// (which includes finding the target and starting the tool).
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `call`, or a failure saying the agent took too long: an agent that
/// accepted the connection and then stopped (a stopped process, a wedged
/// node) must not hang kubectl-ns.
pub async fn answered<T>(call: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(crate::error::silent(false, ANSWER_TIMEOUT)))
}
