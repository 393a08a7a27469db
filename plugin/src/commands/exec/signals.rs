//! The signals `exec` handles itself: before the session is open one ends
//! kubectl-ns at once; after, they are passed on to the command.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{self, Failure, LocalError};

/// A second SIGINT/SIGTERM this soon after one the agent has not answered
/// ends kubectl-ns locally.
pub(super) const SECOND_SIGNAL: Duration = Duration::from_secs(1);

pub(super) fn sig(kind: SignalKind) -> Result<Signal, Failure> {
    Ok(signal(kind).map_err(LocalError::Signals)?)
}

/// The signals kubectl-ns handles itself from the start of `exec` and
/// passes on to the command.
pub(super) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    pub(super) fn install() -> Result<Signals, Failure> {
        Ok(Signals {
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
            quit: sig(SignalKind::quit())?,
        })
    }

    /// The next signal.
    pub(super) async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
        }
    }
}

/// The exit code for ending on signal `n` without the remote status.
pub(super) fn local_signal_exit(n: i32) -> u8 {
    error::from_remote(None, Some(n))
}
