//! `kubectl ns status`: which nodes run an agent, the version it reports
//! and its readiness, and for every node without a ready agent, why.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use kube::api::{Api, ListParams};

use kns_proto::agent::VersionResponse;

use crate::agent::route::{self, Route};
use crate::cli::StatusArgs;
use crate::error::{Failure, api_failure};
use crate::kube::manifests;
use crate::kube::placement;
use crate::kube::resolve::pod_ready;
use crate::report::printable;

/// A node's agent, as far as the API tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Agent {
    Ready {
        pod: String,
    },
    /// An agent pod that is not ready, and its own reason.
    NotReady {
        pod: String,
        reason: String,
    },
    /// No agent pod, and why.
    Missing {
        reason: String,
    },
}

/// One row: a node and its agent.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub node: String,
    pub agent: Agent,
}

/// Matches nodes with agent pods; `template` is the installed DaemonSet's
/// pod template (`None`: not installed).
pub fn rows(nodes: &[Node], agents: &[Pod], template: Option<&PodSpec>, agent_ns: &str) -> Vec<Row> {
    let mut by_node: BTreeMap<&str, &Pod> = BTreeMap::new();
    for p in agents {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            // A ready pod wins over one that is being replaced.
            if by_node.get(node).is_none_or(|old| !pod_ready(old)) {
                by_node.insert(node, p);
            }
        }
    }
    nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .map(|(name, n)| {
            let node_reason = placement::node_not_ready(n);
            let agent = match by_node.get(name.as_str()) {
                Some(p) if pod_ready(p) => Agent::Ready {
                    pod: p.metadata.name.clone().unwrap_or_default(),
                },
                Some(p) => Agent::NotReady {
                    pod: p.metadata.name.clone().unwrap_or_default(),
                    reason: [node_reason, Some(placement::pod_not_ready_reason(p))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("; "),
                },
                None => Agent::Missing {
                    reason: match template {
                        None => "not installed (`kubectl ns install`)".to_owned(),
                        Some(t) => placement::unselected(t, n).or(node_reason).unwrap_or_else(|| {
                            format!(
                                "no agent pod scheduled yet (`kubectl -n {agent_ns} describe daemonset {}`)",
                                manifests::DAEMONSET_NAME
                            )
                        }),
                    },
                },
            };
            Row { node: name, agent }
        })
        .collect()
}

/// The SESSIONS column for an agent's answer, and the reasons it adds:
/// whether its sessions are each in a cgroup of their own (so nothing a tool
/// starts outlives the session) and memory-bounded apart from the agent.
pub fn sessions(v: &VersionResponse) -> (String, Vec<String>) {
    if !v.sessions_contained && v.cgroup_layout.is_empty() && v.containment_error.is_empty() {
        // An agent older than these fields.
        return ("?".to_owned(), Vec::new());
    }
    let mut reasons = Vec::new();
    let layout = if v.cgroup_layout.is_empty() {
        "unknown cgroup layout"
    } else {
        &v.cgroup_layout
    };
    if !v.sessions_contained {
        reasons.push(format!(
            "sessions NOT contained ({layout}): what a tool starts in its own session can outlive it: {}",
            v.containment_error
        ));
        return ("NOT contained".to_owned(), reasons);
    }
    let memory = if v.sessions_memory > 0 {
        format!("{}Mi", v.sessions_memory >> 20)
    } else {
        if !v.sessions_memory_error.is_empty() {
            reasons.push(format!(
                "no sessions' memory limit: a runaway tool counts against the agent's own: {}",
                v.sessions_memory_error
            ));
        }
        "no memory limit".to_owned()
    };
    (format!("contained, {memory}"), reasons)
}

/// What the warnings after the table count, from the agents that
/// answered and the nodes without one.
#[derive(Debug, Default)]
struct Notes {
    missing: usize,
    skewed: usize,
    insecure: usize,
    bad_policy: usize,
    uncontained: usize,
}

impl Notes {
    /// The SESSIONS column and the REASON of an agent that answered `v`,
    /// counted.
    fn answered(&mut self, v: &VersionResponse) -> (String, String) {
        self.skewed += usize::from(v.version != env!("CARGO_PKG_VERSION"));
        self.insecure += usize::from(v.insecure_skip_authz);
        self.uncontained += usize::from(!v.sessions_contained && !v.cgroup_layout.is_empty());
        let (column, mut reasons) = sessions(v);
        if v.insecure_skip_authz {
            reasons.push("INSECURE: --insecure-skip-authz, checks no identity".to_owned());
        }
        if !v.policy_error.is_empty() {
            self.bad_policy += 1;
            reasons.push(format!("policy: {}", v.policy_error));
        }
        (column, reasons.join("; "))
    }

    fn warn(&self) {
        let Notes {
            missing,
            skewed,
            insecure,
            bad_policy,
            uncontained,
        } = self;
        if *missing > 0 {
            eprintln!("{missing} node(s) have no agent: see REASON");
        }
        if *insecure > 0 {
            eprintln!(
                "warning: {insecure} agent(s) run with --insecure-skip-authz: whoever may port-forward to them is root on their node"
            );
        }
        if *bad_policy > 0 {
            eprintln!(
                "warning: {bad_policy} agent(s) cannot use their policy file (kubectl-ns-policy ConfigMap): see REASON"
            );
        }
        if *uncontained > 0 {
            eprintln!(
                "warning: {uncontained} agent(s) cannot give each session a cgroup of its own: what a tool starts \
                 there can outlive its session; see REASON"
            );
        }
        if *skewed > 0 {
            eprintln!(
                "warning: {skewed} agent(s) run another version than this kubectl-ns ({})",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
}

/// A row as the terminal gets it. Every field but the header words comes
/// from a node, a pod or an agent (an agent named with `--agent` may be
/// anything that answers there): control characters are shown as `?`, so
/// no answer can move the cursor, rewrite lines or retitle the terminal.
/// The narrowest each column but the last (REASON) may be.
const WIDTHS: [usize; 5] = [24, 32, 10, 8, 24];

/// The rows under the header, printed once all are known: a column is as
/// wide as its longest cell, so a long agent address or pod name does not
/// push the columns after it out of line.
struct Table(Vec<[String; 6]>);

impl Table {
    fn new() -> Table {
        Table(vec![
            ["NODE", "AGENT", "VERSION", "READY", "SESSIONS", "REASON"].map(String::from),
        ])
    }

    fn push(&mut self, cells: [&str; 6]) {
        self.0.push(cells.map(printable));
    }

    fn lines(&self) -> Vec<String> {
        let mut widths = WIDTHS;
        for row in &self.0 {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        self.0
            .iter()
            .map(|row| {
                let padded: String = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$} ")).collect();
                padded + &row[5]
            })
            .collect()
    }

    fn print(&self) {
        for line in self.lines() {
            println!("{line}");
        }
    }
}

pub async fn run(args: StatusArgs) -> Result<u8, Failure> {
    route::no_pod_namespace(&args.kube, "status")?;
    let mut notes = Notes::default();
    let route = Route::of(&args.kube);
    if let Some(addr) = route.direct() {
        // That agent alone, on its node: nothing is asked of the API server.
        let v = route::direct_version(addr).await?;
        let node = if v.node_name.is_empty() { "-" } else { &v.node_name };
        let (column, reason) = notes.answered(&v);
        let mut table = Table::new();
        table.push([node, addr, &v.version, "yes", &column, &reason]);
        table.print();
        notes.warn();
        return Ok(0);
    }
    let r = route::resolver(&args.kube).await?;
    let nodes = Api::<Node>::all(r.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("cannot list nodes", e))?;
    let agents = crate::kube::agents::list(&r.client, &r.agent_namespace, None)
        .await
        .map_err(|e| {
            api_failure(
                &format!("cannot list agents in namespace {}", r.agent_namespace),
                e,
            )
        })?;
    let ds = route::agent_daemonset(&r).await?;
    let template = ds.and_then(|d| d.spec?.template.spec);
    let rows = rows(&nodes.items, &agents, template.as_ref(), &r.agent_namespace);
    let ready = rows.iter().filter_map(|r| match &r.agent {
        Agent::Ready { pod } => Some(pod.clone()),
        _ => None,
    });
    let versions = route::agent_versions(&r, args.kube.agent_port, ready).await;

    let mut table = Table::new();
    for row in &rows {
        let (pod, version, ready, (column, reason)) = match &row.agent {
            Agent::Ready { pod } => match versions.get(pod) {
                Some(Ok(v)) => (pod.as_str(), v.version.as_str(), "yes", notes.answered(v)),
                Some(Err(e)) => (
                    pod.as_str(),
                    "?",
                    "yes",
                    ("?".to_owned(), format!("cannot ask its version: {e}")),
                ),
                None => (pod.as_str(), "?", "yes", ("?".to_owned(), String::new())),
            },
            Agent::NotReady { pod, reason } => (pod.as_str(), "-", "no", ("-".to_owned(), reason.clone())),
            Agent::Missing { reason } => {
                notes.missing += 1;
                ("-", "-", "no agent", ("-".to_owned(), reason.clone()))
            }
        };
        table.push([&row.node, pod, version, ready, &column, &reason]);
    }
    table.print();
    notes.warn();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_cell_widens_its_column_for_every_row() {
        let mut t = Table::new();
        t.push([
            "node-1",
            "unix:///tmp/a-rather-long-directory/kubectl-ns/agent.sock",
            "0.1.0",
            "yes",
            "16Mi",
            "",
        ]);
        let lines = t.lines();
        let at = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(at(&lines[0], "VERSION"), at(&lines[1], "0.1.0"), "{lines:#?}");
        assert_eq!(at(&lines[0], "SESSIONS"), at(&lines[1], "16Mi"), "{lines:#?}");
        // Cells that fit keep the usual widths.
        let mut t = Table::new();
        t.push(["n", "a", "v", "yes", "s", "why"]);
        assert_eq!(
            t.lines()[1],
            format!("{:<24} {:<32} {:<10} {:<8} {:<24} why", "n", "a", "v", "yes", "s")
        );
    }
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodCondition, PodStatus};
    use kube::api::ObjectMeta;

    fn node(n: &str, arch: &str, ready: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(n.into()),
                labels: Some(
                    [
                        (placement::OS_LABEL.to_owned(), "linux".to_owned()),
                        (placement::ARCH_LABEL.to_owned(), arch.to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn agent(name: &str, node: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn template() -> PodSpec {
        manifests::parse()
            .unwrap()
            .into_iter()
            .find_map(|o| match o {
                manifests::Object::DaemonSet(d) => d.spec?.template.spec,
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn the_sessions_column_says_whether_sessions_are_contained_and_bounded() {
        let v = VersionResponse {
            sessions_contained: true,
            cgroup_layout: "cgroup v1 hybrid".into(),
            sessions_memory: 448 << 20,
            ..Default::default()
        };
        assert_eq!(sessions(&v), ("contained, 448Mi".to_owned(), vec![]));
        let v = VersionResponse {
            sessions_memory: 0,
            sessions_memory_error: "no cgroup v1 memory hierarchy is mounted".into(),
            ..v
        };
        let (column, reasons) = sessions(&v);
        assert_eq!(column, "contained, no memory limit");
        assert!(
            reasons[0].contains("no cgroup v1 memory hierarchy"),
            "{reasons:?}"
        );
        let v = VersionResponse {
            sessions_contained: false,
            containment_error: "cannot mount …".into(),
            ..v
        };
        let (column, reasons) = sessions(&v);
        assert_eq!(column, "NOT contained");
        assert!(
            reasons[0].contains("cgroup v1 hybrid") && reasons[0].contains("cannot mount"),
            "{reasons:?}"
        );
        // An older agent says nothing of it.
        assert_eq!(sessions(&VersionResponse::default()).0, "?");
    }

    #[test]
    fn what_an_agent_answers_cannot_drive_the_terminal() {
        assert_eq!(
            printable("1.0\u{1b}]0;owned\u{7}\r\nnode-b yes"),
            "1.0?]0;owned???node-b yes"
        );
        assert_eq!(printable("contained, 448Mi"), "contained, 448Mi");
    }

    #[test]
    fn every_node_without_a_ready_agent_says_why() {
        let nodes = [
            node("a", "amd64", "True"),
            node("b", "arm64", "True"),
            node("c", "amd64", "False"),
            node("d", "amd64", "True"),
            node("e", "amd64", "True"),
        ];
        let agents = [agent("x-a", "a", true), agent("x-d", "d", false)];
        let t = template();
        let r = rows(&nodes, &agents, Some(&t), "kubectl-ns-system");
        assert_eq!(r[0].agent, Agent::Ready { pod: "x-a".into() });
        assert!(
            matches!(&r[1].agent, Agent::Missing { reason } if reason.contains("architecture arm64")),
            "{r:?}"
        );
        assert!(
            matches!(&r[2].agent, Agent::Missing { reason } if reason.contains("node not Ready")),
            "{r:?}"
        );
        assert!(
            matches!(&r[3].agent, Agent::NotReady { pod, .. } if pod == "x-d"),
            "{r:?}"
        );
        assert!(
            matches!(&r[4].agent, Agent::Missing { reason } if reason.contains("describe daemonset kubectl-ns-agent")),
            "{r:?}"
        );
        let r = rows(&nodes[..1], &[], None, "kubectl-ns-system");
        assert!(matches!(&r[0].agent, Agent::Missing { reason } if reason.contains("not installed")));
    }
}
