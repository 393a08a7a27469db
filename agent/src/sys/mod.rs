//! The agent's only `unsafe` code: the syscalls nix does not wrap
//! (`pidfd_open`, `clone(CLONE_PARENT)`, `waitid(P_PIDFD)`, terminal ioctls,
//! the new mount API)
//! and the code that runs between `fork` and `execve`.
//!
//! Everything the child needs is prepared by [`ChildPlan`] before the fork;
//! the child itself only makes raw system calls, which are async-signal-safe
//! (signal-safety(7)), because the agent is multi-threaded and a forked
//! child of a multi-threaded process may not allocate or take locks.
//!
//! The crate denies `unsafe_code`; this module alone allows it (its
//! `#[allow]` is on `mod sys` in lib.rs). `pty` and `spawner` live here as
//! the other halves of starting a tool: the terminal pair it gets and the
//! one thread that forks it.

pub mod pty;
pub mod spawner;

use std::ffi::{CStr, CString, c_int};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// Everything the child needs, prepared before the fork so that the child
/// only makes system calls.
#[derive(Debug)]
pub struct ChildPlan {
    /// The node's namespaces for every kind not chosen where the agent's
    /// own differ, joined first: the tool comes from the node's filesystem
    /// and sees the node's network, hostname, IPC, not the agent pod's.
    pub node: Option<Join>,
    /// The target's chosen namespaces.
    pub join: Join,
    /// Entered after /proc is mounted: mounting proc needs privileges the
    /// process gives up when it joins a user namespace.
    pub late_user: Option<Join>,
    /// The target's user namespace was joined: become root in it, as
    /// nsenter(1) does, so the tool holds that namespace's capabilities
    /// instead of running as the overflow uid.
    pub become_root: bool,
    /// Run the tool with this identity instead of the agent's (or root's
    /// of the target's user namespace).
    pub creds: Option<Creds>,
    /// The container's seccomp filter, loaded with its identity.
    pub seccomp: Option<crate::enter::seccomp::Filter>,
    /// Execute a sealed memfd copy of the tool instead of its file; see
    /// [`exec_sealed_copy`].
    pub exec_copy: bool,
    /// The target's root and working directory (with the mount namespace).
    pub root: Option<OwnedFd>,
    pub cwd: Option<OwnedFd>,
    pub mount_proc: bool,
    /// Give the tool a private copy of its mount namespace: the agent's
    /// own, for the agent's tools, whose mounts must not change what the
    /// agent sees.
    pub private_mounts: bool,
    pub workdir: Option<CString>,
    /// Full paths to try in order (PATH resolved before the fork).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The child's ends of stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    pub tty: bool,
    /// The session's cgroup (a directory fd): both children start in it.
    pub cgroup: Option<OwnedFd>,
    /// cgroup v1 nodes: the cgroup.procs of the session's memory cgroup,
    /// which the first child writes itself into before anything else.
    pub memory_procs: Option<OwnedFd>,
}

/// What the parent learns from a spawn.
#[derive(Debug)]
pub enum SpawnOutcome {
    /// The tool was exec'd; its PID in the agent's PID namespace.
    Running(i32),
    /// A setup step failed; the tool (if it was created) has been reaped.
    Failed { stage: Stage, errno: i32 },
}

const REPORT_PID: u32 = 1;
const REPORT_ERR: u32 = 2;
const REPORT_LEN: usize = 12;

/// Forks, joins the namespaces, and execs the tool.
///
/// Two processes are made: the first joins the namespaces (joining a PID
/// namespace only applies to children, setns(2)), then makes the second with
/// `CLONE_PARENT`, so the tool is the agent's own child and inside every
/// namespace asked for. The first exits at once. Both report to the parent
/// over a close-on-exec pipe: the tool's PID, or the step that failed and its
/// errno; end of file means the exec succeeded.
///
/// Blocking: call from a blocking thread.
pub fn spawn(plan: ChildPlan) -> io::Result<SpawnOutcome> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let argv_ptrs = null_terminated(&plan.argv);
    let envp_ptrs = null_terminated(&plan.envp);

    // SAFETY: the child runs `first_child`, which only makes async-signal-
    // safe system calls on data prepared above and never returns.
    let pid = unsafe { fork_into(plan.cgroup.as_ref()) };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked, single-threaded child.
        unsafe { first_child(&plan, report_w.as_raw_fd(), &argv_ptrs, &envp_ptrs) }
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
    // The first child exits right after reporting; reap it.
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)?;
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

fn errno() -> i32 {
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
unsafe fn fail(fd: RawFd, stage: Stage, err: i32) -> ! {
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        report(fd, REPORT_ERR, stage as u32, err);
        libc::_exit(127)
    }
}

/// Joins namespaces; returns the errno of the first that failed.
unsafe fn join(j: &Join) -> Result<(), i32> {
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

/// The first child: joins namespaces, then clones the tool and exits.
///
/// SAFETY (for callers): only in a freshly forked child; never returns.
unsafe fn first_child(
    plan: &ChildPlan,
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
        // "0" is the writing process; the tool, cloned below, inherits it.
        if let Some(procs) = &plan.memory_procs
            && libc::write(procs.as_raw_fd(), c"0".as_ptr().cast(), 1) != 1
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

/// A step of the tool's setup in the child: the stage that failed and its
/// errno. Plain values, so returning one allocates nothing.
type Step = Result<(), (Stage, i32)>;

/// The tool's process: private /proc, the user namespace joined late, its
/// identity, the death signal, working directory, session and stdio, the
/// agent's fds closed, default signals, the last restrictions, then exec.
/// Each step is a small `unsafe fn` of raw system calls on data prepared
/// before the fork.
///
/// SAFETY (for callers): only in the freshly cloned tool process; never
/// returns.
unsafe fn tool_child(
    plan: &ChildPlan,
    report_fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which
    // the identity change may give up: then it is loaded first, and the
    // calls that change the identity must pass it (runc's order; a
    // runtime's default profile allows them).
    let nnp = plan.creds.as_ref().is_some_and(|c| c.no_new_privs);
    // SAFETY: each step only makes async-signal-safe system calls on the
    // plan, which was prepared before the fork and stays valid in the
    // child's copy of the address space (signal-safety(7)).
    unsafe {
        // Who the parent (the agent) is as seen from here, to tell later
        // whether it died before the death signal was armed.
        let parent = libc::getppid();
        let setup = private_proc(plan)
            .and_then(|()| late_user(plan))
            .and_then(|()| take_identity(plan, nnp))
            .and_then(|()| arm_death_signal(parent))
            .and_then(|()| enter_workdir(plan))
            .and_then(|()| own_session_and_stdio(plan));
        if let Err((stage, e)) = setup {
            fail(report_fd, stage, e);
        }
        close_agent_fds(report_fd);
        default_signals();
        if let Err((stage, e)) = last_restrictions(plan, nnp) {
            fail(report_fd, stage, e);
        }
        fail(report_fd, Stage::Exec, exec_tool(plan, argv, envp))
    }
}

/// A private mount namespace, so a fresh proc (or whatever the tool
/// mounts) never reaches the node's or the agent's mount table
/// (mount_namespaces(7)); then the fresh proc, for `-p` without `-m`.
///
/// SAFETY (for callers): async-signal-safe: unshare(2) and mount(2) on
/// static C strings.
unsafe fn private_proc(plan: &ChildPlan) -> Step {
    // SAFETY: raw system calls with static, NUL-terminated strings and
    // null pointers where the kernel takes none.
    unsafe {
        if (plan.mount_proc || plan.private_mounts)
            && (libc::unshare(libc::CLONE_NEWNS) < 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0)
        {
            return Err((Stage::MountProc, errno()));
        }
        if plan.mount_proc
            && libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) < 0
        {
            return Err((Stage::MountProc, errno()));
        }
    }
    Ok(())
}

/// The target's user namespace, when it had to wait for /proc's mount.
///
/// SAFETY (for callers): async-signal-safe: setns(2) on prepared fds.
unsafe fn late_user(plan: &ChildPlan) -> Step {
    match &plan.late_user {
        // SAFETY: `join` only calls setns(2) on fds the plan owns.
        Some(j) => unsafe { join(j) }.map_err(|e| (Stage::SetnsUser, e)),
        None => Ok(()),
    }
}

/// The identity the tool runs with: the container's credentials (with its
/// seccomp filter first when there is no no_new_privs), or root of the
/// joined user namespace.
///
/// SAFETY (for callers): async-signal-safe: seccomp(2), the set*id(2)
/// calls and setgroups(2) on prepared values.
unsafe fn take_identity(plan: &ChildPlan, nnp: bool) -> Step {
    // SAFETY: the filter and credentials were prepared before the fork;
    // setgroups(2) gets an empty list (a null pointer with size 0).
    unsafe {
        if let Some(f) = plan.seccomp.as_ref().filter(|_| !nnp) {
            load_seccomp(f).map_err(|e| (Stage::Seccomp, e))?;
        }
        if let Some(creds) = &plan.creds {
            take_creds(creds).map_err(|e| (Stage::Creds, e))?;
        } else if plan.become_root {
            // Supplementary groups are dropped where the namespace allows
            // it; where /proc/PID/setgroups says "deny" the call fails with
            // EPERM and the process keeps none that map anyway.
            if libc::setgroups(0, std::ptr::null()) < 0 && errno() != libc::EPERM {
                return Err((Stage::Ids, errno()));
            }
            if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
                return Err((Stage::Ids, errno()));
            }
        }
    }
    Ok(())
}

/// The tool is the agent's child (CLONE_PARENT), made from the agent's
/// spawner thread, which lives as long as the agent: when the agent dies,
/// so does the tool (prctl(2): the signal follows the thread that made the
/// child). Armed after the credential change, which clears it; an agent
/// already gone by then is seen as a new parent, and the tool exits.
///
/// SAFETY (for callers): async-signal-safe: prctl(2), getppid(2), _exit(2).
unsafe fn arm_death_signal(parent: libc::pid_t) -> Step {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
            return Err((Stage::Session, errno()));
        }
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
    Ok(())
}

/// The working directory asked for, else the target's (after the root
/// change, "."), else "/".
///
/// SAFETY (for callers): async-signal-safe: chdir(2) on a prepared string.
unsafe fn enter_workdir(plan: &ChildPlan) -> Step {
    let dir: &CStr = match &plan.workdir {
        Some(w) => w,
        None if plan.cwd.is_some() => c".",
        None => c"/",
    };
    // SAFETY: `dir` is a NUL-terminated string alive for the call.
    if unsafe { libc::chdir(dir.as_ptr()) } < 0 {
        return Err((Stage::Workdir, errno()));
    }
    Ok(())
}

/// Own session and process group, so the agent can signal and kill
/// everything the tool starts, and so a TTY can become controlling; then
/// the prepared stdio on fds 0-2.
///
/// SAFETY (for callers): async-signal-safe: setsid(2), dup2(2), ioctl(2)
/// on fds the plan owns.
unsafe fn own_session_and_stdio(plan: &ChildPlan) -> Step {
    // SAFETY: system calls on fds owned by the plan and open.
    unsafe {
        if libc::setsid() < 0 {
            return Err((Stage::Session, errno()));
        }
        for (i, fd) in plan.stdio.iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), i as c_int) < 0 {
                return Err((Stage::Stdio, errno()));
            }
        }
        if plan.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err((Stage::Stdio, errno()));
        }
    }
    Ok(())
}

/// Nothing of the agent's may reach the tool (CVE-2019-5736): every fd
/// above stdio but the report pipe is closed now, not at exec, since the
/// process is already visible in the target's namespaces; the report pipe
/// closes on exec.
///
/// SAFETY (for callers): async-signal-safe: close_range(2) or close(2).
unsafe fn close_agent_fds(report_fd: RawFd) {
    let report = report_fd as u32;
    // SAFETY: closing fds this process no longer uses; the plan's fds that
    // are still needed were dup2'd onto 0-2 or are the report pipe.
    unsafe {
        let closed = (report <= 3 || libc::syscall(libc::SYS_close_range, 3u32, report - 1, 0u32) == 0)
            && libc::syscall(libc::SYS_close_range, report + 1, u32::MAX, 0u32) == 0;
        if !closed {
            // close_range(2) needs Linux 5.9.
            for fd in 3..65536 {
                if fd != report_fd {
                    libc::close(fd);
                }
            }
        }
    }
}

/// The Rust runtime ignores SIGPIPE and tokio may block signals; the tool
/// gets default dispositions and an empty mask.
///
/// SAFETY (for callers): async-signal-safe: sigprocmask(2), signal(2).
unsafe fn default_signals() {
    // SAFETY: a zeroed sigset_t is a valid value to empty; the calls take
    // it by pointer for their duration only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Last, as runc does: no_new_privs only restricts what exec may grant,
/// and the calls before need no privileges it would take away. With it,
/// the seccomp filter needs no privilege: as late as can be, so it filters
/// the tool and nothing of the setup.
///
/// SAFETY (for callers): async-signal-safe: prctl(2), seccomp(2).
unsafe fn last_restrictions(plan: &ChildPlan, nnp: bool) -> Step {
    // SAFETY: prctl with integer arguments; the filter was compiled before
    // the fork.
    unsafe {
        if nnp && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err((Stage::Creds, errno()));
        }
        if let Some(f) = plan.seccomp.as_ref().filter(|_| nnp) {
            load_seccomp(f).map_err(|e| (Stage::Seccomp, e))?;
        }
    }
    Ok(())
}

/// Tries each candidate path, as execvp(3) does: EACCES anywhere wins over
/// ENOENT. Returns the errno to report if none could be executed.
///
/// SAFETY (for callers): async-signal-safe: execve(2) (or the sealed copy's
/// memfd_create/sendfile/execveat) on prepared strings.
unsafe fn exec_tool(plan: &ChildPlan, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
    let mut err = libc::ENOENT;
    for path in &plan.candidates {
        // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings and
        // null-terminated pointer arrays prepared before the fork.
        let e = unsafe {
            if plan.exec_copy {
                exec_sealed_copy(path, argv, envp)
            } else {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                errno()
            }
        };
        if e != libc::ENOENT && e != libc::ENOTDIR {
            err = e;
        }
        if e != libc::ENOENT && e != libc::ENOTDIR && e != libc::EACCES {
            break;
        }
    }
    err
}

/// linux/filter.h's `struct sock_fprog`, which seccomp(2) takes.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const u8,
}

/// Loads the container's seccomp filter into this process (and the tool it
/// becomes).
///
/// SAFETY (for callers): async-signal-safe: one system call on `f`'s
/// program, which was compiled before the fork.
unsafe fn load_seccomp(f: &crate::enter::seccomp::Filter) -> Result<(), i32> {
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    let Ok(len) = u16::try_from(f.program.len() / 8) else {
        return Err(libc::E2BIG);
    };
    let prog = SockFprog {
        len,
        filter: f.program.as_ptr(),
    };
    // SAFETY: `prog` points at `len` whole sock_filter instructions in
    // `f.program`, alive for the call; the kernel copies them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(f.flags),
            &prog as *const SockFprog,
        )
    };
    if rc < 0 { Err(errno()) } else { Ok(()) }
}

/// linux/capability.h: the capset(2) header and one of its two data words.
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

/// Takes `c` as the process's identity, in runc's order (libcontainer's
/// `finalizeNamespace`): drop the bounding set while CAP_SETPCAP is still
/// held; keep the permitted set across the uid change (PR_SET_KEEPCAPS),
/// since setresuid from root to non-root clears it; groups before gid
/// before uid, each needing the privilege the next gives up; then cut the
/// sets down with capset(2) and raise the ambient ones, which need their
/// bits in the permitted and inheritable sets. execve(2) then computes the
/// tool's capabilities from these as it does for the container's own
/// processes (capabilities(7)). PR_SET_PDEATHSIG, which the uid change
/// clears, is armed by the caller after this.
///
/// SAFETY (for callers): async-signal-safe: raw system calls on `c`, which
/// was prepared before the fork.
unsafe fn take_creds(c: &Creds) -> Result<(), i32> {
    let ok = |rc: c_int| if rc < 0 { Err(errno()) } else { Ok(()) };
    // SAFETY: prctl, setgroups, setres[ug]id and capset on plain values and
    // on buffers (`c.groups`, `hdr`, `data`) valid for each call.
    unsafe {
        // Only what is there: dropping needs CAP_SETPCAP even for a
        // capability already gone, and beyond the kernel's last one READ
        // says 0 (EINVAL).
        for cap in (0..64).filter(|b| c.caps.bounding & (1 << b) == 0) {
            if libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1 {
                ok(libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0))?;
            }
        }
        ok(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        ok(libc::setgroups(c.groups.len(), c.groups.as_ptr()))?;
        ok(libc::setresgid(c.gid, c.gid, c.gid))?;
        ok(libc::setresuid(c.uid, c.uid, c.uid))?;
        let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
        let data = [0, 1].map(|i| CapData {
            effective: word(c.caps.effective, i),
            permitted: word(c.caps.permitted, i),
            inheritable: word(c.caps.inheritable, i),
        });
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        ok(libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) as c_int)?;
        ok(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        for cap in (0..64).filter(|b| c.caps.ambient & (1 << b) != 0) {
            ok(libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            ))?;
        }
    }
    Ok(())
}

/// Executes a sealed in-memory copy of the file at `path`; returns the
/// errno when it could not, as a failed execve(2) would.
///
/// Why: once exec'd, a process's /proc/PID/exe is a handle to the file it
/// runs, and anyone who may ptrace-read the process (same uid, no more
/// capabilities: a container's own processes, when the tool runs with the
/// container's identity) can open it, keep it past the tool's exit and
/// reopen it for writing: how CVE-2019-5736 overwrote the node's runc. A
/// memfd sealed against writes, growth and shrinking, with no path
/// anywhere, leaves nothing there to write to. Node-root tools are not
/// copied: reaching their exe needs CAP_SYS_PTRACE over a node-root
/// process, which already is control of the node.
///
/// The copy is made after the identity change, so opening the file is
/// checked with the tool's own identity; execute permission and a noexec
/// mount, which executing a memfd does not check, are checked with
/// access(2).
/// Scripts (`#!`) are executed by path: the kernel hands the interpreter a
/// /dev/fd path to the script, which a close-on-exec memfd does not
/// survive; the interpreter is then the process's exe, a file resolved
/// where the tool's path was. Set-user-ID bits and file capabilities do not
/// apply to the copy: the tool never gains privileges from the image.
///
/// SAFETY (for callers): async-signal-safe: raw system calls, a buffer on
/// the stack.
unsafe fn exec_sealed_copy(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
    // SAFETY: system calls on `path` (a valid C string), fds this function
    // opens and closes, and buffers on its stack.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return errno();
        }
        let err = (|| {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) < 0 {
                return errno();
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return libc::EACCES;
            }
            // With the real ids, which are the tool's now; EACCES on a
            // noexec mount too, as execve(2) gives.
            if libc::access(path.as_ptr(), libc::X_OK) < 0 {
                return errno();
            }
            let mut magic = [0u8; 2];
            if libc::pread(fd, magic.as_mut_ptr().cast(), 2, 0) == 2 && magic == *b"#!" {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                return errno();
            }
            let mfd = libc::syscall(
                libc::SYS_memfd_create,
                c"kns-tool".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            ) as c_int;
            if mfd < 0 {
                return errno();
            }
            let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
            let e = match copy_all(fd, mfd) {
                Err(e) => e,
                Ok(()) if libc::fcntl(mfd, libc::F_ADD_SEALS, seals) < 0 => errno(),
                Ok(()) => {
                    libc::syscall(
                        libc::SYS_execveat,
                        mfd,
                        c"".as_ptr(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                    errno()
                }
            };
            libc::close(mfd);
            e
        })();
        libc::close(fd);
        err
    }
}

/// Copies all of `from` (from its current offset) to `to`.
///
/// SAFETY (for callers): async-signal-safe; both fds open.
unsafe fn copy_all(from: RawFd, to: RawFd) -> Result<(), i32> {
    // SAFETY: sendfile, read and write on open fds and a stack buffer.
    unsafe {
        loop {
            match libc::sendfile(to, from, std::ptr::null_mut(), 1 << 30) {
                0 => return Ok(()),
                n if n > 0 => {}
                _ if errno() == libc::EINTR => {}
                // Filesystems without splice support: plain reads.
                _ if errno() == libc::EINVAL || errno() == libc::ENOSYS => break,
                _ => return Err(errno()),
            }
        }
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = libc::read(from, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(errno());
            }
            let mut done = 0;
            while done < n as usize {
                let w = libc::write(to, buf[done..].as_ptr().cast(), n as usize - done);
                if w < 0 && errno() != libc::EINTR {
                    return Err(errno());
                }
                done += w.max(0) as usize;
            }
        }
    }
}

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
