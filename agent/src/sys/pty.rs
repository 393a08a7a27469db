//! Pseudo-terminals for `-t` sessions.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use crate::sys;

/// A fresh pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal with the given (rows, cols), both ends
/// close-on-exec so no other session's child inherits them.
pub fn open(window: Option<(u16, u16)>) -> io::Result<Pty> {
    let p = nix::pty::openpty(None, None)?;
    for fd in [&p.master, &p.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    if let Some((rows, cols)) = window {
        resize(&p.master, rows, cols)?;
    }
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

/// Sets the terminal's size; the kernel sends SIGWINCH to its foreground
/// process group.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    sys::set_winsize(master, rows, cols)
}
