//! `kubectl ns status`: which nodes run an agent, its version and
//! readiness, and which nodes lack one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::cli::StatusArgs;
use crate::cluster;
use crate::exit::{Failure, api_failure};
use crate::resolve::{AGENT_LABEL, agent_version, pod_ready};

/// One row: a node and its agent, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub node: String,
    pub agent: Option<(String, String, bool)>,
}

/// Matches nodes with agent pods: (pod name, image tag, ready).
pub fn rows(nodes: &[Node], agents: &[Pod]) -> Vec<Row> {
    let mut by_node: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
    for p in agents {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        by_node.insert(
            node,
            (
                p.metadata.name.clone().unwrap_or_default(),
                agent_version(p),
                pod_ready(p),
            ),
        );
    }
    nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .map(|node| Row {
            agent: by_node.get(&node).cloned(),
            node,
        })
        .collect()
}

pub async fn run(args: StatusArgs) -> Result<u8, Failure> {
    let r = cluster::resolver(&args.kube).await?;
    let nodes = Api::<Node>::all(r.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("cannot list nodes", e))?;
    let agents = Api::<Pod>::namespaced(r.client.clone(), &r.agent_namespace)
        .list(&ListParams::default().labels(AGENT_LABEL))
        .await
        .map_err(|e| {
            api_failure(
                &format!("cannot list agents in namespace {}", r.agent_namespace),
                e,
            )
        })?;
    let rows = rows(&nodes.items, &agents.items);
    println!("{:<24} {:<32} {:<10} READY", "NODE", "AGENT", "VERSION");
    let mut missing = 0;
    for row in &rows {
        match &row.agent {
            Some((pod, version, ready)) => {
                println!(
                    "{:<24} {:<32} {:<10} {}",
                    row.node,
                    pod,
                    version,
                    if *ready { "yes" } else { "no" }
                )
            }
            None => {
                missing += 1;
                println!("{:<24} {:<32} {:<10} no agent", row.node, "-", "-");
            }
        }
    }
    if missing > 0 {
        eprintln!(
            "{missing} node(s) have no agent: `kubectl ns install` (check the DaemonSet's tolerations and node selector)"
        );
    }
    let plugin = env!("CARGO_PKG_VERSION");
    let skewed = rows
        .iter()
        .filter(|r| r.agent.as_ref().is_some_and(|(_, v, _)| v != plugin))
        .count();
    if skewed > 0 {
        eprintln!("warning: {skewed} agent(s) run another version than this kubectl-ns ({plugin})");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use kube::api::ObjectMeta;

    #[test]
    fn nodes_without_an_agent_are_listed() {
        let node = |n: &str| Node {
            metadata: ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let agent = Pod {
            metadata: ObjectMeta {
                name: Some("kubectl-ns-agent-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("a".into()),
                containers: vec![Container {
                    image: Some("ghcr.io/kubectl-ns/kubectl-ns-agent:0.1.0".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let r = rows(&[node("a"), node("b")], &[agent]);
        assert_eq!(
            r[0].agent,
            Some(("kubectl-ns-agent-1".into(), "0.1.0".into(), false))
        );
        assert_eq!(
            r[1],
            Row {
                node: "b".into(),
                agent: None
            }
        );
    }
}
