//! Per-session cgroups: each tool starts inside a cgroup of its own session
//! (clone3 `CLONE_INTO_CGROUP`, so there is no window), and the session
//! ends by killing that cgroup (`cgroup.kill`, Linux ≥ 5.14). Whatever the
//! tool started — a `setsid` child, a shell's background job in its own
//! process group, a daemon that double-forked — is in the cgroup and dies
//! with it; a process group would let those escape.
//!
//! The sessions live under the agent's own cgroup in the unified (v2)
//! hierarchy, `<own>/kns-sessions/<session>`: inside the agent container's
//! cgroup, which the runtime kills with the container, and where a later
//! run of the agent finds and kills what an earlier one left. Hybrid nodes
//! have that hierarchy without controllers at /sys/fs/cgroup/unified, which
//! is enough for `cgroup.kill` (cgroups(7), "cgroup.kill").

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// The name (a prefix: one per agent) of the subtree under the agent's own
/// cgroup that holds its sessions.
const SESSIONS: &str = "kns-sessions";
/// How long a killed session's processes may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (cgroup2 in /proc/self/mountinfo)")]
    NoUnified,
    #[error("the agent's cgroup v2 path is not in /proc/self/cgroup")]
    NoOwnPath,
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

/// Where the unified hierarchy is mounted in this mount namespace, and the
/// cgroup path its mount root stands for.
fn unified_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|l| {
        // mountinfo(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE ...
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        Some((PathBuf::from(f.get(4)?), f.get(3)?.to_string()))
    })
}

/// The agent's cgroup v2 path from /proc/self/cgroup ("0::PATH").
fn own_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The unified hierarchy's mount point, and the directory of the agent's
/// own cgroup in it.
fn own_dir() -> Result<(PathBuf, PathBuf), CgroupError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
    let (mount, root) = unified_mount(&mountinfo).ok_or(CgroupError::NoUnified)?;
    let cgroup =
        fs::read_to_string("/proc/self/cgroup").map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
    let own = own_path(&cgroup).ok_or(CgroupError::NoOwnPath)?;
    // The mount shows the hierarchy from `root` down (a container's own
    // cgroup, usually "/" inside its cgroup namespace).
    let rel = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own);
    let dir = mount.join(rel.trim_start_matches('/'));
    Ok((mount, dir))
}

/// One agent's sessions' subtree, `kns-sessions-<agent PID>`, held with an
/// exclusive flock(2) for the agent's life: the lock is what tells a live
/// agent's subtree (two agents may share a cgroup, as a node service and a
/// debugging copy do) from one its agent left behind when it died.
#[derive(Debug)]
pub struct Sessions {
    dir: PathBuf,
    _lock: Flock<File>,
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
        let (mount, own) = own_dir()?;
        let ro = nix::sys::statvfs::statvfs(&mount)
            .map_err(|e| io_err("stat", &mount)(e.into()))?
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
        if ro {
            // Runtimes mount a container's cgroupfs read-only. The mount is
            // the agent's own (its mount namespace), so with CAP_SYS_ADMIN
            // it may make it writable for itself; the node's stays as is.
            let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND;
            nix::mount::mount(None::<&str>, &mount, None::<&str>, flags, None::<&str>)
                .map_err(|e| io_err("remount read-write", &mount)(e.into()))?;
            tracing::info!(mount = %mount.display(), "made the agent's own cgroupfs mount writable");
        }
        let mut left = Leftovers::default();
        for e in fs::read_dir(&own).map_err(io_err("list", &own))? {
            let e = e.map_err(io_err("list", &own))?;
            let name = e.file_name();
            if !name.to_string_lossy().starts_with(SESSIONS) || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // Held: a live agent's. Free: its agent died; end what it left.
            if let Some(_lock) = try_lock(&e.path())? {
                let (sessions, processes) = end_all(&e.path())?;
                left.sessions += sessions;
                left.processes += processes;
                fs::remove_dir(e.path()).map_err(io_err("remove", &e.path()))?;
            }
        }
        let dir = own.join(format!("{SESSIONS}-{}", std::process::id()));
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
        Ok((Sessions { dir, _lock: lock }, left))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty cgroup for session `id`.
    pub fn create(&self, id: u64) -> Result<SessionCgroup, CgroupError> {
        let dir = self.dir.join(format!("session-{id}"));
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        SessionCgroup::at(dir)
    }

    /// Removes the subtree at shutdown, so a stopped agent leaves nothing
    /// behind. Sessions told to end tear down on their own threads: give
    /// them `KILL_WAIT` to finish, then end what is still there.
    pub fn close(&self) {
        let start = Instant::now();
        while has_sessions(&self.dir) && start.elapsed() < KILL_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r =
            end_all(&self.dir).and_then(|_| fs::remove_dir(&self.dir).map_err(io_err("remove", &self.dir)));
        match r {
            Err(e) if e.is_gone() => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove the sessions' cgroup"),
            Ok(()) => {}
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
fn end_all(dir: &Path) -> Result<(usize, usize), CgroupError> {
    let mut sessions = 0;
    let mut procs = 0;
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let cg = SessionCgroup::at(e.path())?;
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
    /// Held open for clone3's `CLONE_INTO_CGROUP`.
    fd: OwnedFd,
}

impl SessionCgroup {
    fn at(dir: PathBuf) -> Result<SessionCgroup, CgroupError> {
        let fd = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(io_err("open", &dir))?;
        Ok(SessionCgroup { dir, fd: fd.into() })
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
        fs::remove_dir(&self.dir).map_err(io_err("remove", &self.dir))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_and_own_path() {
        let mi = "24 31 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            unified_mount(mi),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        assert_eq!(unified_mount("24 31 0:22 / /sys rw - sysfs sysfs rw\n"), None);
        let cg = "4:memory:/x\n0::/kubepods/pod1/abc\n";
        assert_eq!(own_path(cg), Some("/kubepods/pod1/abc"));
        assert_eq!(own_path("4:memory:/x\n"), None);
    }
}
