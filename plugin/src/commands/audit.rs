//! `kubectl ns audit`: which pods share the node's namespaces, as their
//! specs declare it and as the agents observe it, and where the two
//! disagree. The rules are in `findings`; this fetches and prints.

use serde::Serialize;

use crate::agent::fanout;
use crate::agent::route::{self, Route};
use crate::cli::{AuditArgs, Output};
use crate::commands::ls::render;
use crate::error::{Failure, UsageError};
use crate::report::columns;
use crate::report::findings::{self, Finding, Observations, Unknowns};

/// The exit status when a finding of a kind named in `--fail-on` exists.
pub const FOUND: u8 = 1;

/// A node's part in the audit.
#[derive(Debug, Serialize)]
struct NodeRow {
    node: String,
    /// Whether its agent answered.
    observed: bool,
    /// The running containers the agent listed.
    containers: usize,
    /// Why the node was not observed.
    error: Option<String>,
}

/// The JSON and YAML document (documented in the README).
#[derive(Debug, Serialize)]
struct Report {
    findings: Vec<Finding>,
    nodes: Vec<NodeRow>,
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// The most severe first; the findings' own order otherwise.
fn table(findings: &[Finding], wide: bool) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut header = [
        "SEVERITY",
        "KIND",
        "NODE",
        "POD",
        "CONTAINER",
        "DETAIL",
        "DECLARED",
        "OBSERVED",
    ]
    .map(String::from)
    .to_vec();
    if wide {
        header.push("WHY".into());
    }
    let mut rows = vec![header];
    for f in sorted {
        let mut row = vec![
            f.severity.as_str().to_owned(),
            f.kind.as_str().to_owned(),
            f.node.clone(),
            format!("{}/{}", f.namespace, f.pod),
            if f.container.is_empty() {
                "-".into()
            } else {
                f.container.clone()
            },
            if f.detail.is_empty() {
                "-".into()
            } else {
                f.detail.clone()
            },
            yes_no(f.declared).into(),
            yes_no(f.observed).into(),
        ];
        if wide {
            row.push(f.explanation.clone());
        }
        rows.push(row);
    }
    columns(&rows)
}

/// Whether any finding is of a kind the user gates on.
fn gated(findings: &[Finding], fail_on: &[findings::Kind]) -> bool {
    findings.iter().any(|f| fail_on.contains(&f.kind))
}

pub async fn run(args: AuditArgs) -> Result<u8, Failure> {
    let route = Route::of(&args.kube);
    if route.direct().is_some() && args.node.is_none() {
        return Err(UsageError::AuditWithoutNode.into());
    }
    let r = route::resolver(&args.kube).await?;
    let scope = fanout::Scope::of(&args.fanout, args.node.clone());
    let pods = fanout::pods(&r, &scope).await?;
    let nodes = fanout::nodes(&pods, &scope);
    let observed = fanout::list_nodes(&route, &r, nodes, fanout::Bounds::of(&args.fanout), false).await?;
    let scope = scope.describe(&r);
    let unknowns = match (&args.fanout.selector, args.fanout.all_namespaces) {
        (Some(_), _) => Unknowns::Off,
        (None, true) => Unknowns::All,
        (None, false) => Unknowns::Namespace(r.namespace.clone()),
    };
    let found = findings::audit(&pods, &observed, &unknowns);
    let report = Report {
        nodes: node_rows(&observed),
        findings: found,
    };
    for n in report.nodes.iter().filter(|n| !n.observed) {
        eprintln!(
            "kubectl-ns: node {} not observed: {}",
            n.node,
            n.error.as_deref().unwrap_or_default()
        );
    }
    if report.findings.is_empty() && matches!(args.output, Output::Table | Output::Wide) {
        eprintln!(
            "No findings for {} pods in {scope} on {} nodes.",
            pods.len(),
            report.nodes.len()
        );
    } else {
        print!(
            "{}",
            render(&report, args.output, |wide| table(&report.findings, wide))?
        );
    }
    Ok(if gated(&report.findings, &args.fail_on) {
        FOUND
    } else {
        0
    })
}

fn node_rows(observed: &Observations) -> Vec<NodeRow> {
    observed
        .iter()
        .map(|(node, o)| NodeRow {
            node: node.clone(),
            observed: o.is_ok(),
            containers: o.as_ref().map_or(0, |l| l.containers.len()),
            error: o.as_ref().err().cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::findings::{Kind, Severity};

    fn finding(kind: Kind, severity: Severity) -> Finding {
        Finding {
            node: "n1".into(),
            namespace: "default".into(),
            pod: "web".into(),
            container: "app".into(),
            container_id: None,
            kind,
            detail: String::new(),
            declared: Some(false),
            observed: Some(true),
            severity,
            explanation: "why".into(),
        }
    }

    #[test]
    fn table_puts_the_most_severe_first_and_gates_on_listed_kinds() {
        let f = vec![
            finding(Kind::HostNet, Severity::High),
            finding(Kind::Drift, Severity::Critical),
        ];
        let t = table(&f, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SEVERITY   KIND"), "{t}");
        assert!(lines[1].starts_with("critical   drift"), "{t}");
        assert!(lines[2].contains("default/web   app"), "{t}");
        assert!(table(&f, true).lines().next().unwrap().ends_with("WHY"));
        assert!(gated(&f, &[Kind::Drift]));
        assert!(!gated(&f, &[Kind::Privileged]));
        assert!(!gated(&f, &[]));
    }
}
