//! Exit codes of `kubectl-ns`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0–125 | the remote command's own exit code (`exec`) |
//! | 126 | the tool exists but cannot be executed |
//! | 127 | the tool was not found (with `-m`: not in the container image) |
//! | 128+N | the remote command died of signal N (130 for SIGINT); or kubectl-ns got signal N before the session was open, or twice within a second while the agent did not answer |
//! | 2 | usage error: bad flags or arguments |
//! | 255 | kubectl-ns itself failed: agent unreachable, target not found, … |

/// Usage errors.
pub const USAGE: u8 = 2;
/// kubectl-ns's own failures.
pub const FAILURE: u8 = 255;

/// An error that ends the command with a given exit code, already worded
/// for the user (with a hint line where one helps).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure of kubectl-ns itself (exit 255).
    pub fn own(message: impl Into<String>) -> Failure {
        Failure::new(FAILURE, message)
    }
}

/// The exit code for a remote status: the code itself, or 128+N for a
/// signal, as shells report it.
pub fn from_remote(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(FAILURE),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(FAILURE),
        (None, None) => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_status_maps_like_a_shell() {
        assert_eq!(from_remote(Some(0), None), 0);
        assert_eq!(from_remote(Some(3), None), 3);
        assert_eq!(from_remote(None, Some(2)), 130);
        assert_eq!(from_remote(None, Some(9)), 137);
        assert_eq!(from_remote(None, None), FAILURE);
    }
}
