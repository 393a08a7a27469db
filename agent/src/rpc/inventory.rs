//! The node's inventory, for `kubectl ns audit`: every running container
//! with its namespace identities and the node reference's, from one CRI
//! listing and one pass over /proc instead of a round trip per container.

use std::collections::HashMap;
use std::sync::Arc;

use kns_proto::agent::{ContainerInfo, ListResponse, NamespaceId, NamespaceUse, ProcessInfo};

use crate::kernel::ns::NsKind;
use crate::kernel::procfs::{self, ProcError};
use crate::status::AgentError;
use crate::target::cgroup_scan;
use crate::target::cri::{self, Cri, Listed};
use crate::target::resolve::{ResolveError, Resolver};

/// How many ContainerStatus calls may be in flight for containers the
/// /proc scan did not place (a runtime that keeps no cgroup per container).
const STATUS_CONCURRENCY: usize = 16;

/// Lists the node's running containers and reads their namespaces; with
/// `namespaces`, also every namespace on the node (see [`namespaces`]).
pub async fn list(
    resolver: &Resolver,
    node: &ProcessInfo,
    namespaces: bool,
) -> Result<ListResponse, AgentError> {
    let cri = resolver.cri().await.map_err(ResolveError::from)?;
    let listed = cri.list_running().await.map_err(ResolveError::from)?;
    // The cgroup scan names every container's init process at once; the
    // runtime is asked only about the ones it missed.
    let mut pids = tokio::task::spawn_blocking(cgroup_scan::init_pids)
        .await
        .map_err(|e| AgentError::Internal(format!("the /proc scan failed: {e}")))?;
    let mut errors = HashMap::new();
    for (id, found) in statuses(&cri, listed.iter().filter(|c| !pids.contains_key(&c.id))).await {
        match found {
            Ok(pid) => {
                pids.insert(id, pid);
            }
            Err(e) => {
                errors.insert(id, e.to_string());
            }
        }
    }
    let runtime = cri.runtime.clone();
    let node = node.clone();
    tokio::task::spawn_blocking(move || {
        let containers = listed
            .into_iter()
            .map(|c| {
                let found = match (pids.get(&c.id), errors.remove(&c.id)) {
                    (Some(pid), _) => read(*pid, &c.id).map_err(|e| e.to_string()),
                    (None, Some(e)) => Err(e),
                    (None, None) => Err("no process found for it".to_owned()),
                };
                info(c, found)
            })
            .collect();
        Ok(ListResponse {
            node: Some(node),
            containers,
            runtime,
            namespaces: if namespaces {
                self::namespaces()
            } else {
                Vec::new()
            },
        })
    })
    .await
    .map_err(|e| AgentError::Internal(format!("reading /proc failed: {e}")))?
}

/// The host PIDs of `containers` from the runtime's verbose status, a few
/// calls at a time.
async fn statuses<'a>(
    cri: &Cri,
    containers: impl Iterator<Item = &'a Listed>,
) -> Vec<(String, Result<i32, cri::CriError>)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(STATUS_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for c in containers {
        let (cri, id, limit) = (cri.clone(), c.id.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let pid = cri.container_pid(&id).await.map(|p| p.pid);
            (id, pid)
        });
    }
    set.join_all().await
}

/// The process's namespaces, checked afterwards to still belong to the
/// container: a PID that exited and was reused in between would otherwise
/// lend its namespaces to the container.
fn read(pid: i32, id: &str) -> Result<kns_proto::agent::ProcessInfo, ProcError> {
    let info = procfs::process_info(pid)?;
    if !cgroup_scan::cgroup_names(&procfs::cgroup(pid)?, id) {
        return Err(ProcError::NoSuchProcess { pid });
    }
    Ok(info)
}

/// Every namespace some process is in, with how many processes and the
/// lowest PID, as lsns(8) lists them. Processes that exit meanwhile are
/// skipped.
pub fn namespaces() -> Vec<NamespaceUse> {
    let mut found: HashMap<(NsKind, u64, u64), (u32, i32)> = HashMap::new();
    for pid in procfs::pids().unwrap_or_default() {
        for kind in NsKind::ALL {
            if let Ok(Some(id)) = procfs::ns_id(pid, kind) {
                let (n, lowest) = found.entry((kind, id.inode, id.device)).or_insert((0, pid));
                *n += 1;
                *lowest = (*lowest).min(pid);
            }
        }
    }
    let mut out: Vec<NamespaceUse> = found
        .into_iter()
        .map(|((kind, inode, device), (processes, pid))| NamespaceUse {
            id: Some(NamespaceId {
                kind: kind as i32,
                inode,
                device,
            }),
            processes,
            pid,
        })
        .collect();
    out.sort_by_key(|n| n.id.map(|i| (i.kind, i.inode)));
    out
}

fn info(c: Listed, found: Result<kns_proto::agent::ProcessInfo, String>) -> ContainerInfo {
    let (process, error) = match found {
        Ok(p) => (Some(p), String::new()),
        Err(e) => (None, e),
    };
    ContainerInfo {
        id: c.id,
        sandbox_id: c.sandbox_id,
        name: c.name,
        pod_name: c.pod_name,
        pod_namespace: c.pod_namespace,
        pod_uid: c.pod_uid,
        process,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_count_this_process() {
        let me = std::process::id() as i32;
        let net = procfs::ns_id(me, NsKind::Net).unwrap().unwrap();
        let all = namespaces();
        let mine = all
            .iter()
            .find(|n| {
                n.id == Some(NamespaceId {
                    kind: NsKind::Net as i32,
                    inode: net.inode,
                    device: net.device,
                })
            })
            .expect("this process's network namespace is listed");
        assert!(mine.processes >= 1);
        assert!(mine.pid <= me);
    }
}
