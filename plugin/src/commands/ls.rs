//! `kubectl ns ls`: a target's namespace identities next to the node's.

use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::{InspectRequest, InspectResponse, Namespace, ProcessInfo};
use serde::Serialize;

use crate::cli::{LsArgs, Output};
use crate::exit::Failure;
use crate::transport;

#[derive(Debug, Serialize)]
struct NsId {
    inode: u64,
    device: u64,
}

#[derive(Debug, Serialize)]
struct NsRow {
    kind: &'static str,
    target: Option<NsId>,
    node: Option<NsId>,
    /// Whether the target shares this namespace with the node.
    shared_with_node: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    container_id: String,
    pid: i32,
    nspid: Vec<i32>,
    node_pid: i32,
    namespaces: Vec<NsRow>,
    uid_map: String,
    gid_map: String,
    cgroup: String,
    timens_offsets: String,
}

fn kind_name(k: Namespace) -> &'static str {
    match k {
        Namespace::Net => "net",
        Namespace::Pid => "pid",
        Namespace::Mnt => "mnt",
        Namespace::Uts => "uts",
        Namespace::Ipc => "ipc",
        Namespace::User => "user",
        Namespace::Cgroup => "cgroup",
        Namespace::Time => "time",
        Namespace::Unspecified => "?",
    }
}

fn find(p: &ProcessInfo, k: Namespace) -> Option<NsId> {
    p.namespaces.iter().find(|n| n.kind == k as i32).map(|n| NsId {
        inode: n.inode,
        device: n.device,
    })
}

fn report(target: String, r: InspectResponse) -> Report {
    let t = r.target.unwrap_or_default();
    let n = r.node.unwrap_or_default();
    let namespaces = [
        Namespace::Mnt,
        Namespace::Uts,
        Namespace::Ipc,
        Namespace::Net,
        Namespace::Pid,
        Namespace::User,
        Namespace::Cgroup,
        Namespace::Time,
    ]
    .into_iter()
    .map(|k| {
        let (target, node) = (find(&t, k), find(&n, k));
        let shared_with_node =
            matches!((&target, &node), (Some(a), Some(b)) if a.inode == b.inode && a.device == b.device);
        NsRow {
            kind: kind_name(k),
            target,
            node,
            shared_with_node,
        }
    })
    .filter(|r| r.target.is_some() || r.node.is_some())
    .collect();
    Report {
        target,
        container_id: r.container_id,
        pid: t.pid,
        nspid: t.nspid,
        node_pid: n.pid,
        namespaces,
        uid_map: r.uid_map,
        gid_map: r.gid_map,
        cgroup: r.cgroup,
        timens_offsets: r.timens_offsets,
    }
}

fn table(r: &Report) -> String {
    let ino = |i: &Option<NsId>| i.as_ref().map_or("-".to_owned(), |i| i.inode.to_string());
    let nspid: Vec<String> = r.nspid.iter().map(i32::to_string).collect();
    let mut s = format!("TARGET {}  PID {}  NSpid {}", r.target, r.pid, nspid.join(" "));
    if !r.container_id.is_empty() {
        s.push_str(&format!("  container {}", r.container_id));
    }
    s.push_str(&format!(
        "\n\n{:<8} {:<12} {:<12} {}\n",
        "NS", "TARGET", "NODE", "SHARED"
    ));
    for row in &r.namespaces {
        let verdict = if row.shared_with_node { "host" } else { "private" };
        s.push_str(&format!(
            "{:<8} {:<12} {:<12} {verdict}\n",
            row.kind,
            ino(&row.target),
            ino(&row.node)
        ));
    }
    let one_line = |v: &str| v.split_whitespace().collect::<Vec<_>>().join(" ");
    s.push_str(&format!(
        "\nuid_map: {}\ngid_map: {}\n",
        one_line(&r.uid_map),
        one_line(&r.gid_map)
    ));
    s
}

pub async fn run(args: LsArgs) -> Result<u8, Failure> {
    let mut client = AgentClient::new(transport::connect(&args.agent.agent).await?);
    let resp = client
        .inspect(InspectRequest {
            target: Some(args.target.to_proto()),
        })
        .await
        .map_err(|s| transport::status_failure(&s))?
        .into_inner();
    let target = match &args.target {
        crate::target::DirectTarget::Pid(p) => format!("pid/{p}"),
        crate::target::DirectTarget::Container(c) => format!("container/{c}"),
        crate::target::DirectTarget::Node => "node".into(),
    };
    let r = report(target, resp);
    let text = match args.output {
        Output::Table => table(&r),
        Output::Json => serde_json::to_string_pretty(&r).map_err(|e| Failure::own(e.to_string()))? + "\n",
        Output::Yaml => serde_yaml::to_string(&r).map_err(|e| Failure::own(e.to_string()))?,
    };
    print!("{text}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kns_proto::agent::NamespaceId;

    fn info(pid: i32, ids: &[(Namespace, u64)]) -> ProcessInfo {
        ProcessInfo {
            pid,
            nspid: vec![pid],
            namespaces: ids
                .iter()
                .map(|(k, i)| NamespaceId {
                    kind: *k as i32,
                    inode: *i,
                    device: 4,
                })
                .collect(),
        }
    }

    #[test]
    fn verdict_compares_inode_and_device() {
        let r = report(
            "pid/7".into(),
            InspectResponse {
                target: Some(info(7, &[(Namespace::Net, 100), (Namespace::Uts, 5)])),
                node: Some(info(1, &[(Namespace::Net, 1), (Namespace::Uts, 5)])),
                ..Default::default()
            },
        );
        let net = r.namespaces.iter().find(|n| n.kind == "net").unwrap();
        let uts = r.namespaces.iter().find(|n| n.kind == "uts").unwrap();
        assert!(!net.shared_with_node);
        assert!(uts.shared_with_node);
        let t = table(&r);
        assert!(t.contains("net      100          1            private"), "{t}");
        assert!(t.contains("uts      5            5            host"), "{t}");
    }
}
