//! The tool's stdio: a terminal pair, or pipes (grown for bulk output),
//! with the agent's ends non-blocking.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::enter::error::NsenterError;
use crate::enter::request::Request;
use crate::sys::pty;

/// Pipes are grown to this size so large outputs move in big chunks.
const PIPE_SIZE: i32 = 1 << 20;

/// The tool's stdio: the child's three fds, and the agent's ends.
pub(super) struct Stdio {
    pub(super) child: [OwnedFd; 3],
    pub(super) stdin: Option<OwnedFd>,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: Option<OwnedFd>,
    pub(super) pty: Option<OwnedFd>,
}

impl Stdio {
    pub(super) fn open(req: &Request) -> Result<Stdio, NsenterError> {
        if req.tty {
            Stdio::terminal(req.window)
        } else {
            Stdio::pipes(req.stdin)
        }
    }

    /// A terminal (-t): the slave is all three of the child's fds.
    fn terminal(window: Option<(u16, u16)>) -> Result<Stdio, NsenterError> {
        let p = pty::open(window).map_err(|source| NsenterError::Setup {
            what: "terminal",
            source,
        })?;
        let slave = |fd: &OwnedFd| {
            fd.try_clone().map_err(|source| NsenterError::Setup {
                what: "terminal",
                source,
            })
        };
        let child = [slave(&p.slave)?, slave(&p.slave)?, p.slave];
        let reader = slave(&p.master)?;
        let writer = slave(&p.master)?;
        nonblocking(&p.master)?;
        Ok(Stdio {
            child,
            stdin: Some(writer),
            stdout: reader,
            stderr: None,
            pty: Some(p.master),
        })
    }

    /// Pipes, with stdin from /dev/null unless it is forwarded.
    fn pipes(stdin_on: bool) -> Result<Stdio, NsenterError> {
        let (in_r, in_w) = if stdin_on {
            let (r, w) = pipe()?;
            nonblocking(&w)?;
            (r, Some(w))
        } else {
            let null = File::open("/dev/null").map_err(|source| NsenterError::Setup {
                what: "stdin",
                source,
            })?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = output_pipe()?;
        let (err_r, err_w) = output_pipe()?;
        Ok(Stdio {
            child: [in_r, out_w, err_w],
            stdin: in_w,
            stdout: out_r,
            stderr: Some(err_r),
            pty: None,
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NsenterError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NsenterError::Setup {
        what: "pipes",
        source: e.into(),
    })
}

fn nonblocking(fd: &impl AsFd) -> Result<(), NsenterError> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| NsenterError::Setup {
        what: "non-blocking I/O",
        source: e.into(),
    })?;
    Ok(())
}

fn output_pipe() -> Result<(OwnedFd, OwnedFd), NsenterError> {
    let (r, w) = pipe()?;
    // Best effort: a smaller pipe still works, only slower.
    let _ = fcntl(&r, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    nonblocking(&r)?;
    Ok((r, w))
}
