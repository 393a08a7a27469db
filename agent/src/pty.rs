//! Pseudo-terminals for `-t` sessions.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, FsType, TMPFS_MAGIC, fstatfs};

use crate::sys;

/// A fresh pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Filesystems a root directory may be on for the agent to look up `dev`
/// in it: the kernel's own, which answer a lookup without a process that
/// the target could make hang (FUSE) or a network (NFS).
const LOCAL_ROOTS: [i64; 6] = [
    0x794c_7630, // overlayfs: a container's root
    0x0102_1994, // tmpfs
    0xef53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683e, // btrfs
    0x7371_7368, // squashfs
];

/// Opens a pseudo-terminal in the devpts of the mount namespace whose root
/// directory is `root`, the one the tool runs in, so that its /dev/pts/N
/// is there: `tty`, tmux and screen look their terminal up by that name.
/// Each step is checked to be on a local kernel filesystem before anything
/// is looked up in it, and no symbolic link is followed: the target owns
/// that filesystem.
pub fn open_in(root: &OwnedFd, window: Option<(u16, u16)>) -> io::Result<Pty> {
    let no_links = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_BENEATH;
    let dir = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let fs_of = |fd: &OwnedFd| {
        fstatfs(fd.as_fd())
            .map(|s| s.filesystem_type())
            .map_err(io::Error::from)
    };
    let root_fs = fs_of(root)?;
    if !LOCAL_ROOTS.iter().any(|&m| root_fs == FsType(m as _)) {
        return Err(io::Error::other(format!(
            "its root is on filesystem {:#x}",
            root_fs.0
        )));
    }
    let dev = sys::openat2(root.as_fd(), c"dev", dir, no_links)?;
    if fs_of(&dev)? != TMPFS_MAGIC {
        return Err(io::Error::other("its /dev is not a tmpfs"));
    }
    let pts = sys::openat2(dev.as_fd(), c"pts", dir, no_links)?;
    if fs_of(&pts)? != DEVPTS_SUPER_MAGIC {
        return Err(io::Error::other("it has no devpts at /dev/pts"));
    }
    let master = sys::openat2(
        pts.as_fd(),
        c"ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        no_links,
    )?;
    let st = fstat(master.as_fd())?;
    let is_ptmx = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && libc::major(st.st_rdev) == 5
        && libc::minor(st.st_rdev) == 2;
    if !is_ptmx {
        return Err(io::Error::other("its /dev/pts/ptmx is not the multiplexer"));
    }
    let slave = sys::pty_peer(&master)?;
    sized(Pty { master, slave }, window)
}

/// Opens a pseudo-terminal in the agent's own devpts, both ends
/// close-on-exec so no other session's child inherits them.
pub fn open(window: Option<(u16, u16)>) -> io::Result<Pty> {
    let p = nix::pty::openpty(None, None)?;
    for fd in [&p.master, &p.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    sized(
        Pty {
            master: p.master,
            slave: p.slave,
        },
        window,
    )
}

fn sized(p: Pty, window: Option<(u16, u16)>) -> io::Result<Pty> {
    if let Some((rows, cols)) = window {
        resize(&p.master, rows, cols)?;
    }
    Ok(p)
}

/// Sets the terminal's size; the kernel sends SIGWINCH to its foreground
/// process group.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    sys::set_winsize(master, rows, cols)
}
