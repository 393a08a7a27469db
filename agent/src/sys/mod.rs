//! The agent's only `unsafe` code: the syscalls nix does not wrap
//! (`pidfd_open`, `clone(CLONE_PARENT)`, `waitid(P_PIDFD)`, terminal ioctls,
//! the new mount API)
//! and the code that runs between `fork` and `execve`.
//!
//! Everything the child needs is prepared by [`plan::ChildPlan`] before the fork;
//! the child itself only makes raw system calls, which are async-signal-safe
//! (signal-safety(7)), because the agent is multi-threaded and a forked
//! child of a multi-threaded process may not allocate or take locks.
//!
//! The crate denies `unsafe_code`; this module alone allows it (its
//! `#[allow]` is on `mod sys` in lib.rs). Starting a tool is [`plan`] (what
//! the child gets, what it reports), [`fork`] (the parent's side), `child`
//! (the steps between fork and exec), [`spawner`] (the one thread that
//! forks) and [`pty`] (the terminal pair); this file holds the small
//! wrappers: pidfds, waitid, capabilities, terminal size, the cgroup2
//! mount.

mod child;
pub mod fork;
pub mod plan;
pub mod pty;
pub mod spawner;
mod tool;

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Opens a pidfd for `pid` (Linux ≥ 5.3): a handle that keeps naming the same
/// process even if the PID is reused after it exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no pointers are passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has exited: its pidfd polls
/// readable then (it need not be our child).
pub fn pidfd_exited(pidfd: &OwnedFd) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
            Ok(n) => return Ok(n > 0),
        }
    }
}

/// A new mount of the cgroup v2 (unified) hierarchy that is attached
/// nowhere (fsopen(2), fsconfig(2), fsmount(2); Linux ≥ 5.2): only the
/// returned fd reaches it, so neither the node's mount table nor the
/// agent's own changes, and no mount point is needed on a read-only root.
/// Its root is the root of the caller's cgroup namespace.
pub fn mount_cgroup2() -> io::Result<OwnedFd> {
    // Values from <linux/mount.h>; libc has the syscall numbers only.
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID_NODEV_NOEXEC: libc::c_uint = 0x2 | 0x4 | 0x8;
    let fs = c"cgroup2";
    // SAFETY: `fs` is a valid NUL-terminated string that outlives the call.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as RawFd) };
    // SAFETY: CMD_CREATE takes no key, value or aux (NULL, NULL, 0); the fd
    // is owned and open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments; the context fd is owned and open.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID_NODEV_NOEXEC,
        )
    };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) })
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// Reaps the child behind `pidfd` without blocking; `None` while it runs.
pub fn try_reap_pidfd(pidfd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    waitid_pidfd(pidfd, libc::WEXITED | libc::WNOHANG)
}

/// Waits for the child behind `pidfd` to exit and reaps it.
pub fn reap_pidfd(pidfd: &OwnedFd) -> io::Result<()> {
    loop {
        match waitid_pidfd(pidfd, libc::WEXITED) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r.map(drop),
        }
    }
}

/// Whether the child behind `pidfd` has exited, leaving it unreaped (so its
/// PID, and the process group named after it, stay reserved).
pub fn try_reap_pidfd_peek(pidfd: &OwnedFd) -> io::Result<bool> {
    Ok(waitid_pidfd(pidfd, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)?.is_some())
}

/// waitid(2) on a pidfd with `flags`; `None` when WNOHANG found the child
/// still running.
fn waitid_pidfd(pidfd: &OwnedFd, flags: c_int) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t; the fd is owned and
    // open for the duration of the call.
    let rc = unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` for a child; with WNOHANG and no child
    // ready, si_pid stays 0 (wait(2)).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match code {
        libc::CLD_EXITED => ExitStatus::Code(status),
        _ => ExitStatus::Signal(status),
    }))
}

/// Sends `sig` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: no siginfo is passed (NULL is allowed); the fd is owned.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is valid for
    // the call; the fd is owned.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A step of the child's setup, reported to the parent when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    NodeJoin = 1,
    Setns = 2,
    SetnsUser = 3,
    Root = 4,
    Cwd = 5,
    Fork = 6,
    MountProc = 7,
    Workdir = 8,
    Session = 9,
    Stdio = 10,
    Exec = 11,
    Ids = 12,
    Creds = 13,
    Seccomp = 14,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            NodeJoin, Setns, SetnsUser, Root, Cwd, Fork, MountProc, Workdir, Session, Stdio, Exec, Ids,
            Creds, Seccomp,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// Joining namespaces through per-namespace files, for kernels older than
/// 5.8 where `setns` does not accept a pidfd.
#[derive(Debug)]
pub struct NsFile {
    pub fd: OwnedFd,
    pub nstype: c_int,
}

/// How the child joins the target's namespaces.
#[derive(Debug)]
pub enum Join {
    /// `setns(pidfd, mask)`: all namespaces in one atomic call (Linux ≥ 5.8).
    Pidfd { pidfd: OwnedFd, mask: c_int },
    /// One `setns` per namespace file, user namespace handled as nsenter(1)
    /// does: tried last first, then first if that failed.
    Files(Vec<NsFile>),
}

/// Capability sets as bit masks (bit N is capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Caps {
    /// The sets as far as a process holding `own` can grant them: a
    /// process can only keep or drop its capabilities, never add any
    /// (capset(2), PR_CAPBSET_DROP).
    pub fn within(self, own: Caps) -> Caps {
        let permitted = self.permitted & own.permitted;
        let inheritable = self.inheritable & (own.inheritable | own.permitted) & own.bounding;
        Caps {
            bounding: self.bounding & own.bounding,
            effective: self.effective & permitted,
            permitted,
            inheritable,
            ambient: self.ambient & permitted & inheritable,
        }
    }
}

/// The calling thread's capability sets (ambient left empty: a process
/// cannot give what it holds only as ambient).
pub fn own_caps() -> io::Result<Caps> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget writes two CapData (version 3) into `data`, valid and
    // writable for the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mask = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    // SAFETY: PR_CAPBSET_READ takes a capability number and returns 0 or 1
    // (or -1 beyond the last one); no pointers.
    let bounding = (0..64)
        .filter(|b| unsafe { libc::prctl(libc::PR_CAPBSET_READ, *b as libc::c_ulong, 0, 0, 0) } == 1)
        .fold(0u64, |m, b| m | 1 << b);
    Ok(Caps {
        bounding,
        effective: mask(|d| d.effective),
        permitted: mask(|d| d.permitted),
        inheritable: mask(|d| d.inheritable),
        ambient: 0,
    })
}

/// A process identity for the tool to take: a container's, as its OCI spec
/// gives it. Ids are those of the user namespace the tool is in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub caps: Caps,
    pub no_new_privs: bool,
}

/// linux/capability.h: the capget(2)/capset(2) header and one of its two
/// data words.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Registers an owned fd with tokio's reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd owns an open fd and returns that same fd from
    // as_raw_fd for its whole life, which is what registration requires.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container's default set asked of an agent that lacks some of it:
    /// the tool gets the overlap, never a capability the agent lacks, and
    /// ambient only where permitted and inheritable allow it.
    #[test]
    fn caps_are_granted_only_within_the_agents() {
        let want = Caps {
            bounding: 0b1111,
            effective: 0b1111,
            permitted: 0b1111,
            inheritable: 0b0011,
            ambient: 0b0011,
        };
        let own = Caps {
            bounding: 0b0110,
            effective: 0b0110,
            permitted: 0b0110,
            inheritable: 0,
            ambient: 0,
        };
        assert_eq!(
            want.within(own),
            Caps {
                bounding: 0b0110,
                effective: 0b0110,
                permitted: 0b0110,
                inheritable: 0b0010,
                ambient: 0b0010,
            }
        );
        let me = own_caps().unwrap();
        assert_eq!(want.within(me).within(me), want.within(me));
    }
}
