//! The sessions' memory limit, all sessions together apart from the
//! agent: cgroup v2's memory controller on the sessions' own subtree where
//! the agent's cgroup has it, else a parallel tree in cgroup v1's memory
//! hierarchy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::kernel::cgroupfs::{Hierarchy, mount_of};

use super::{AGENT, CgroupError, SESSIONS, Sessions, io_err, own_cgroup, write};

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

/// Removes a cgroup and the (empty) cgroups below it.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir).map_err(io_err("remove", dir))
}

/// Where the sessions' memory limit is enforced.
#[derive(Debug)]
pub(super) struct MemoryTree {
    /// Bytes, for all sessions together.
    pub(super) max: u64,
    /// cgroup v1: a tree parallel to the sessions' in the memory hierarchy,
    /// `kns-sessions-PID/session-N`. `None` on cgroup v2, where the
    /// controller is enabled on the sessions' own subtree.
    pub(super) v1: Option<PathBuf>,
}

impl Sessions {
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
}
