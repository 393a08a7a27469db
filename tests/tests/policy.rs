//! The node operator's policy file (the kubectl-ns-policy ConfigMap in a
//! cluster): each rule refuses by name, a change applies without a restart,
//! and an invalid edit keeps the last good policy and is reported.

use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec, stderr};
use kns_tests::{require_root, running, wait_until};

struct Policed {
    agent: Agent,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn agent_with_policy(text: &str) -> Policed {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, text).unwrap();
    let agent = Agent::start_with_env(None, &[("KNS_POLICY", file.to_str().unwrap())]);
    Policed {
        agent,
        file,
        _dir: dir,
    }
}

/// Rewrites the file as the kubelet updates a ConfigMap volume (a new file
/// swapped in), and waits until the agent applies it: `probe` holds.
fn edit(p: &Policed, text: &str, probe: impl FnMut() -> bool) {
    let tmp = p.file.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p.file).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), probe),
        "the agent did not apply the edited policy\n{}",
        p.agent.logs()
    );
}

#[test]
fn each_rule_refuses_by_name_and_the_rest_runs() {
    require_root();
    let p = agent_with_policy("denyKinds: [ipc]\nreadOnly: true\nnodeTargets: true\n");
    let addr = p.agent.addr();
    let o = exec(&addr, "node", &["-i"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("ipc namespace (denyKinds)"), "{}", stderr(&o));
    let o = exec(&addr, "node", &["-n", "--stdin"], &["true"]);
    assert!(stderr(&o).contains("(readOnly)"), "{}", stderr(&o));
    // Not mistaken for the caller's rights or the agent's privileges.
    assert!(
        stderr(&o).contains("kubectl-ns-policy ConfigMap"),
        "{}",
        stderr(&o)
    );
    assert!(exec(&addr, "node", &["-n"], &["true"]).status.success());
}

#[test]
fn a_changed_policy_applies_without_a_restart_and_an_invalid_one_keeps_the_last() {
    require_root();
    let p = agent_with_policy("");
    let addr = p.agent.addr();
    assert!(exec(&addr, "node", &["-n"], &["hostname"]).status.success());
    edit(&p, "commands: [\"true\"]\n", || {
        stderr(&exec(&addr, "node", &["-n"], &["hostname"])).contains("(commands: true)")
    });
    assert!(exec(&addr, "node", &["-n"], &["true"]).status.success());
    // A typo: the last good policy stays, and the agent says why.
    edit(&p, "commands: [\"true\"]\nreadOnly: maybe\n", || {
        stderr(&bins::kns(&["version", "--agent", &addr])).contains("warning: the agent's policy")
    });
    let o = exec(&addr, "node", &["-n"], &["hostname"]);
    assert!(stderr(&o).contains("(commands: true)"), "{}", stderr(&o));
    // Emptied (the ConfigMap deleted): authorization alone decides again.
    edit(&p, "", || {
        exec(&addr, "node", &["-n"], &["hostname"]).status.success()
    });
}

#[test]
fn sessions_per_user_are_counted_until_they_end() {
    require_root();
    let p = agent_with_policy("maxSessionsPerUser: 1\nmaxSessionSeconds: 30\n");
    let addr = p.agent.addr();
    let mut first = bins::exec_command(&addr, "node", &["-n"], &["sleep", "6161"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || running(&[
        "sleep", "6161"
    ])));
    let o = exec(&addr, "node", &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("maxSessionsPerUser"), "{}", stderr(&o));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || exec(
            &addr,
            "node",
            &["-n"],
            &["true"]
        )
        .status
        .success()),
        "the ended session still counts\n{}",
        p.agent.logs()
    );
}

#[test]
fn an_invalid_policy_at_start_refuses_every_session_until_fixed() {
    require_root();
    let p = agent_with_policy("denyKinds: [network]\n");
    let addr = p.agent.addr();
    let o = exec(&addr, "node", &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("invalid") && stderr(&o).contains("network"),
        "{}",
        stderr(&o)
    );
    edit(&p, "denyKinds: [net]\n", || {
        exec(&addr, "node", &["-u"], &["true"]).status.success()
    });
}
