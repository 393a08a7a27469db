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

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::kernel::cgroupfs::{Hierarchy, Layout, layout, mount_of, own_path};

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

/// Hierarchy `h`'s mount point, and the directory of the agent's own cgroup
/// in it.
fn own_dir(h: Hierarchy) -> Result<(PathBuf, PathBuf), CgroupError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
    let (mount, root) = mount_of(&mountinfo, h).ok_or(CgroupError::NotMounted(h))?;
    let own = own_cgroup(h)?;
    let own = own.as_str();
    // The mount shows the hierarchy from `root` down (a container's own
    // cgroup, usually "/" inside its cgroup namespace).
    let rel = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own);
    let dir = mount.join(rel.trim_start_matches('/'));
    Ok((mount, dir))
}

/// The path through which the agent's own mount behind `fd` is reached.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Runtimes mount a container's cgroupfs read-only. The mount is the
/// agent's own (its mount namespace), so with CAP_SYS_ADMIN it may make it
/// writable for itself; the node's stays as is.
fn make_writable(mount: &Path) -> Result<(), CgroupError> {
    let ro = nix::sys::statvfs::statvfs(mount)
        .map_err(|e| io_err("stat", mount)(e.into()))?
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    if ro {
        let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(None::<&str>, mount, None::<&str>, flags, None::<&str>)
            .map_err(|e| io_err("remount read-write", mount)(e.into()))?;
        tracing::info!(mount = %mount.display(), "made the agent's own cgroupfs mount writable");
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

/// Removes a cgroup and the (empty) cgroups below it.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir).map_err(io_err("remove", dir))
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

/// Where the sessions' memory limit is enforced.
#[derive(Debug)]
struct MemoryTree {
    /// Bytes, for all sessions together.
    max: u64,
    /// cgroup v1: a tree parallel to the sessions' in the memory hierarchy,
    /// `kns-sessions-PID/session-N`. `None` on cgroup v2, where the
    /// controller is enabled on the sessions' own subtree.
    v1: Option<PathBuf>,
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

/// What the agent could set up for its sessions, which `kubectl ns status`
/// reports per node.
#[derive(Debug, Clone)]
pub struct Containment {
    /// Where sessions' cgroups are made; `None` when they cannot be.
    pub sessions: Option<Arc<Sessions>>,
    /// The node's cgroup layout, from the node reference process's mounts;
    /// `None` when they cannot be read.
    pub layout: Option<Layout>,
    /// Why sessions are not each in a cgroup of their own.
    pub error: Option<String>,
    /// The sessions' memory limit in force, in bytes: `Ok(None)` when none
    /// was asked for, `Err` with why one asked for is not in force.
    pub memory: Result<Option<u64>, String>,
}

impl Containment {
    /// Makes the sessions' subtree (killing what agents that died left in
    /// theirs) and its memory limit, logging what could not be had.
    pub fn setup(node_pid: i32, memory: Option<u64>) -> Containment {
        let layout = fs::read_to_string(format!("/proc/{node_pid}/mountinfo"))
            .ok()
            .and_then(|m| layout(&m));
        let layout_name = layout.map_or_else(|| "unknown".to_owned(), |l| l.to_string());
        let (mut sessions, left) = match Sessions::open() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, layout = %layout_name,
                    "no session cgroups: a session's processes are found by process group only, \
                     so what a tool moves to its own session (setsid, daemons) can outlive it");
                let error = e.to_string();
                return Containment {
                    sessions: None,
                    layout,
                    memory: match memory {
                        None => Ok(None),
                        Some(_) => Err(format!("no session cgroups ({error})")),
                    },
                    error: Some(error),
                };
            }
        };
        if left.sessions > 0 {
            tracing::warn!(
                sessions = left.sessions,
                processes = left.processes,
                "killed what sessions of a previous run of the agent left behind"
            );
        }
        tracing::info!(cgroup = sessions.path(), layout = %layout_name, "sessions each run in a cgroup of their own");
        let memory = match memory {
            None => Ok(None),
            Some(max) => match sessions.limit_memory(max) {
                Ok(h) => {
                    tracing::info!(mib = max >> 20, hierarchy = %h, "sessions' memory limit");
                    Ok(Some(max))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no memory limit for the sessions: they share the agent's");
                    Err(e.to_string())
                }
            },
        };
        Containment {
            sessions: Some(Arc::new(sessions)),
            layout,
            error: None,
            memory,
        }
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

    /// A new, empty cgroup for session `id`.
    pub fn create(&self, id: u64) -> Result<SessionCgroup, CgroupError> {
        let name = format!("session-{id}");
        let dir = self.dir.join(&name);
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        let mut cg = SessionCgroup::at(dir, &self.mount)?;
        cg.memory = match &self.memory {
            None => None,
            Some(MemoryTree { max, v1: None }) => Some(SessionMemory {
                max: *max,
                events: cg.dir.join("memory.events"),
                v1: None,
            }),
            Some(MemoryTree { max, v1: Some(tree) }) => {
                let dir = tree.join(&name);
                fs::create_dir(&dir).map_err(io_err("create", &dir))?;
                let procs = dir.join("cgroup.procs");
                let fd = File::options()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&procs)
                    .map_err(io_err("open", &procs))?;
                Some(SessionMemory {
                    max: *max,
                    events: dir.join("memory.oom_control"),
                    v1: Some((dir, fd.into())),
                })
            }
        };
        Ok(cg)
    }

    /// Caps the memory of all sessions together at `max` bytes, apart from
    /// the agent's own: a runaway tool is then killed by the kernel, not
    /// the agent. Uses cgroup v2's memory controller where the agent's
    /// cgroup has it, else cgroup v1's.
    pub fn limit_memory(&mut self, max: u64) -> Result<Hierarchy, CgroupError> {
        let own = self.dir.parent().unwrap_or(&self.dir).to_owned();
        let v1 = match self.unified_memory(&own, max) {
            Ok(()) => None,
            Err(CgroupError::NoMemory { .. }) => Some(self.v1_memory(&own, max)?),
            Err(e) => return Err(e),
        };
        let h = if v1.is_some() {
            Hierarchy::V1Memory
        } else {
            Hierarchy::Unified
        };
        self.memory = Some(MemoryTree { max, v1 });
        Ok(h)
    }

    fn unified_memory(&self, own: &Path, max: u64) -> Result<(), CgroupError> {
        let has_memory = |file: &str| -> Result<bool, CgroupError> {
            let path = own.join(file);
            let s = fs::read_to_string(&path).map_err(io_err("read", &path))?;
            Ok(s.split_whitespace().any(|c| c == "memory"))
        };
        if !has_memory("cgroup.controllers")? {
            return Err(CgroupError::NoMemory { path: own.to_owned() });
        }
        if !has_memory("cgroup.subtree_control")? {
            // cgroup v2's "no internal processes" rule: a cgroup that holds
            // processes cannot pass a controller to its children, so the
            // agent moves into a leaf of its own first.
            let leaf = own.join(format!("{AGENT}-{}", std::process::id()));
            match fs::create_dir(&leaf) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err("create", &leaf)(e)),
                _ => {}
            }
            write(&leaf.join("cgroup.procs"), "0")?;
            write(&own.join("cgroup.subtree_control"), "+memory")?;
        }
        write(&self.dir.join("memory.max"), &max.to_string())?;
        // memory.max bounds RAM only: without this, a node with swap would
        // let the sessions go past the limit into it (as memsw does on v1).
        let swap = self.dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
        // So that each session's memory.events counts its own OOM kills.
        write(&self.dir.join("cgroup.subtree_control"), "+memory")
    }

    fn v1_memory(&self, unified_own: &Path, max: u64) -> Result<PathBuf, CgroupError> {
        let (mount, own) = own_dir(Hierarchy::V1Memory)?;
        make_writable(&mount)?;
        // Dead agents' trees: their unified subtrees were reaped in `open`.
        for e in fs::read_dir(&own).map_err(io_err("list", &own))? {
            let e = e.map_err(io_err("list", &own))?;
            let name = e.file_name();
            if name.to_string_lossy().starts_with(SESSIONS) && !unified_own.join(&name).exists() {
                remove_tree(&e.path())?;
            }
        }
        let dir = own.join(self.dir.file_name().unwrap_or_default());
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        write(&dir.join("memory.limit_in_bytes"), &max.to_string())?;
        // Without this, swap would let the sessions go past the limit.
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, &max.to_string())?;
        }
        Ok(dir)
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

/// One session's cgroup; killed and removed when dropped.
#[derive(Debug)]
pub struct SessionCgroup {
    dir: PathBuf,
    /// Keeps the mount `dir` is reached through open: the path names an fd
    /// by number, which must not be closed (and reused) before this.
    _mount: Arc<OwnedFd>,
    /// Held open for clone3's `CLONE_INTO_CGROUP`.
    fd: OwnedFd,
    memory: Option<SessionMemory>,
}

/// A session's part of the sessions' memory limit.
#[derive(Debug)]
struct SessionMemory {
    max: u64,
    /// Counts the session's processes the OOM killer took (`oom_kill`):
    /// memory.events on cgroup v2, memory.oom_control on v1.
    events: PathBuf,
    /// cgroup v1: the session's memory cgroup, and its cgroup.procs, which
    /// the tool's first process writes itself into before anything of the
    /// tool runs (clone3 places it only in the unified hierarchy).
    v1: Option<(PathBuf, OwnedFd)>,
}

impl SessionCgroup {
    fn at(dir: PathBuf, mount: &Arc<OwnedFd>) -> Result<SessionCgroup, CgroupError> {
        let fd = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(io_err("open", &dir))?;
        Ok(SessionCgroup {
            dir,
            _mount: mount.clone(),
            fd: fd.into(),
            memory: None,
        })
    }

    /// cgroup v1: the cgroup.procs the tool's first process writes "0"
    /// (itself) into.
    pub fn memory_procs(&self) -> Option<BorrowedFd<'_>> {
        self.memory.as_ref()?.v1.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// Says so when the OOM killer took a process of this session because
    /// the sessions' memory limit was reached.
    pub fn oom_note(&self) -> Option<String> {
        let m = self.memory.as_ref()?;
        let events = fs::read_to_string(&m.events).ok()?;
        let kills: u64 = events
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())?;
        (kills > 0).then(|| {
            format!(
                "the kernel killed {kills} process(es) of this session: the sessions' memory limit \
                 ({} MiB, the agent's --sessions-memory) was reached",
                m.max >> 20
            )
        })
    }

    /// The directory fd that clone3 places the new process in.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The PIDs in the cgroup now.
    pub fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is left ("populated 0" in cgroup.events).
    fn populated(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|s| !s.lines().any(|l| l == "populated 0"))
            .unwrap_or(false)
    }

    /// SIGKILLs every process in the cgroup, at once and race-free against
    /// forks (the kernel walks the cgroup, not a list read earlier).
    pub fn kill(&self) -> Result<(), CgroupError> {
        let path = self.dir.join("cgroup.kill");
        fs::write(&path, "1").map_err(io_err("write", &path))
    }

    /// Kills, waits until empty, removes. A process still dying keeps the
    /// directory (EBUSY): that is logged, and the next start removes it.
    fn kill_and_remove(&self) -> Result<(), CgroupError> {
        self.kill()?;
        let start = Instant::now();
        while self.populated() && start.elapsed() < KILL_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        fs::remove_dir(&self.dir).map_err(io_err("remove", &self.dir))?;
        match self.memory.as_ref().and_then(|m| m.v1.as_ref()) {
            Some((dir, _)) => fs::remove_dir(dir).map_err(io_err("remove", dir)),
            None => Ok(()),
        }
    }
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        match self.kill_and_remove() {
            // Shutdown's `Sessions::close` ended it first.
            Err(e) if e.is_gone() => {}
            Err(e) => tracing::warn!(error = %e, "cannot end a session's cgroup"),
            Ok(()) => {}
        }
    }
}
