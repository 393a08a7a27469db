//! `kubectl ns ls node/NODE`: every namespace on the node, as lsns(8)
//! lists them, joined with the containers that live in each and the pods
//! that own them; the node's own namespaces marked.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::{ListResponse, Namespace};
use serde::Serialize;

use crate::report::findings::Owners;

/// One namespace on the node.
#[derive(Debug, Serialize)]
pub struct NsRow {
    pub kind: &'static str,
    pub inode: u64,
    pub device: u64,
    /// Processes in it.
    pub processes: u32,
    /// The lowest PID in it.
    pub pid: i32,
    /// The node reference's own namespace of this kind.
    pub host: bool,
    /// `namespace/pod/container` of the containers in it; a container no
    /// pod in the API owns is marked `(no pod in the API)`.
    pub containers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeInventory {
    pub node: String,
    pub runtime: String,
    pub namespaces: Vec<NsRow>,
}

/// Joins the agent's listing of `node` with the API's pods on it.
pub fn inventory(node: &str, list: &ListResponse, pods: &[Pod]) -> NodeInventory {
    let owners = Owners::of(pods);
    let mut members: HashMap<(i32, u64, u64), Vec<String>> = HashMap::new();
    for c in &list.containers {
        let mut name = format!("{}/{}/{}", c.pod_namespace, c.pod_name, c.name);
        if !owners.owns(c) {
            name.push_str(" (no pod in the API)");
        }
        for n in c.process.iter().flat_map(|p| &p.namespaces) {
            members
                .entry((n.kind, n.inode, n.device))
                .or_default()
                .push(name.clone());
        }
    }
    let node_ids = list.node.clone().unwrap_or_default().namespaces;
    let namespaces = Namespace::ALL
        .into_iter()
        .flat_map(|k| {
            list.namespaces
                .iter()
                .filter_map(|u| Some((u, u.id?)))
                .filter(move |(_, id)| id.kind == k as i32)
                .map(move |(u, id)| (k, u, id))
        })
        .map(|(k, u, id)| {
            let mut containers = members
                .remove(&(id.kind, id.inode, id.device))
                .unwrap_or_default();
            containers.sort();
            NsRow {
                kind: k.proc_name(),
                inode: id.inode,
                device: id.device,
                processes: u.processes,
                pid: u.pid,
                host: node_ids.contains(&id),
                containers,
            }
        })
        .collect();
    NodeInventory {
        node: node.to_owned(),
        runtime: list.runtime.clone(),
        namespaces,
    }
}

/// lsns's columns, with which node namespaces are the host's and the
/// containers in each.
pub fn table(inv: &NodeInventory) -> String {
    let mut s = format!(
        "NODE {}  {}\n\n{:<7} {:<12} {:>6} {:>8} {:<5} {}\n",
        inv.node, inv.runtime, "NS", "INODE", "PROCS", "PID", "HOST", "CONTAINERS"
    );
    for n in &inv.namespaces {
        let containers = if n.containers.is_empty() {
            "-".to_owned()
        } else {
            n.containers.join(", ")
        };
        s.push_str(&format!(
            "{:<7} {:<12} {:>6} {:>8} {:<5} {}\n",
            n.kind,
            n.inode,
            n.processes,
            n.pid,
            if n.host { "yes" } else { "" },
            containers
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kns_proto::agent::{ContainerInfo, NamespaceId, NamespaceUse, ProcessInfo};

    fn id(kind: Namespace, inode: u64) -> NamespaceId {
        NamespaceId {
            kind: kind as i32,
            inode,
            device: 4,
        }
    }

    #[test]
    fn namespaces_name_their_containers_and_mark_the_hosts() {
        let process = |ids: Vec<NamespaceId>| ProcessInfo {
            pid: 7,
            nspid: vec![7],
            namespaces: ids,
        };
        let list = ListResponse {
            node: Some(process(vec![id(Namespace::Net, 1)])),
            containers: vec![
                ContainerInfo {
                    id: "c1".into(),
                    name: "app".into(),
                    pod_name: "web".into(),
                    pod_namespace: "prod".into(),
                    process: Some(process(vec![id(Namespace::Net, 1)])),
                    ..Default::default()
                },
                ContainerInfo {
                    id: "c2".into(),
                    name: "x".into(),
                    pod_name: "stray".into(),
                    pod_namespace: "default".into(),
                    process: Some(process(vec![id(Namespace::Net, 9)])),
                    ..Default::default()
                },
            ],
            runtime: "containerd 1.6".into(),
            namespaces: [(1, 40, 1), (9, 1, 300)]
                .map(|(inode, processes, pid)| NamespaceUse {
                    id: Some(id(Namespace::Net, inode)),
                    processes,
                    pid,
                })
                .to_vec(),
        };
        let inv = inventory("n1", &list, &[crate::running_pod("prod", "web", "n1", "c1")]);
        assert_eq!(inv.namespaces.len(), 2);
        assert!(inv.namespaces[0].host);
        assert_eq!(inv.namespaces[0].containers, vec!["prod/web/app"]);
        assert!(!inv.namespaces[1].host);
        assert_eq!(
            inv.namespaces[1].containers,
            vec!["default/stray/x (no pod in the API)"]
        );
        let t = table(&inv);
        assert!(
            t.contains("net     1                40        1 yes   prod/web/app"),
            "{t}"
        );
    }
}
