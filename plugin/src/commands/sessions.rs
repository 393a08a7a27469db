//! `kubectl ns sessions`: who is inside right now, asked of every node's
//! agent at once as `audit` asks (a bounded number at a time, a deadline
//! per node, the nodes that did not answer reported), and `sessions kill`
//! to end one. What a user sees and may end, each agent decides: their
//! own sessions always, anyone's with the session-admin rights.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kns_proto::agent::sessions_client::SessionsClient;
use kns_proto::agent::{KillSessionRequest, ListSessionsRequest, ListSessionsResponse, SessionInfo};
use serde::Serialize;

use crate::agent::fanout::{self, Bounds};
use crate::agent::route::{self, Many, Route};
use crate::cli::{Output, SessionsAction, SessionsArgs};
use crate::commands::audit::columns;
use crate::commands::ls::render;
use crate::error::{self, Failure};

/// Every node asked: its agent's answer, or why there is none.
type Answers = BTreeMap<String, Result<ListSessionsResponse, String>>;

/// What a session is in, as its agent established it.
#[derive(Debug, Serialize)]
struct Target {
    /// `pod`, `node`, `pid`, or `container` (of no pod).
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<String>,
    /// The host PID entered.
    pid: i32,
    /// What its client asked for: `container/ID`, `pid/N` or `node`.
    requested: String,
}

/// One session (the JSON and YAML document's `sessions`, in the README).
#[derive(Debug, Serialize)]
struct Row {
    node: String,
    id: u64,
    user: String,
    /// How the agent verified the user: `token`, `x509`, `peercred`, `skip`.
    auth: String,
    target: Target,
    argv: Vec<String>,
    namespaces: Vec<String>,
    tools: String,
    tty: bool,
    start_time: String,
    duration_seconds: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// A node's part in the listing.
#[derive(Debug, Serialize)]
struct NodeRow {
    node: String,
    answered: bool,
    sessions: usize,
    /// Only the caller's own sessions were listed there.
    restricted: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    sessions: Vec<Row>,
    nodes: Vec<NodeRow>,
}

fn none_if_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn row(node: &str, s: SessionInfo) -> Row {
    let t = s.target.unwrap_or_default();
    let kind = match (t.requested.as_str(), t.pod.is_empty()) {
        ("node", _) => "node",
        (r, _) if r.starts_with("pid/") => "pid",
        (_, false) => "pod",
        (_, true) => "container",
    };
    Row {
        node: node.to_owned(),
        id: s.id,
        user: s.user,
        auth: s.auth,
        target: Target {
            kind,
            namespace: none_if_empty(t.namespace),
            pod: none_if_empty(t.pod),
            container_id: none_if_empty(t.container_id),
            pid: t.pid,
            requested: t.requested,
        },
        argv: s.argv,
        namespaces: s.namespaces,
        tools: s.tools,
        tty: s.tty,
        start_time: s.start_time,
        duration_seconds: s.duration_ms / 1000,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
    }
}

/// The node's name as its agent gave it, else the one it was asked as.
fn node_name(asked: &str, answer: &ListSessionsResponse) -> String {
    if answer.node_name.is_empty() {
        asked.to_owned()
    } else {
        answer.node_name.clone()
    }
}

fn report(answers: Answers) -> Report {
    let mut sessions = Vec::new();
    let mut nodes = Vec::new();
    for (asked, answer) in answers {
        match answer {
            Ok(a) => {
                let node = node_name(&asked, &a);
                nodes.push(NodeRow {
                    node: node.clone(),
                    answered: true,
                    sessions: a.sessions.len(),
                    restricted: a.restricted,
                    error: None,
                });
                sessions.extend(a.sessions.into_iter().map(|s| row(&node, s)));
            }
            Err(e) => nodes.push(NodeRow {
                node: asked,
                answered: false,
                sessions: 0,
                restricted: false,
                error: Some(e),
            }),
        }
    }
    Report { sessions, nodes }
}

/// A duration as kubectl's AGE column writes it.
fn age(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", secs % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

/// A byte count in binary units, as `ls -h` writes it.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["Ki", "Mi", "Gi", "Ti"];
    let mut v = n as f64;
    let mut unit = "";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit.is_empty() {
        n.to_string()
    } else {
        format!("{v:.1}{unit}")
    }
}

/// `NS/POD/CONTAINER` (the container ID's first 12 characters, as crictl
/// shows it), `node`, `pid/N`, or `container/ID` of no pod.
fn target_text(t: &Target) -> String {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    match (t.kind, &t.namespace, &t.pod) {
        ("pod", Some(ns), Some(pod)) => {
            format!("{ns}/{pod}/{}", short(t.container_id.as_deref().unwrap_or("")))
        }
        ("container", ..) => format!("container/{}", short(t.container_id.as_deref().unwrap_or(""))),
        _ => t.requested.clone(),
    }
}

fn table(sessions: &[Row], wide: bool) -> String {
    let mut header = [
        "NODE", "ID", "USER", "AUTH", "TARGET", "COMMAND", "TTY", "AGE", "IN", "OUT",
    ]
    .map(String::from)
    .to_vec();
    if wide {
        header.extend(["NAMESPACES", "TOOLS", "STARTED"].map(String::from));
    }
    let mut rows = vec![header];
    for s in sessions {
        let command = s.argv.join(" ");
        let mut row = vec![
            s.node.clone(),
            s.id.to_string(),
            s.user.clone(),
            s.auth.clone(),
            target_text(&s.target),
            if wide || command.chars().count() <= 40 {
                command
            } else {
                command.chars().take(39).collect::<String>() + "…"
            },
            if s.tty { "yes" } else { "no" }.to_owned(),
            age(s.duration_seconds),
            bytes(s.bytes_in),
            bytes(s.bytes_out),
        ];
        if wide {
            row.extend([s.namespaces.join(","), s.tools.clone(), s.start_time.clone()]);
        }
        rows.push(row);
    }
    columns(&rows)
}

/// What is said under the listing when some agents listed only the
/// caller's own sessions: which nodes, the missing rule, and the grant.
fn restricted_footer(answers: &Answers) -> Option<String> {
    let restricted: Vec<(String, &ListSessionsResponse)> = answers
        .iter()
        .filter_map(|(asked, a)| a.as_ref().ok().map(|a| (node_name(asked, a), a)))
        .filter(|(_, a)| a.restricted)
        .collect();
    let (_, first) = restricted.first()?;
    let nodes: Vec<&str> = restricted.iter().map(|(n, _)| n.as_str()).collect();
    let grant = error::grant_for(&first.denied_rule)
        .map(|g| format!("\nHint: a cluster admin can grant it with:\n{g}"))
        .unwrap_or_default();
    Some(format!(
        "Only your own sessions ({}) are listed on {}: seeing other users' needs list on nodes/sessions \
         (API group kubectl-ns.io), the ClusterRole kubectl-ns-session-admin.{grant}",
        first.user,
        nodes.join(", ")
    ))
}

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
                .map_err(|s| error::status_failure(&s).one_line())
        }
    })
    .await)
}

/// The Kubernetes namespace the listing covers: empty for -A.
async fn namespace(args: &SessionsArgs) -> Result<String, Failure> {
    Ok(match (&args.kube.namespace, args.all_namespaces) {
        (_, true) => String::new(),
        (Some(ns), false) => ns.clone(),
        (None, false) => route::resolver(&args.kube).await?.namespace,
    })
}

fn warn_unanswered(nodes: &[NodeRow]) {
    for n in nodes.iter().filter(|n| !n.answered) {
        eprintln!(
            "kubectl-ns: node {} did not answer: {}",
            n.node,
            n.error.as_deref().unwrap_or_default()
        );
    }
}

async fn list(args: &SessionsArgs) -> Result<u8, Failure> {
    let namespace = namespace(args).await?;
    let answers = ask(args, &namespace).await?;
    let footer = restricted_footer(&answers);
    let report = report(answers);
    warn_unanswered(&report.nodes);
    let table_output = matches!(args.output, Output::Table | Output::Wide);
    if report.sessions.is_empty() && table_output {
        let scope = if namespace.is_empty() {
            "all namespaces".to_owned()
        } else {
            format!("namespace {namespace}")
        };
        eprintln!("No sessions in {scope} on {} nodes.", report.nodes.len());
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
    let id = id.parse().map_err(|_| {
        Failure::usage(format!(
            "`{s}`: expected NODE/ID or ID, a session as `kubectl ns sessions` lists it (e.g. worker-3/42)"
        ))
    })?;
    Ok((node, id))
}

/// The node of the one session `id` among those the agents list.
async fn find(args: &SessionsArgs, id: u64) -> Result<String, Failure> {
    let answers = ask(args, "").await?;
    let footer = restricted_footer(&answers);
    let report = report(answers);
    warn_unanswered(&report.nodes);
    let found: Vec<&Row> = report.sessions.iter().filter(|s| s.id == id).collect();
    match found.as_slice() {
        [one] => Ok(one.node.clone()),
        [] => Err(Failure::own(format!(
            "no session {id} on the {} nodes asked{}\nHint: `kubectl ns sessions -A` lists them; another user's \
             session you do not see can still be named as NODE/ID",
            report.nodes.len(),
            footer.map(|f| format!("\n{f}")).unwrap_or_default()
        ))),
        many => Err(Failure::usage(format!(
            "session {id} runs on more than one node ({}): name it as NODE/ID",
            many.iter()
                .map(|s| format!("{}/{id}", s.node))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn kill(args: &SessionsArgs, which: &str) -> Result<u8, Failure> {
    if args.all_namespaces || args.kube.namespace.is_some() {
        return Err(Failure::usage(
            "kill names one session: -A and --namespace choose what the listing shows; give NODE/ID or ID alone",
        ));
    }
    let (node, id) = parse_id(which)?;
    let node = match node {
        Some(n) => n,
        None => find(args, id).await?,
    };
    let (many, _) = reach(args).await?;
    let channel = many.channel(&node).await.map_err(Failure::own)?;
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
        s.user,
        s.argv.join(" ")
    );
    Ok(0)
}

pub async fn run(args: SessionsArgs) -> Result<u8, Failure> {
    match (args.action, &args.id) {
        (None, _) => list(&args).await,
        (Some(SessionsAction::Kill), Some(which)) => kill(&args, which).await,
        (Some(SessionsAction::Kill), None) => Err(Failure::usage(
            "kill needs the session: NODE/ID, or ID alone, as `kubectl ns sessions` lists it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kns_proto::agent::SessionTarget;

    fn info(id: u64, requested: &str, pod: &str) -> SessionInfo {
        SessionInfo {
            id,
            user: "alice".into(),
            auth: "token".into(),
            target: Some(SessionTarget {
                requested: requested.into(),
                namespace: if pod.is_empty() { "" } else { "default" }.into(),
                pod: pod.into(),
                container_id: "0123456789abcdef".into(),
                pid: 42,
            }),
            argv: vec!["sleep".into(), "60".into()],
            namespaces: vec!["net".into(), "pid".into()],
            tools: "node".into(),
            tty: false,
            start_time: "2026-01-01T00:00:00Z".into(),
            duration_ms: 61_500,
            bytes_in: 3,
            bytes_out: 2048,
        }
    }

    fn answer(sessions: Vec<SessionInfo>, restricted: bool) -> ListSessionsResponse {
        ListSessionsResponse {
            sessions,
            restricted,
            denied_rule: if restricted {
                r#"{"user":"bob","verb":"list","group":"kubectl-ns.io","resource":"nodes","subresource":"sessions","name":"n1"}"#.into()
            } else {
                String::new()
            },
            node_name: "n1".into(),
            user: "bob".into(),
        }
    }

    #[test]
    fn rows_name_the_target_and_unanswered_nodes_are_kept() {
        let answers: Answers = [
            (
                "n1".to_owned(),
                Ok(answer(
                    vec![info(1, "container/0123", "web"), info(2, "node", "")],
                    false,
                )),
            ),
            ("n2".to_owned(), Err("no answer within 20s".to_owned())),
        ]
        .into();
        let r = report(answers);
        let t = table(&r.sessions, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NODE   ID   USER    AUTH    TARGET"), "{t}");
        assert!(
            lines[1].contains("default/web/0123456789ab") && lines[1].contains("sleep 60"),
            "{t}"
        );
        assert!(lines[1].contains("61s") && lines[1].contains("2.0Ki"), "{t}");
        assert!(lines[2].contains("   node   "), "{t}");
        assert!(
            table(&r.sessions, true)
                .lines()
                .next()
                .unwrap()
                .ends_with("STARTED")
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["sessions"][0]["target"]["kind"], "pod");
        assert_eq!(json["sessions"][1]["target"]["kind"], "node");
        assert_eq!(json["nodes"][1]["answered"], false);
        assert_eq!(json["nodes"][1]["error"], "no answer within 20s");
    }

    #[test]
    fn a_restricted_listing_says_so_with_the_grant() {
        let answers: Answers = [("n1".to_owned(), Ok(answer(Vec::new(), true)))].into();
        let f = restricted_footer(&answers).unwrap();
        assert!(
            f.starts_with("Only your own sessions (bob) are listed on n1"),
            "{f}"
        );
        assert!(
            f.contains(
                "kubectl create clusterrolebinding kubectl-ns-session-admin-bob --clusterrole=kubectl-ns-session-admin --user=bob"
            ),
            "{f}"
        );
        let open: Answers = [("n1".to_owned(), Ok(answer(Vec::new(), false)))].into();
        assert_eq!(restricted_footer(&open), None);
    }

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

    #[test]
    fn ages_and_sizes_read_as_kubectl_and_ls_write_them() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(119), "119s");
        assert_eq!(age(125), "2m5s");
        assert_eq!(age(3 * 3600 + 60), "3h1m");
        assert_eq!(age(9 * 3600), "9h");
        assert_eq!(age(3 * 86400 + 3600), "3d1h");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(1536), "1.5Ki");
        assert_eq!(bytes(5 << 20), "5.0Mi");
    }
}
