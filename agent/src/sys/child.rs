//! The code that runs between `fork` and `execve`, first half: the first
//! child sheds the agent's fds, joins the namespaces and becomes the tool,
//! or clones it when a PID namespace was joined (the tool's steps are in
//! `tool`). Each step is a small `unsafe fn` of raw system calls on what
//! [`crate::sys::plan::ChildPlan`] holds, prepared before the fork:
//! nothing here allocates or takes a lock (signal-safety(7)).

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::plan::{ChildPlan, REPORT_ERR, REPORT_LEN, REPORT_PID};
use crate::sys::tool::tool_child;
use crate::sys::{Join, Stage};

pub(super) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Writes a report record; a write of 12 bytes to a pipe is atomic.
///
/// SAFETY (for callers): async-signal-safe, uses only `write(2)`.
unsafe fn report(fd: RawFd, kind: u32, a: u32, b: i32) {
    let mut rec = [0u8; REPORT_LEN];
    rec[0..4].copy_from_slice(&kind.to_ne_bytes());
    rec[4..8].copy_from_slice(&a.to_ne_bytes());
    rec[8..12].copy_from_slice(&b.to_ne_bytes());
    // SAFETY: `rec` is a valid buffer of REPORT_LEN bytes.
    unsafe { libc::write(fd, rec.as_ptr().cast(), REPORT_LEN) };
}

/// Reports the failed stage with errno and exits.
pub(super) unsafe fn fail(fd: RawFd, stage: Stage, err: i32) -> ! {
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        report(fd, REPORT_ERR, stage as u32, err);
        libc::_exit(127)
    }
}

/// Joins namespaces; returns the errno of the first that failed.
pub(super) unsafe fn join(j: &Join) -> Result<(), i32> {
    match j {
        Join::Pidfd { pidfd, mask } => {
            // SAFETY: setns on an owned, open fd.
            if unsafe { libc::setns(pidfd.as_raw_fd(), *mask) } < 0 {
                return Err(errno());
            }
            Ok(())
        }
        Join::Files(files) => {
            // Pass 0 skips the user namespace and tolerates failures (they
            // may need the user namespace first); pass 1 does the user
            // namespace first, then retries what failed. A namespace that
            // was joined is not joined again.
            let mut done = [false; 16];
            for pass in 0..2 {
                let order = files
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.nstype == libc::CLONE_NEWUSER)
                    .chain(
                        files
                            .iter()
                            .enumerate()
                            .filter(|(_, f)| f.nstype != libc::CLONE_NEWUSER),
                    );
                for (i, f) in order {
                    if done[i] || (pass == 0 && f.nstype == libc::CLONE_NEWUSER) {
                        continue;
                    }
                    // SAFETY: setns on an owned, open fd.
                    if unsafe { libc::setns(f.fd.as_raw_fd(), f.nstype) } == 0 {
                        done[i] = true;
                    } else if pass == 1 {
                        return Err(errno());
                    }
                }
            }
            Ok(())
        }
    }
}

/// The first child: joins namespaces, then becomes the tool, or with `two`
/// (a PID namespace joined) clones it and exits.
///
/// SAFETY (for callers): only in a freshly forked child; never returns.
pub(super) unsafe fn first_child(
    plan: &ChildPlan,
    kept: &[RawFd],
    two: bool,
    report_fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: all calls below are raw system calls on fds and C strings that
    // were prepared before the fork and stay valid in the child's copy of
    // the address space.
    unsafe {
        // Not dumpable from here until exec: a copy of the agent's memory
        // and fds, soon inside the target's namespaces, must not be
        // ptrace-able from there. The flag is inherited by the tool's
        // process and reset by execve(2).
        if libc::prctl(libc::PR_SET_DUMPABLE, 0) < 0 {
            fail(report_fd, Stage::Session, errno());
        }
        // The fork copied every fd of the agent (the CRI connection, the
        // audit trail, the listeners, its cgroup2 mount): none of them go
        // into the target's namespaces, where a process that may ptrace
        // could take them from /proc/PID/fd before the exec. The tool's
        // stdio takes 0-2 now, over the agent's own.
        close_all_but(kept);
        for (i, fd) in plan.stdio.iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), i as c_int) < 0 {
                fail(report_fd, Stage::Stdio, errno());
            }
        }
        // "0" is the writing thread, this process's only one; the tool
        // (this process, or its clone below) is then in that cgroup.
        if let Some(tasks) = &plan.memory_tasks
            && libc::write(tasks.as_raw_fd(), c"0".as_ptr().cast(), 1) != 1
        {
            fail(report_fd, Stage::Session, errno());
        }
        // While still root of the initial user namespace: once in a target's
        // user namespace, setgroups(2) may be denied there
        // (/proc/PID/setgroups), which would keep the agent's groups.
        if plan.become_root && libc::setgroups(0, std::ptr::null()) < 0 {
            fail(report_fd, Stage::Ids, errno());
        }
        if let Some(node) = &plan.node
            && let Err(e) = join(node)
        {
            fail(report_fd, Stage::NodeJoin, e);
        }
        if let Err(e) = join(&plan.join) {
            fail(report_fd, Stage::Setns, e);
        }
        if let Some(root) = &plan.root
            && (libc::fchdir(root.as_raw_fd()) < 0 || libc::chroot(c".".as_ptr()) < 0)
        {
            fail(report_fd, Stage::Root, errno());
        }
        if let Some(cwd) = &plan.cwd
            && libc::fchdir(cwd.as_raw_fd()) < 0
        {
            fail(report_fd, Stage::Cwd, errno());
        }
        if !two {
            tool_child(plan, report_fd, argv, envp)
        }
        let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
        let tool = libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize);
        if tool < 0 {
            fail(report_fd, Stage::Fork, errno());
        }
        if tool > 0 {
            report(report_fd, REPORT_PID, 0, tool as i32);
            libc::_exit(0);
        }
        tool_child(plan, report_fd, argv, envp)
    }
}

/// Closes every fd above 2 that is not in `kept` (sorted): one
/// close_range(2) per gap, or close(2) one by one before Linux 5.9.
///
/// SAFETY (for callers): async-signal-safe: close_range(2) or close(2);
/// `kept` was allocated before the fork.
unsafe fn close_all_but(kept: &[RawFd]) {
    let mut from: u32 = 3;
    // SAFETY: closing fds this process does not use; the ones it uses are
    // in `kept`.
    unsafe {
        for &fd in kept.iter().chain(std::iter::once(&RawFd::MAX)) {
            let fd = fd as u32;
            if fd < from {
                continue;
            }
            if fd > from && libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32) != 0 {
                for each in from..fd.min(65536) {
                    libc::close(each as c_int);
                }
            }
            from = fd.saturating_add(1);
        }
    }
}
