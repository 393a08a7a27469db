//! Reading what the agent needs from /proc.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use kns_proto::agent::{NamespaceId, ProcessInfo};

use crate::kernel::ns::{KernelNs, NsId, NsKind};

/// Errors reading a process's /proc entries.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {pid} does not exist (it may have exited)")]
    NoSuchProcess { pid: i32 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {path}")]
    Parse { path: PathBuf },
}

fn read(pid: i32, file: &str) -> Result<String, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    std::fs::read_to_string(&path).map_err(|source| map_err(pid, path, source))
}

pub(crate) fn map_err(pid: i32, path: PathBuf, source: io::Error) -> ProcError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
        ProcError::NoSuchProcess { pid }
    } else {
        ProcError::Read { path, source }
    }
}

/// Checks that the process `pidfd` holds still runs, so that what was read
/// of it by its PID, `pid`, was its own: once it has exited, the PID may
/// name another.
pub fn still_runs(pid: i32, pidfd: &std::os::fd::OwnedFd) -> Result<(), ProcError> {
    match crate::sys::pidfd_exited(pidfd) {
        Ok(false) => Ok(()),
        Ok(true) => Err(ProcError::NoSuchProcess { pid }),
        Err(source) => Err(ProcError::Read {
            path: format!("a pidfd of process {pid}").into(),
            source,
        }),
    }
}

/// What the agent reads from /proc/PID/stat, in one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (R, S, Z, …).
    pub state: char,
    pub ppid: i32,
    /// Clock ticks since boot: with the PID, it names one process for the
    /// whole uptime.
    pub start_time: u64,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Reads /proc/PID/stat. Fields are counted as in proc_pid_stat(5); the
/// command name (field 2) may hold spaces and parentheses, so they are
/// counted from the last ')'.
pub fn stat(pid: i32) -> Result<Stat, ProcError> {
    let s = read(pid, "stat")?;
    let parse = || {
        let rest: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
        let field = |n: usize| rest.get(n - 3).copied();
        Some(Stat {
            state: field(3)?.parse().ok()?,
            ppid: field(4)?.parse().ok()?,
            start_time: field(22)?.parse().ok()?,
        })
    };
    parse().ok_or(ProcError::Parse {
        path: format!("/proc/{pid}/stat").into(),
    })
}

/// NSpid: the PID in each nested PID namespace, outermost first.
pub fn nspid(pid: i32) -> Result<Vec<i32>, ProcError> {
    let s = read(pid, "status")?;
    Ok(s.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_else(|| vec![pid]))
}

/// The identity of one of the process's namespaces; `None` when the kernel
/// has no such kind (time namespaces before 5.6).
pub fn ns_id(pid: i32, kind: NsKind) -> Result<Option<NsId>, ProcError> {
    let path = kind.path(pid);
    match std::fs::metadata(&path) {
        Ok(m) => Ok(Some(NsId {
            inode: m.ino(),
            device: m.dev(),
        })),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                && std::fs::exists(format!("/proc/{pid}")).unwrap_or(false) =>
        {
            Ok(None)
        }
        Err(e) => Err(map_err(pid, path, e)),
    }
}

/// Whether the calling process already is in `pid`'s namespace of `kind`.
pub fn shares_ns_with_self(pid: i32, kind: NsKind) -> Result<bool, ProcError> {
    Ok(ns_id(pid, kind)? == ns_id(std::process::id() as i32, kind)?)
}

pub fn cgroup(pid: i32) -> Result<String, ProcError> {
    read(pid, "cgroup")
}

pub fn uid_map(pid: i32) -> Result<String, ProcError> {
    read(pid, "uid_map")
}

pub fn gid_map(pid: i32) -> Result<String, ProcError> {
    read(pid, "gid_map")
}

/// Time namespace offsets; empty where the kernel has none.
pub fn timens_offsets(pid: i32) -> Result<String, ProcError> {
    match read(pid, "timens_offsets") {
        Err(ProcError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

/// All numeric entries of /proc.
pub fn pids() -> io::Result<Vec<i32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The pid, its PID in its own namespace, and its namespaces' identities,
/// as the Inspect and List RPCs report a process.
pub fn process_info(pid: i32) -> Result<ProcessInfo, ProcError> {
    let mut namespaces = Vec::new();
    for k in NsKind::ALL {
        if let Some(id) = ns_id(pid, k)? {
            namespaces.push(NamespaceId {
                kind: k as i32,
                inode: id.inode,
                device: id.device,
            });
        }
    }
    Ok(ProcessInfo {
        pid,
        nspid: nspid(pid)?,
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let st = stat(me).unwrap();
        assert!(st.start_time > 0);
        assert_eq!(st.ppid, nix::unistd::getppid().as_raw());
        assert!(matches!(st.state, 'R' | 'S'));
        assert_eq!(nspid(me).unwrap().last().copied(), Some(me));
        assert!(ns_id(me, NsKind::Net).unwrap().is_some());
        assert!(shares_ns_with_self(me, NsKind::Mnt).unwrap());
    }

    #[test]
    fn missing_process_is_named() {
        let err = stat(i32::MAX).unwrap_err();
        assert!(matches!(err, ProcError::NoSuchProcess { pid } if pid == i32::MAX));
        assert!(err.to_string().contains("does not exist"));
    }
}
