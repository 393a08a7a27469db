//! `kubectl ns sessions`: who is inside right now, asked of every node's
//! agent at once as `audit` asks (a bounded number at a time, a deadline
//! per node, the nodes that did not answer reported), and `sessions kill`
//! to end one. What a user sees and may end, each agent decides: their
//! own sessions always, anyone's with the session-admin rights. The rows
//! and the table are `report::sessions`'.

use std::collections::BTreeSet;
use std::sync::Arc;

use kns_proto::agent::sessions_client::SessionsClient;
use kns_proto::agent::{KillSessionRequest, ListSessionsRequest};

use crate::agent::fanout::{self, Bounds};
use crate::agent::route::{self, Many, Route};
use crate::cli::{Output, SessionsAction, SessionsArgs};
use crate::commands::ls::render;
use crate::error::{self, Failure, LiveError, UsageError};
use crate::report::printable;
use crate::report::sessions::{Answers, NodeRow, Row, nodes_word, report, restricted_footer, table};

/// The way to the agents, and which nodes to ask: `--node`, else every
/// node with an agent pod (with --agent, the one agent).
async fn reach(args: &SessionsArgs) -> Result<(Arc<Many>, BTreeSet<String>), Failure> {
    let route = Route::of(&args.kube);
    let many = match &route {
        Route::Direct(addr) => Many::Direct(addr.clone()),
        Route::Forward { .. } => route.many(&route::resolver(&args.kube).await?).await?,
    };
    let nodes = match (&args.node, &route) {
        (Some(n), _) => [n.clone()].into(),
        // The direct agent names its node in its answer.
        (None, Route::Direct(addr)) => [addr.clone()].into(),
        (None, Route::Forward { .. }) => many.nodes(),
    };
    Ok((Arc::new(many), nodes))
}

/// Every node's sessions in `namespace` (empty: all), asked at once.
async fn ask(args: &SessionsArgs, namespace: &str) -> Result<Answers, Failure> {
    let (many, nodes) = reach(args).await?;
    let namespace = namespace.to_owned();
    Ok(fanout::each_node(nodes, Bounds::from(&args.bounds), move |node| {
        let (many, namespace) = (many.clone(), namespace.clone());
        async move {
            crate::timings::grpc_call();
            SessionsClient::new(many.channel(&node).await?)
                .list_sessions(ListSessionsRequest { namespace })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| error::status_failure(&s).compact())
        }
    })
    .await)
}

/// The Kubernetes namespace the listing covers: empty for -A, and for
/// `--agent` alone (one node's agent, asked by its operator, perhaps on a
/// node with no kubeconfig: all of that node's sessions, as -A).
async fn namespace(args: &SessionsArgs) -> Result<String, Failure> {
    let direct = matches!(Route::of(&args.kube), Route::Direct(_));
    Ok(match (&args.kube.namespace, args.all_namespaces) {
        (_, true) => String::new(),
        (Some(ns), false) => ns.clone(),
        (None, false) if direct => String::new(),
        (None, false) => route::resolver(&args.kube).await?.namespace,
    })
}

/// Names each node whose agent did not answer; fails when none did (or
/// there was none to ask), as an empty listing would then claim nobody
/// is inside.
fn unanswered(nodes: &[NodeRow]) -> Result<(), Failure> {
    let silent: Vec<&NodeRow> = nodes.iter().filter(|n| !n.answered).collect();
    for n in &silent {
        eprintln!(
            "kubectl-ns: node {} did not answer: {}",
            n.node,
            n.error.as_deref().unwrap_or_default()
        );
    }
    match (nodes.len(), silent.len()) {
        (0, _) => Err(LiveError::NoAgents.into()),
        (all, none) if all == none => Err(LiveError::NoneAnswered {
            asked: nodes_word(all),
        }
        .into()),
        _ => Ok(()),
    }
}

async fn list(args: &SessionsArgs) -> Result<u8, Failure> {
    let namespace = namespace(args).await?;
    let answers = ask(args, &namespace).await?;
    let footer = restricted_footer(&answers);
    let report = report(answers);
    unanswered(&report.nodes)?;
    let table_output = matches!(args.output, Output::Table | Output::Wide);
    if report.sessions.is_empty() && table_output {
        let scope = if namespace.is_empty() {
            "all namespaces".to_owned()
        } else {
            format!("namespace {namespace}")
        };
        eprintln!("No sessions in {scope} on {}.", nodes_word(report.nodes.len()));
    } else {
        print!(
            "{}",
            render(&report, args.output, |wide| table(&report.sessions, wide))?
        );
    }
    if let (Some(f), true) = (footer, table_output) {
        eprintln!("{f}");
    }
    Ok(0)
}

/// `NODE/ID` or `ID`.
fn parse_id(s: &str) -> Result<(Option<String>, u64), Failure> {
    let (node, id) = match s.rsplit_once('/') {
        Some((node, id)) if !node.is_empty() => (Some(node.to_owned()), id),
        Some(_) => (None, ""),
        None => (None, s),
    };
    let id = id
        .parse()
        .map_err(|_| UsageError::NotASession { given: s.to_owned() })?;
    Ok((node, id))
}

/// The node of the one session `id` among those the agents list.
async fn find(args: &SessionsArgs, id: u64) -> Result<String, Failure> {
    let report = report(ask(args, "").await?);
    unanswered(&report.nodes)?;
    let found: Vec<&Row> = report.sessions.iter().filter(|s| s.id == id).collect();
    let restricted: Vec<&str> = report
        .nodes
        .iter()
        .filter(|n| n.restricted)
        .map(|n| n.node.as_str())
        .collect();
    let asked = nodes_word(report.nodes.len());
    match found.as_slice() {
        [one] => Ok(one.node.clone()),
        [] if restricted.is_empty() => Err(LiveError::NoSuchSession { id, asked }.into()),
        [] => Err(LiveError::NotAmongYours {
            id,
            asked,
            restricted: restricted.join(", "),
        }
        .into()),
        many => Err(UsageError::SessionOnManyNodes {
            id,
            on: many
                .iter()
                .map(|s| format!("{}/{id}", s.node))
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into()),
    }
}

async fn kill(args: &SessionsArgs, which: &str) -> Result<u8, Failure> {
    if args.all_namespaces || args.kube.namespace.is_some() {
        return Err(UsageError::KillWithScope.into());
    }
    let (node, id) = parse_id(which)?;
    let node = match node {
        Some(n) => n,
        None => find(args, id).await?,
    };
    let (many, _) = reach(args).await?;
    let channel = many.channel(&node).await.map_err(|why| LiveError::Unreachable {
        node: node.clone(),
        why,
    })?;
    crate::timings::grpc_call();
    let killed = crate::agent::deadline::answered(async {
        SessionsClient::new(channel)
            .kill_session(KillSessionRequest { id })
            .await
            .map_err(|s| error::status_failure(&s))
    })
    .await?
    .into_inner();
    let s = killed.session.unwrap_or_default();
    println!(
        "session {node}/{id} of {} ({}) ended: its processes were killed",
        printable(&s.user),
        printable(&s.argv.join(" "))
    );
    Ok(0)
}

pub async fn run(args: SessionsArgs) -> Result<u8, Failure> {
    match (args.action, &args.id) {
        (None, _) => list(&args).await,
        (Some(SessionsAction::Kill), Some(which)) => kill(&args, which).await,
        (Some(SessionsAction::Kill), None) => Err(UsageError::KillWithoutSession.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_or_without_their_node() {
        assert_eq!(parse_id("n1/42").unwrap(), (Some("n1".to_owned()), 42));
        assert_eq!(parse_id("42").unwrap(), (None, 42));
        for bad in ["n1/", "/42", "x", "n1/-1", ""] {
            let e = parse_id(bad).unwrap_err();
            assert_eq!(e.code(), error::USAGE, "{bad}");
            assert!(e.to_string().contains("expected NODE/ID or ID"), "{e}");
        }
    }
}
