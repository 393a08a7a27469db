//! Asking many nodes' agents at once: a bounded number of calls in flight,
//! each with its own deadline, so one slow or missing node is reported and
//! never holds up the others.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tonic::transport::Channel;

use crate::exit::{Failure, api_failure};
use crate::resolve::{AGENT_LABEL, Resolver, choose_agent};
use crate::transport;

/// How many nodes are asked at once, and how long each may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub concurrency: usize,
    pub timeout: Duration,
}

/// Runs `ask` for every node, at most `bounds.concurrency` at a time, each
/// cut off after `bounds.timeout`: node → its answer, or why there is none.
pub async fn each_node<T, F, Fut>(
    nodes: BTreeSet<String>,
    bounds: Bounds,
    ask: F,
) -> BTreeMap<String, Result<T, String>>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(bounds.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for node in nodes {
        let call = ask(node.clone());
        let limit = limit.clone();
        set.spawn(async move {
            // The deadline starts once the call may run: waiting for a
            // permit is not the node's fault.
            let _permit = limit.acquire_owned().await;
            let answer = tokio::time::timeout(bounds.timeout, call)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {}s", bounds.timeout.as_secs_f32())));
            (node, answer)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((node, answer)) = joined {
            out.insert(node, answer);
        }
    }
    out
}

/// The ready agent pod of every node, or why a node has none: one list of
/// the agent pods for all nodes.
pub async fn agents(r: &Resolver) -> Result<BTreeMap<String, Vec<Pod>>, Failure> {
    let pods = Api::<Pod>::namespaced(r.client.clone(), &r.agent_namespace)
        .list(&ListParams::default().labels(AGENT_LABEL))
        .await
        .map_err(|e| {
            api_failure(
                &format!("cannot list kubectl-ns agents in namespace {}", r.agent_namespace),
                e,
            )
        })?;
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in pods.items {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            by_node.entry(node).or_default().push(p);
        }
    }
    Ok(by_node)
}

/// A channel to `node`'s agent through the API server's port-forward, or
/// why there is none (first line of the user-facing message).
pub async fn agent_channel(
    r: &Resolver,
    agents: &BTreeMap<String, Vec<Pod>>,
    node: &str,
    port: u16,
) -> Result<Channel, String> {
    let first_line = |f: Failure| f.message.lines().next().unwrap_or_default().to_owned();
    let pods = agents.get(node).map(Vec::as_slice).unwrap_or_default();
    let pod = choose_agent(pods, node, &r.agent_namespace).map_err(first_line)?;
    transport::portforward(r.client.clone(), &r.agent_namespace, &pod, port)
        .await
        .map_err(|e| first_line(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_node_is_reported_and_does_not_hold_up_the_others() {
        let nodes: BTreeSet<String> = ["fast-1", "slow", "fast-2", "down"].map(String::from).into();
        let bounds = Bounds {
            concurrency: 2,
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let out = each_node(nodes, bounds, |node| async move {
            match node.as_str() {
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(0)
                }
                "down" => Err("no agent".to_owned()),
                _ => Ok(node.len()),
            }
        })
        .await;
        assert_eq!(out["fast-1"], Ok(6));
        assert_eq!(out["fast-2"], Ok(6));
        assert_eq!(out["down"], Err("no agent".to_owned()));
        assert_eq!(out["slow"], Err("no answer within 0.3s".to_owned()));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
