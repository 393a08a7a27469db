//! Asking many nodes' agents at once: a bounded number of calls in flight,
//! each with its own deadline, so one slow or missing node is reported and
//! never holds up the others.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::{ListRequest, ListResponse};
use kube::api::{Api, ListParams};

use crate::agent::route::Route;
use crate::agent::transport::AgentChannel;
use crate::cli::{FanoutArgs, NodeBounds};
use crate::error::{self, Failure, api_failure};
use crate::kube::resolver::Resolver;
use crate::report::findings::Observations;

/// Which pods a many-pod command covers.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Every namespace (else the resolver's).
    pub all_namespaces: bool,
    pub selector: Option<String>,
    /// Only this node.
    pub node: Option<String>,
}

impl Scope {
    /// The pods `args` cover, on `node` if given.
    pub fn of(args: &FanoutArgs, node: Option<String>) -> Scope {
        Scope {
            all_namespaces: args.all_namespaces,
            selector: args.selector.clone(),
            node,
        }
    }

    /// "all namespaces" or "namespace NS", for messages.
    pub fn describe(&self, r: &Resolver) -> String {
        if self.all_namespaces {
            "all namespaces".into()
        } else {
            format!("namespace {}", r.namespace)
        }
    }
}

/// The pods in `scope`: one list request.
pub async fn pods(r: &Resolver, scope: &Scope) -> Result<Vec<Pod>, Failure> {
    let api: Api<Pod> = if scope.all_namespaces {
        Api::all(r.client.clone())
    } else {
        Api::namespaced(r.client.clone(), &r.namespace)
    };
    let mut lp = ListParams::default();
    if let Some(sel) = &scope.selector {
        lp = lp.labels(sel);
    }
    if let Some(node) = &scope.node {
        lp = lp.fields(&format!("spec.nodeName={node}"));
    }
    Ok(api
        .list(&lp)
        .await
        .map_err(|e| api_failure(&format!("cannot list pods in {}", scope.describe(r)), e))?
        .items)
}

/// The nodes to ask: the one `scope` names, else those the pods run on.
pub fn nodes(pods: &[Pod], scope: &Scope) -> BTreeSet<String> {
    match &scope.node {
        Some(n) => [n.clone()].into(),
        None => pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect(),
    }
}

async fn list(channel: AgentChannel, namespaces: bool) -> Result<ListResponse, String> {
    crate::timings::grpc_call();
    AgentClient::new(channel)
        .list(ListRequest { namespaces })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| error::status_failure(&s).compact())
}

/// Every node's agent's List, asked at once within `bounds`, by `route`
/// (with `--agent` the one agent named: then `nodes` is the one node it
/// runs on).
pub async fn list_nodes(
    route: &Route,
    r: &Resolver,
    nodes: BTreeSet<String>,
    bounds: Bounds,
    namespaces: bool,
) -> Result<Observations, Failure> {
    let many = Arc::new(route.many(r).await?);
    Ok(each_node(nodes, bounds, move |node| {
        let many = many.clone();
        async move { list(many.channel(&node).await?, namespaces).await }
    })
    .await)
}

/// How many nodes are asked at once, and how long each may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub concurrency: usize,
    pub timeout: Duration,
}

impl Bounds {
    pub fn of(args: &FanoutArgs) -> Bounds {
        Bounds::from(&args.bounds)
    }
}

impl From<&NodeBounds> for Bounds {
    fn from(b: &NodeBounds) -> Bounds {
        Bounds {
            concurrency: usize::from(b.max_concurrent_nodes),
            timeout: b.node_timeout,
        }
    }
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
