//! One session's cgroup: made empty, handed to clone3, killed and removed
//! with the session.

use std::fs::{self, File};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memory::MemoryTree;
use super::{CgroupError, KILL_WAIT, Sessions, io_err};

impl Sessions {
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
                let tasks = dir.join("tasks");
                let fd = File::options()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&tasks)
                    .map_err(io_err("open", &tasks))?;
                Some(SessionMemory {
                    max: *max,
                    events: dir.join("memory.oom_control"),
                    v1: Some((dir, fd.into())),
                })
            }
        };
        Ok(cg)
    }
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
    /// cgroup v1: the session's memory cgroup, and its `tasks`, which the
    /// tool's first process writes itself into before anything of the tool
    /// runs (clone3 places it only in the unified hierarchy). `tasks`, not
    /// cgroup.procs: that process is single-threaded, so moving its one
    /// thread moves all of it, and the kernel moves a thread that writes
    /// itself without write-locking the forks and exits of the whole
    /// machine (`cgroup_threadgroup_rwsem`), whose wait for an RCU grace
    /// period made a whole-process move cost ~10 ms.
    v1: Option<(PathBuf, OwnedFd)>,
}

impl SessionCgroup {
    pub(super) fn at(dir: PathBuf, mount: &Arc<OwnedFd>) -> Result<SessionCgroup, CgroupError> {
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

    /// cgroup v1: the `tasks` the tool's first process writes "0" (itself)
    /// into.
    pub fn memory_tasks(&self) -> Option<BorrowedFd<'_>> {
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
    pub(super) fn kill_and_remove(&self) -> Result<(), CgroupError> {
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
