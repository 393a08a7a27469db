//! The node's cgroup layout as the kernel shows it: which hierarchies are
//! mounted where (/proc/self/mountinfo), a process's path in each
//! (/proc/PID/cgroup), and so which layout the node has (v2, v1 hybrid,
//! v1). Pure parsing; [`crate::enter::cgroup`] acts on it.

use std::path::PathBuf;

/// A cgroup hierarchy the agent uses: the unified one for its sessions,
/// and on cgroup v1 nodes the memory controller's for their limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    Unified,
    V1Memory,
}

impl std::fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hierarchy::Unified => "cgroup v2 (unified)",
            Hierarchy::V1Memory => "cgroup v1 memory",
        })
    }
}

/// Where hierarchy `h` is mounted in this mount namespace, and the cgroup
/// path its mount root stands for.
pub(crate) fn mount_of(mountinfo: &str, h: Hierarchy) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|l| {
        // mountinfo(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let (fstype, superopts) = (post.next()?, post.nth(1).unwrap_or(""));
        let found = match h {
            Hierarchy::Unified => fstype == "cgroup2",
            Hierarchy::V1Memory => fstype == "cgroup" && superopts.split(',').any(|o| o == "memory"),
        };
        if !found {
            return None;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        Some((PathBuf::from(f.get(4)?), f.get(3)?.to_string()))
    })
}

/// The agent's path in hierarchy `h` from /proc/self/cgroup
/// ("0::PATH" for the unified one, "N:CONTROLLERS:PATH" for v1).
pub(crate) fn own_path(cgroup: &str, h: Hierarchy) -> Option<&str> {
    cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let found = match h {
            Hierarchy::Unified => id == "0" && controllers.is_empty(),
            Hierarchy::V1Memory => controllers.split(',').any(|c| c == "memory"),
        };
        found.then_some(path)
    })
}

/// The cgroup layouts a node can have, which the agent supports alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 only, at /sys/fs/cgroup.
    Unified,
    /// The v1 controllers, and a controller-less cgroup2 beside them
    /// (/sys/fs/cgroup/unified).
    Hybrid,
    /// The v1 controllers only.
    Legacy,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Unified => "cgroup v2",
            Layout::Hybrid => "cgroup v1 hybrid",
            Layout::Legacy => "cgroup v1",
        })
    }
}

/// The layout a mount table (a node process's mountinfo) shows; `None`
/// when it has no cgroup hierarchy at all.
pub fn layout(mountinfo: &str) -> Option<Layout> {
    let v1 = mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .any(|(_, post)| post.split_whitespace().next() == Some("cgroup"));
    match (mount_of(mountinfo, Hierarchy::Unified).is_some(), v1) {
        (true, false) => Some(Layout::Unified),
        (true, true) => Some(Layout::Hybrid),
        (false, true) => Some(Layout::Legacy),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_hierarchys_mount_and_own_path() {
        let mi = "24 31 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro\n\
                  35 31 0:32 /kubepods/pod1/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mount_of(mi, Hierarchy::Unified),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        assert_eq!(
            mount_of(mi, Hierarchy::V1Memory),
            Some((
                PathBuf::from("/sys/fs/cgroup/memory"),
                "/kubepods/pod1/abc".into()
            ))
        );
        assert_eq!(
            mount_of("24 31 0:22 / /sys rw - sysfs sysfs rw\n", Hierarchy::Unified),
            None
        );
        let cg = "4:memory:/kubepods/pod1/abc\n3:cpu,cpuacct:/y\n1:name=systemd:/z\n0::/kubepods/pod1/abc\n";
        assert_eq!(own_path(cg, Hierarchy::Unified), Some("/kubepods/pod1/abc"));
        assert_eq!(own_path(cg, Hierarchy::V1Memory), Some("/kubepods/pod1/abc"));
        assert_eq!(own_path("4:memory:/x\n", Hierarchy::Unified), None);
        assert_eq!(own_path("0::/x\n", Hierarchy::V1Memory), None);
    }

    /// Recorded from an ordinary container on a real cgroup v1 hybrid node
    /// (kubelet, containerd 1.6.20, runc 1.1.5): no cgroup2 is mounted in
    /// it, yet it is in the unified hierarchy at its full path, which the
    /// agent's own mount of that hierarchy reaches.
    #[test]
    fn a_container_on_a_hybrid_node_has_no_cgroup2_mount_but_a_unified_path() {
        let mountinfo =
            include_str!("../../../tests/fixtures/kube-v1.32/container-mountinfo-cgroup-v1-hybrid.txt");
        let cgroup = include_str!("../../../tests/fixtures/kube-v1.32/container-cgroup-v1-hybrid.txt");
        let id = "/kubepods/besteffort/poda7253d5d-3c96-464c-b8dd-44303d1761c2/\
                  5ef890032b5fc23f1de6f7b52cb4d396a2cb1c480a70882c3ce65540eeb89726";
        assert_eq!(mount_of(mountinfo, Hierarchy::Unified), None);
        assert_eq!(own_path(cgroup, Hierarchy::Unified), Some(id));
        assert_eq!(
            mount_of(mountinfo, Hierarchy::V1Memory),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), id.to_owned()))
        );
        // So the container's own mounts cannot tell the node's layout: the
        // agent reads its node reference process's.
        assert_eq!(layout(mountinfo), Some(Layout::Legacy));
    }

    #[test]
    fn the_layout_is_told_by_what_is_mounted() {
        let v1 = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let unified = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let v2 = "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(layout(&format!("{v1}{unified}")), Some(Layout::Hybrid));
        assert_eq!(layout(v2), Some(Layout::Unified));
        assert_eq!(layout(v1), Some(Layout::Legacy));
        assert_eq!(layout("24 31 0:22 / /sys rw - sysfs sysfs rw\n"), None);
    }
}
