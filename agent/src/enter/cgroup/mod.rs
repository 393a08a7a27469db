//! Per-session cgroups: each tool starts inside a cgroup of its own session
//! (clone3 `CLONE_INTO_CGROUP`, so there is no window), and the session
//! ends by killing that cgroup (`cgroup.kill`, Linux ≥ 5.14). Whatever the
//! tool started — a `setsid` child, a shell's background job in its own
//! process group, a daemon that double-forked — is in the cgroup and dies
//! with it; a process group would let those escape.
//!
//! `cgroup.kill` is what holds against a fork bomb: the kernel marks the
//! cgroup, kills every task in it, and kills any task forked into it while
//! it walks (cgroups(7), "cgroup.kill"), so no child can be made faster
//! than it is killed. A list read from `cgroup.procs` and signalled one by
//! one, or the v1 freezer (which a task can race by forking before it is
//! frozen, and which needs a thaw-and-retry loop), would not.
//!
//! The sessions live in the unified (v2) hierarchy under the agent's own
//! cgroup, `<own>/kns-sessions-PID/session-N`: inside the agent container's
//! cgroup, which the runtime kills with the container, and where a later
//! run of the agent finds and kills what an earlier one left. The agent
//! reaches that hierarchy through a mount of its own that is attached
//! nowhere ([`crate::sys::mount_cgroup2`]), whatever the runtime mounted in
//! its container, so every layout a node can have works the same way:
//! - **cgroup v2** (unified): the runtime gives the container a private
//!   cgroup namespace, so the mount's root is the container's cgroup, and
//!   the memory controller is there for the sessions' limit;
//! - **cgroup v1 hybrid**: the runtime mounts only the v1 controllers in
//!   the container, read-only, and no cgroup2; the kernel's unified
//!   hierarchy exists all the same (controller-less, which is enough for
//!   `cgroup.kill`), and the container is in it at its full path, as it
//!   shares the node's cgroup namespace; the sessions' memory limit is a
//!   tree in the v1 memory hierarchy beside it;
//! - **cgroup v1** (legacy, nothing mounted as cgroup2 on the node): the
//!   same, with every process at the unified hierarchy's root, so the
//!   sessions' subtrees are made there.
//!
//! [`Containment`] is what the agent could set up, [`Sessions`] the agent's
//! subtree, [`SessionCgroup`] one session's cgroup; `memory` holds the
//! sessions' memory limit on either hierarchy.

mod containment;
mod memory;
mod session;

pub use containment::Containment;
pub use session::SessionCgroup;

use memory::{MemoryTree, remove_tree};

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::kernel::cgroupfs::{Hierarchy, own_path};

/// The name (a prefix: one per agent) of the subtree under the agent's own
/// cgroup that holds its sessions.
const SESSIONS: &str = "kns-sessions";

/// The leaf the agent moves into on cgroup v2 to pass the memory
/// controller to its sessions' subtree.
const AGENT: &str = "kns-agent";

/// How long a killed session's processes may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cannot mount the cgroup v2 (unified) hierarchy for the agent's own use: {source} \
         (it needs CAP_SYS_ADMIN, Linux 5.2 or newer, and no seccomp profile refusing fsopen(2))"
    )]
    Mount {
        #[source]
        source: io::Error,
    },
    #[error("no {0} hierarchy is mounted (see /proc/self/mountinfo)")]
    NotMounted(Hierarchy),
    #[error("the agent's {0} path is not in /proc/self/cgroup")]
    NoOwnPath(Hierarchy),
    #[error("the memory controller is not available to the agent's cgroup v2 ({path}/cgroup.controllers)")]
    NoMemory { path: PathBuf },
    #[error("{path} has no cgroup.kill (Linux 5.14 or newer is needed)")]
    NoKill { path: PathBuf },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    /// The cgroup was removed already (by a teardown that ran first).
    fn is_gone(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_owned();
    move |source| CgroupError::Io { what, path, source }
}

/// The agent's own path in hierarchy `h`, as its cgroup namespace shows it.
fn own_cgroup(h: Hierarchy) -> Result<String, CgroupError> {
    let cgroup =
        fs::read_to_string("/proc/self/cgroup").map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
    own_path(&cgroup, h)
        .map(str::to_owned)
        .ok_or(CgroupError::NoOwnPath(h))
}

/// The path through which the agent's own mount behind `fd` is reached.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

/// One agent's sessions' subtree, `kns-sessions-<agent PID>`, held with an
/// exclusive flock(2) for the agent's life: the lock is what tells a live
/// agent's subtree (two agents may share a cgroup, as a node service and a
/// debugging copy do) from one its agent left behind when it died.
#[derive(Debug)]
pub struct Sessions {
    /// The subtree, reached through `mount`.
    dir: PathBuf,
    /// The subtree's path in the unified hierarchy, for people.
    path: String,
    /// The agent's own mount of the unified hierarchy, which `dir` and
    /// every session's cgroup are reached through.
    mount: Arc<OwnedFd>,
    _lock: Flock<File>,
    memory: Option<MemoryTree>,
}

/// Opens `dir` and takes its lock without waiting; `None` while a live agent
/// holds it.
fn try_lock(dir: &Path) -> Result<Option<Flock<File>>, CgroupError> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err("open", dir))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io_err("lock", dir)(e.into())),
    }
}

/// What an agent found left by dead agents and ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    pub sessions: usize,
    pub processes: usize,
}

impl Sessions {
    /// Makes this agent's subtree under its own cgroup, after killing and
    /// removing the subtrees of agents that are gone (their lock is free),
    /// and says what they had left.
    pub fn open() -> Result<(Sessions, Leftovers), CgroupError> {
        let mount = Arc::new(crate::sys::mount_cgroup2().map_err(|source| CgroupError::Mount { source })?);
        // The mount's root is the root of the agent's cgroup namespace,
        // which /proc/self/cgroup's paths are relative to.
        let own_path = own_cgroup(Hierarchy::Unified)?;
        let own = fd_path(&mount).join(own_path.trim_start_matches('/'));
        let mut left = Leftovers::default();
        for e in fs::read_dir(&own).map_err(io_err("list", &own))? {
            let e = e.map_err(io_err("list", &own))?;
            let name = e.file_name();
            if !name.to_string_lossy().starts_with(SESSIONS) || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // Held: a live agent's. Free: its agent died; end what it left.
            if let Some(_lock) = try_lock(&e.path())? {
                let reaped = end_all(&e.path(), &mount).and_then(|n| {
                    fs::remove_dir(e.path())
                        .map(|()| n)
                        .map_err(io_err("remove", &e.path()))
                });
                match reaped {
                    Ok((sessions, processes)) => {
                        left.sessions += sessions;
                        left.processes += processes;
                    }
                    // One subtree that will not go must not leave this
                    // agent's own sessions uncontained: it stays, named.
                    Err(error) => tracing::warn!(%error, subtree = %e.path().display(),
                        "cannot remove what a previous run of the agent left; this run's sessions are contained all the same"),
                }
            }
        }
        let name = format!("{SESSIONS}-{}", std::process::id());
        let dir = own.join(&name);
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        if !dir.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&dir);
            return Err(CgroupError::NoKill { path: dir });
        }
        let lock = try_lock(&dir)?.ok_or_else(|| {
            io_err("lock", &dir)(io::Error::other(
                "another process holds the lock of a subtree just made",
            ))
        })?;
        let sessions = Sessions {
            dir,
            path: format!("{}/{name}", own_path.trim_end_matches('/')),
            mount,
            _lock: lock,
            memory: None,
        };
        Ok((sessions, left))
    }

    /// The sessions' subtree in the unified hierarchy
    /// (`/kubepods/…/kns-sessions-PID`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Removes the subtree at shutdown, so a stopped agent leaves nothing
    /// behind. Sessions told to end tear down on their own threads: give
    /// them `KILL_WAIT` to finish, then end what is still there.
    pub fn close(&self) {
        let start = Instant::now();
        while has_sessions(&self.dir) && start.elapsed() < KILL_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = end_all(&self.dir, &self.mount)
            .and_then(|_| fs::remove_dir(&self.dir).map_err(io_err("remove", &self.dir)));
        let v1 = self.memory.as_ref().and_then(|m| m.v1.as_deref());
        for r in [r, v1.map_or(Ok(()), remove_tree)] {
            match r {
                Err(e) if e.is_gone() => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove the sessions' cgroup"),
                Ok(()) => {}
            }
        }
    }
}

impl Drop for Sessions {
    /// Also on a start that fails after the subtree was made.
    fn drop(&mut self) {
        self.close();
    }
}

fn has_sessions(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()))))
}

/// Kills and removes every session cgroup under `dir`; returns how many
/// sessions and processes there were.
fn end_all(dir: &Path, mount: &Arc<OwnedFd>) -> Result<(usize, usize), CgroupError> {
    let mut sessions = 0;
    let mut procs = 0;
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let cg = SessionCgroup::at(e.path(), mount)?;
        sessions += 1;
        procs += cg.procs().len();
        cg.kill_and_remove()?;
    }
    Ok((sessions, procs))
}
