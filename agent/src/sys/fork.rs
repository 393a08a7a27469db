//! The parent's side of starting a tool: fork (or clone3 into the
//! session's cgroup), then read the child's reports until the exec closes
//! the pipe.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::Stage;
use crate::sys::child::first_child;
use crate::sys::plan::{ChildPlan, REPORT_ERR, REPORT_LEN, REPORT_PID, SpawnOutcome};

/// Forks, joins the namespaces, and execs the tool.
///
/// The child joins the namespaces and becomes the tool. Joining a PID
/// namespace only applies to children (setns(2)): then it makes a second
/// process with `CLONE_PARENT`, so the tool is the agent's own child and
/// inside every namespace asked for, reports its PID and exits at once.
/// Every fork copies the agent's page tables, so the second one is made
/// only when needed. The children report to the parent over a
/// close-on-exec pipe: the tool's PID, or the step that failed and its
/// errno; end of file means the exec succeeded.
///
/// Blocking: call from a blocking thread.
pub fn spawn(plan: ChildPlan) -> io::Result<SpawnOutcome> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let argv_ptrs = null_terminated(&plan.argv);
    let envp_ptrs = null_terminated(&plan.envp);
    let kept = plan.kept_fds(report_w.as_raw_fd());
    let two = plan.joins_pid();

    // SAFETY: the child runs `first_child`, which only makes async-signal-
    // safe system calls on data prepared above and never returns.
    let pid = unsafe { fork_into(plan.cgroup.as_ref()) };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked, single-threaded child.
        unsafe { first_child(&plan, &kept, two, report_w.as_raw_fd(), &argv_ptrs, &envp_ptrs) }
    }
    drop(report_w);
    drop(plan);

    let mut tool_pid = None;
    let mut failure = None;
    let mut buf = [0u8; REPORT_LEN];
    loop {
        match read_full(&report_r, &mut buf)? {
            false => break,
            true => {
                let kind = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes"));
                let a = u32::from_ne_bytes(buf[4..8].try_into().expect("4 bytes"));
                let b = i32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
                match kind {
                    REPORT_PID => tool_pid = Some(b),
                    REPORT_ERR => failure = Some((Stage::from_u32(a).unwrap_or(Stage::Exec), b)),
                    _ => {}
                }
            }
        }
    }
    if two {
        // The first child exits right after reporting; reap it.
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)?;
    } else {
        tool_pid = Some(pid);
    }
    match (failure, tool_pid) {
        (Some((stage, errno)), tool) => {
            if let Some(t) = tool {
                // The tool failed before exec and exits on its own; reap it
                // so nothing is left behind.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(t), None);
            }
            Ok(SpawnOutcome::Failed { stage, errno })
        }
        (None, Some(t)) => Ok(SpawnOutcome::Running(t)),
        (None, None) => Err(io::Error::other("namespace entry child exited without a report")),
    }
}

/// clone3(2)'s argument (linux/sched.h), up to the `cgroup` field
/// (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// linux/sched.h; libc declares it with a type too narrow to hold it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(2), or with a cgroup, clone3(2) straight into it (Linux ≥ 5.7): the
/// child never runs a single instruction outside the session's cgroup.
///
/// SAFETY (for callers): as for fork(2) in a multi-threaded process: the
/// child may only make async-signal-safe calls. clone3 also skips glibc's
/// fork handlers, which only matters to code that takes glibc's locks, and
/// the child takes none.
unsafe fn fork_into(cgroup: Option<&OwnedFd>) -> libc::pid_t {
    let Some(cg) = cgroup else {
        // SAFETY: see the function's contract.
        return unsafe { libc::fork() };
    };
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cg.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; without
    // CLONE_VM the child gets a copy of the address space, as with fork.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        ) as libc::pid_t
    }
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Reads exactly one report, or returns false at end of file.
fn read_full(fd: &OwnedFd, buf: &mut [u8; REPORT_LEN]) -> io::Result<bool> {
    let mut got = 0;
    while got < REPORT_LEN {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::other("short report from child")),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
