//! The code that runs between `fork` and `execve`, second half: the
//! tool's own process takes its private /proc, user namespace, identity,
//! death signal, working directory and session, closes the plan's fds, restores default signals, takes its last restrictions
//! and execs (from a sealed copy where asked). Each step is a small
//! `unsafe fn` of raw system calls on what [`crate::sys::plan::ChildPlan`]
//! holds: nothing here allocates or takes a lock (signal-safety(7)).

use std::ffi::{CStr, c_int};
use std::os::fd::RawFd;

use crate::sys::child::{errno, fail, join};
use crate::sys::plan::ChildPlan;
use crate::sys::{CapData, CapHeader, Creds, LINUX_CAPABILITY_VERSION_3, Stage};

/// A step of the tool's setup in the child: the stage that failed and its
/// errno. Plain values, so returning one allocates nothing.
type Step = Result<(), (Stage, i32)>;

/// The tool's process: private /proc, the user namespace joined late, its
/// identity, the death signal, working directory, session, the plan's fds
/// closed, default signals, the last restrictions, then exec.
/// Each step is a small `unsafe fn` of raw system calls on data prepared
/// before the fork.
///
/// SAFETY (for callers): only in the freshly cloned tool process; never
/// returns.
pub(super) unsafe fn tool_child(
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
            .and_then(|()| own_session(plan));
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
/// everything the tool starts, and so a TTY can become controlling. The
/// stdio is on fds 0-2 already: the first child put it there.
///
/// SAFETY (for callers): async-signal-safe: setsid(2), ioctl(2) on fd 0.
unsafe fn own_session(plan: &ChildPlan) -> Step {
    // SAFETY: system calls on this process and its fd 0, which is open.
    unsafe {
        if libc::setsid() < 0 {
            return Err((Stage::Session, errno()));
        }
        if plan.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err((Stage::Stdio, errno()));
        }
    }
    Ok(())
}

/// Nothing of the agent's may reach the tool (CVE-2019-5736): the first
/// child closed the agent's fds before it joined any namespace; this closes
/// the plan's own (namespace fds, stdio's originals) before exec, every fd
/// above stdio but the report pipe, which closes on exec.
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
unsafe fn load_seccomp(f: &crate::sys::plan::Filter) -> Result<(), i32> {
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
