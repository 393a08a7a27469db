//! Namespace kinds and their identities.

use std::fmt;
use std::path::PathBuf;

use kns_proto::agent::Namespace as PbNamespace;

/// A kind of Linux namespace, in the order nsenter(1) lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsKind {
    Mnt,
    Uts,
    Ipc,
    Net,
    Pid,
    User,
    Cgroup,
    Time,
}

impl NsKind {
    pub const ALL: [NsKind; 8] = [
        NsKind::Mnt,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::Net,
        NsKind::Pid,
        NsKind::User,
        NsKind::Cgroup,
        NsKind::Time,
    ];

    /// The file name under /proc/PID/ns.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Mnt => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    /// The `CLONE_NEW*` flag setns(2) takes for this kind.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::Mnt => libc::CLONE_NEWNS,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => libc::CLONE_NEWTIME,
        }
    }

    pub fn path(self, pid: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/ns/{}", self.proc_name()))
    }

    pub fn from_proto(v: i32) -> Option<NsKind> {
        Some(match PbNamespace::try_from(v).ok()? {
            PbNamespace::Unspecified => return None,
            PbNamespace::Net => NsKind::Net,
            PbNamespace::Pid => NsKind::Pid,
            PbNamespace::Mnt => NsKind::Mnt,
            PbNamespace::Uts => NsKind::Uts,
            PbNamespace::Ipc => NsKind::Ipc,
            PbNamespace::User => NsKind::User,
            PbNamespace::Cgroup => NsKind::Cgroup,
            PbNamespace::Time => NsKind::Time,
        })
    }

    pub fn to_proto(self) -> PbNamespace {
        match self {
            NsKind::Net => PbNamespace::Net,
            NsKind::Pid => PbNamespace::Pid,
            NsKind::Mnt => PbNamespace::Mnt,
            NsKind::Uts => PbNamespace::Uts,
            NsKind::Ipc => PbNamespace::Ipc,
            NsKind::User => PbNamespace::User,
            NsKind::Cgroup => PbNamespace::Cgroup,
            NsKind::Time => PbNamespace::Time,
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

/// A set of namespace kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsSet(u8);

impl NsSet {
    pub fn insert(&mut self, k: NsKind) {
        self.0 |= 1 << k as u8;
    }
    pub fn remove(&mut self, k: NsKind) {
        self.0 &= !(1 << k as u8);
    }
    pub fn contains(self, k: NsKind) -> bool {
        self.0 & (1 << k as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = NsKind> {
        NsKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
    /// The `CLONE_NEW*` mask for setns(2) on a pidfd.
    pub fn clone_mask(self) -> libc::c_int {
        self.iter().fold(0, |m, k| m | k.clone_flag())
    }
}

impl FromIterator<NsKind> for NsSet {
    fn from_iter<I: IntoIterator<Item = NsKind>>(iter: I) -> Self {
        let mut s = NsSet::default();
        for k in iter {
            s.insert(k);
        }
        s
    }
}

impl fmt::Display for NsSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(NsKind::proc_name).collect();
        f.write_str(&names.join(","))
    }
}

/// A namespace's identity: the nsfs inode and device of /proc/PID/ns/KIND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub inode: u64,
    pub device: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_round_trips_and_builds_mask() {
        let s: NsSet = [NsKind::Net, NsKind::Pid].into_iter().collect();
        assert!(s.contains(NsKind::Net) && s.contains(NsKind::Pid));
        assert!(!s.contains(NsKind::Mnt));
        assert_eq!(s.clone_mask(), libc::CLONE_NEWNET | libc::CLONE_NEWPID);
        assert_eq!(s.to_string(), "net,pid");
        for k in NsKind::ALL {
            assert_eq!(NsKind::from_proto(k.to_proto() as i32), Some(k));
        }
        assert_eq!(NsKind::from_proto(0), None);
    }
}
