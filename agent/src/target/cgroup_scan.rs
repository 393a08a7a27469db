//! Container IDs, and finding a container's process without a runtime: a
//! scan of /proc for the init process whose cgroup path names the ID
//! (every cgroup driver puts the full ID in it).

use std::collections::HashMap;

use crate::kernel::procfs;
use crate::target::cri::{ContainerPid, CriError};

/// The length of a full container ID (containerd, CRI-O and Docker alike):
/// a SHA-256 in hex.
pub const FULL_ID_LEN: usize = 64;

/// The shortest container ID prefix taken: shorter ones match too much to
/// be meant.
pub const MIN_ID_PREFIX: usize = 4;

/// Checks a container ID or prefix a client sent: hex digits only (so never
/// a path), between [`MIN_ID_PREFIX`] and [`FULL_ID_LEN`] of them.
pub fn check_id(id: &str) -> Result<(), String> {
    if !id.chars().all(|c| c.is_ascii_hexdigit()) || id.len() > FULL_ID_LEN {
        return Err(format!(
            "`{id}` is not a container ID: expected up to {FULL_ID_LEN} hex digits, as `crictl ps` shows"
        ));
    }
    if id.len() < MIN_ID_PREFIX {
        return Err(format!(
            "container ID prefix `{id}` is too short: give at least {MIN_ID_PREFIX} hex digits"
        ));
    }
    Ok(())
}

/// The init processes of containers found in /proc, oldest first: each
/// process whose cgroup names a container (`id_of` reads it for a PID) and
/// whose parent's does not (the parent is the runtime's shim).
fn init_processes(id_of: impl Fn(i32) -> Option<String>) -> Vec<(u64, i32, String)> {
    // Each process's cgroup is read once: a parent outside every container
    // (the shim) is simply absent from the map.
    let ids: HashMap<i32, String> = procfs::pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p, id_of(p)?)))
        .collect();
    let mut found: Vec<(u64, i32, String)> = ids
        .iter()
        .filter_map(|(&p, full)| {
            let st = procfs::stat(p).ok()?;
            (ids.get(&st.ppid) != Some(full)).then(|| (st.start_time, p, full.clone()))
        })
        .collect();
    found.sort();
    found
}

/// Finds a container's init process without a runtime: the process whose
/// cgroup names the container ID and whose parent's does not. Among
/// several, the oldest. A prefix that names more than one container is an
/// error listing them.
pub fn pid_from_cgroups(id: &str) -> Result<Option<ContainerPid>, CriError> {
    let found = init_processes(|p| procfs::cgroup(p).ok().and_then(|c| full_id_in(&c, id)));
    let mut ids: Vec<String> = found.iter().map(|(_, _, f)| f.clone()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() > 1 {
        return Err(CriError::Ambiguous {
            id: id.to_owned(),
            candidates: ids.iter().map(|f| f[..12].to_owned()).collect(),
        });
    }
    Ok(found.into_iter().next().map(|(_, pid, id)| ContainerPid {
        id,
        pid,
        identity: None,
        pod: None,
    }))
}

/// The init process of every container on the node, by full ID, from one
/// pass over /proc: what `pid_from_cgroups` finds for one ID, for all.
pub fn init_pids() -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for (_, pid, id) in init_processes(|p| procfs::cgroup(p).ok().and_then(|c| first_full_id(&c))) {
        // Oldest first: the first process seen is the container's init.
        out.entry(id).or_insert(pid);
    }
    out
}

/// Whether a /proc/PID/cgroup text names the container: some path component
/// is a full container ID starting with `id`, bare (cgroupfs driver) or in a
/// runtime's scope (systemd driver: `cri-containerd-ID.scope`,
/// `crio-ID.scope`, `docker-ID.scope`).
pub fn cgroup_names(cgroup: &str, id: &str) -> bool {
    full_id_in(cgroup, id).is_some()
}

pub(super) fn full_id_in(cgroup: &str, id: &str) -> Option<String> {
    first_full_id(cgroup).filter(|full| !id.is_empty() && full.starts_with(id))
}

/// The container a /proc/PID/cgroup text places the process in: the first
/// (outermost) full container ID in its paths. Only that one: a container
/// that may make cgroups under its own (a writable cgroupfs) could name
/// one after another container, and must not pass for it.
pub(super) fn first_full_id(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|p| p.split('/'))
        .map(|c| {
            let c = c.strip_suffix(".scope").unwrap_or(c);
            c.rsplit_once('-').map_or(c, |(_, tail)| tail)
        })
        // Whole IDs only: a pod's cgroup (pod<UID>) ends in a UID group of
        // 12 hex digits, which a short prefix would otherwise match.
        .find(|c| c.len() == FULL_ID_LEN && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .map(str::to_owned)
}
