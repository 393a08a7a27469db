//! `kubectl ns exec -l`: one command in every matching pod, each line
//! prefixed with its pod, then a summary; through the fake API server and a
//! real agent into real containerd containers.

use kns_tests::bins::{stderr, stdout};
use kns_tests::cluster::{NODE, OneNode};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::running_pod;
use kns_tests::require_root;

/// Pods `many-a` and `many-b` (real httpd on `port` and `port + 1`) and a
/// pending `many-p`, all labelled app=many; one more real pod without the
/// label. `tag` keeps each test's sandboxes apart in the shared lab.
fn cluster(tag: &str, port: u16) -> OneNode {
    let c = OneNode::start(&format!("many-other-{tag}"), port + 2);
    c.add_agent_pod("kubectl-ns-agent-m1", c.agent.pid());
    let lab = Lab::shared();
    for (name, port) in [("many-a", port), ("many-b", port + 1)] {
        let p = lab
            .run_pod(&PodSpec::httpd(&format!("{name}-{tag}"), port))
            .unwrap();
        let mut pod = running_pod("default", name, NODE, &[("app", &p.container_id)]);
        pod.metadata.labels = Some([("app".to_owned(), "many".to_owned())].into());
        c.api.add_pod(pod);
    }
    let mut pending = running_pod("default", "many-p", NODE, &[("app", "")]);
    pending.metadata.labels = Some([("app".to_owned(), "many".to_owned())].into());
    if let Some(s) = pending.status.as_mut() {
        s.phase = Some("Pending".into());
        s.container_statuses = None;
    }
    c.api.add_pod(pending);
    c
}

#[test]
fn every_matching_pod_runs_it_with_prefixed_lines_and_a_summary() {
    require_root();
    let c = cluster("lines", 8301);
    let o = c.api.kns(&["exec", "-l", "app=many", "-n", "--", "ss", "-ltn"]);
    let (out, err) = (stdout(&o), stderr(&o));
    let lines = |pod: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("[default/{pod}/app] ")))
            .count()
    };
    assert!(
        out.contains("[default/many-a/app] ") && out.contains(":8301"),
        "{out}\n{err}"
    );
    assert!(lines("many-a") > 1 && lines("many-b") > 1, "{out}");
    // Each pod sees its own network namespace only.
    assert!(
        !out.lines()
            .any(|l| l.starts_with("[default/many-a/app]") && l.contains(":8302")),
        "{out}"
    );
    assert!(!out.contains("many-other"), "{out}");
    assert!(err.contains("[default/many-p/] kubectl-ns:"), "{err}");
    assert!(
        err.contains("3 pod(s): 2 succeeded, 0 failed, 1 not running, 0 without an agent"),
        "{err}"
    );
    // Not all exited 0: the first non-zero decides (the pending pod's).
    assert_eq!(o.status.code(), Some(255), "{err}");

    let o = c
        .api
        .kns(&["exec", "-l", "app=many", "-n", "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn json_gives_one_object_per_pod() {
    require_root();
    let c = cluster("json", 8311);
    let o = c
        .api
        .kns(&["exec", "-l", "app=many", "-o", "json", "-n", "--", "ss", "-ltn"]);
    let objs: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let pods: Vec<&str> = objs
        .iter()
        .map(|v| v["pod"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(pods, ["many-a", "many-b", "many-p"]);
    assert_eq!(objs[0]["exit_code"], 0);
    assert!(
        objs[1]["stdout"].as_str().unwrap_or_default().contains(":8312"),
        "{}",
        objs[1]
    );
    assert!(
        objs[2]["error"].is_string() && objs[2]["exit_code"].is_null(),
        "{}",
        objs[2]
    );
}

#[test]
fn a_terminal_or_stdin_is_a_usage_error() {
    let o = kns_tests::bins::kns(&["exec", "-l", "app=x", "-t", "-n", "--", "sh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = kns_tests::bins::kns(&["exec", "-l", "app=x", "web", "-n", "--", "sh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
