//! Namespace kinds, sets of them, and their identities.
//!
//! The kinds themselves, their order and their names are the proto's
//! [`kns_proto::agent::Namespace`], shared with the plugin; this module adds
//! what only the agent needs: the kernel's flags and /proc paths.

use std::fmt;
use std::path::PathBuf;

pub use kns_proto::agent::Namespace as NsKind;

/// The kernel's side of a namespace kind.
pub trait KernelNs {
    /// The `CLONE_NEW*` flag setns(2) takes for this kind.
    fn clone_flag(self) -> libc::c_int;
    /// /proc/PID/ns/KIND.
    fn path(self, pid: i32) -> PathBuf;
}

impl KernelNs for NsKind {
    fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::Mnt => libc::CLONE_NEWNS,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => libc::CLONE_NEWTIME,
            NsKind::Unspecified => 0,
        }
    }

    fn path(self, pid: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/ns/{}", self.proc_name()))
    }
}

/// The kind a request names; `None` for unknown values and the unspecified
/// one, which a request must not use.
pub fn kind_from_proto(v: i32) -> Option<NsKind> {
    NsKind::try_from(v).ok().filter(|k| *k != NsKind::Unspecified)
}

/// A set of namespace kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsSet(u16);

impl NsSet {
    /// Every kind.
    pub fn all() -> NsSet {
        NsKind::ALL.into_iter().collect()
    }
    pub fn insert(&mut self, k: NsKind) {
        self.0 |= 1 << k as u16;
    }
    pub fn remove(&mut self, k: NsKind) {
        self.0 &= !(1 << k as u16);
    }
    pub fn contains(self, k: NsKind) -> bool {
        self.0 & (1 << k as u16) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The kinds in `self` that are not in `other`.
    pub fn without(self, other: NsSet) -> NsSet {
        NsSet(self.0 & !other.0)
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

impl From<&kns_proto::agent::NamespaceId> for NsId {
    fn from(n: &kns_proto::agent::NamespaceId) -> NsId {
        NsId {
            inode: n.inode,
            device: n.device,
        }
    }
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
        assert_eq!(NsSet::all().without(s).iter().count(), 6);
        assert!(!NsSet::all().without(s).contains(NsKind::Net));
        for k in NsKind::ALL {
            assert_eq!(kind_from_proto(k as i32), Some(k));
            assert_ne!(k.clone_flag(), 0);
        }
        assert_eq!(kind_from_proto(0), None);
        assert_eq!(kind_from_proto(99), None);
    }
}
