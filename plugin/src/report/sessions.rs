//! `kubectl ns sessions`' listing: the agents' answers made into rows, a
//! table as kubectl prints one, the JSON and YAML document, and what is
//! said when an agent listed only the caller's own sessions.

use std::collections::BTreeMap;

use kns_proto::agent::{ListSessionsResponse, SessionInfo};
use serde::Serialize;

use crate::error;
use crate::report::{columns, printable};

/// Every node asked: its agent's answer, or why there is none.
pub type Answers = BTreeMap<String, Result<ListSessionsResponse, String>>;

/// What a session is in, as its agent established it.
#[derive(Debug, Serialize)]
pub struct Target {
    /// `pod`, `node`, `pid`, or `container` (of no pod).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The host PID entered.
    pub pid: i32,
    /// What its client asked for: `container/ID`, `pid/N` or `node`.
    pub requested: String,
}

/// One session (the JSON and YAML document's `sessions`, in the README).
#[derive(Debug, Serialize)]
pub struct Row {
    pub node: String,
    pub id: u64,
    pub user: String,
    /// How the agent verified the user: `token`, `x509`, `peercred`, `skip`.
    pub auth: String,
    pub target: Target,
    pub argv: Vec<String>,
    pub namespaces: Vec<String>,
    pub tools: String,
    pub tty: bool,
    pub start_time: String,
    pub duration_seconds: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The recording's file name on the node, when its policy records the
    /// session.
    pub recording: Option<String>,
}

/// A node's part in the listing.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub answered: bool,
    pub sessions: usize,
    /// Only the caller's own sessions were listed there.
    pub restricted: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub sessions: Vec<Row>,
    pub nodes: Vec<NodeRow>,
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
        recording: none_if_empty(s.recording),
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

pub fn report(answers: Answers) -> Report {
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

/// "1 node", "3 nodes".
pub fn nodes_word(n: usize) -> String {
    format!("{n} node{}", if n == 1 { "" } else { "s" })
}

/// An RFC 3339 time to the second, for a column.
fn to_the_second(t: &str) -> String {
    match t.split_once('.') {
        Some((whole, _)) if t.ends_with('Z') => format!("{whole}Z"),
        _ => t.to_owned(),
    }
}

pub fn table(sessions: &[Row], wide: bool) -> String {
    let mut header = [
        "NODE", "ID", "USER", "AUTH", "TARGET", "COMMAND", "TTY", "REC", "AGE", "IN", "OUT",
    ]
    .map(String::from)
    .to_vec();
    if wide {
        header.extend(["NAMESPACES", "TOOLS", "STARTED"].map(String::from));
    }
    let mut rows = vec![header];
    for s in sessions {
        let command = printable(&s.argv.join(" "));
        let mut row = vec![
            s.node.clone(),
            s.id.to_string(),
            printable(&s.user),
            s.auth.clone(),
            printable(&target_text(&s.target)),
            if wide || command.chars().count() <= 40 {
                command
            } else {
                command.chars().take(39).collect::<String>() + "…"
            },
            if s.tty { "yes" } else { "no" }.to_owned(),
            if s.recording.is_some() { "yes" } else { "no" }.to_owned(),
            age(s.duration_seconds),
            bytes(s.bytes_in),
            bytes(s.bytes_out),
        ];
        if wide {
            row.extend([
                s.namespaces.join(","),
                s.tools.clone(),
                to_the_second(&s.start_time),
            ]);
        }
        rows.push(row);
    }
    columns(&rows)
}

/// What is said under the listing when some agents listed only the
/// caller's own sessions: which nodes, the missing rule, and the grant.
pub fn restricted_footer(answers: &Answers) -> Option<String> {
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
            recording: String::new(),
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

    /// Another user's command line reaches an admin's terminal: it must
    /// not be able to rewrite the rows (hiding its own) or talk to the
    /// terminal.
    #[test]
    fn a_command_line_cannot_drive_the_readers_terminal() {
        let mut hostile = info(3, "node", "");
        hostile.argv = vec![
            "sh".into(),
            "-c".into(),
            "x\u{1b}[1A\u{1b}[2K\u{1b}]52;c;aGk=\u{7}".into(),
        ];
        hostile.user = "eve\r".into();
        let answers: Answers = [("n1".to_owned(), Ok(answer(vec![hostile], false)))].into();
        for wide in [false, true] {
            let t = table(&report(answers.clone()).sessions, wide);
            assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
            assert!(t.contains("x?[1A?[2K?]52;c;aGk=?") && t.contains("eve?"), "{t}");
        }
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
        assert_eq!(nodes_word(1), "1 node");
        assert_eq!(nodes_word(2), "2 nodes");
        assert_eq!(
            to_the_second("2026-12-03T06:49:30.394790032Z"),
            "2026-12-03T06:49:30Z"
        );
        assert_eq!(to_the_second("2026-12-03T06:49:30Z"), "2026-12-03T06:49:30Z");
    }
}
