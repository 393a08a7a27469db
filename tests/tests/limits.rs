//! Bounded load: over the agent's session limit, a session is refused with
//! a message that names the limit (and audited as a denial), and the agent
//! keeps serving.

use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::{bins, require_root, running, wait_until};

#[test]
fn sessions_over_the_limit_are_refused_by_name() {
    require_root();
    let agent = Agent::start_with_env(None, &[("KNS_MAX_SESSIONS", "1")]);
    let mut first = bins::exec_command(&agent.addr(), "node", &["-n"], &["sleep", "5151"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || running(&["sleep", "5151"])),
        "the first session never started"
    );
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255), "{}", bins::stderr(&o));
    let err = bins::stderr(&o);
    assert!(err.contains("--max-sessions") && err.contains("retry"), "{err}");
    // The agent's own rule refused it: a denial in the audit trail.
    let denied: Vec<_> = agent
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0]["argv"], serde_json::json!(["true"]));
    assert!(
        denied[0]["reason"].as_str().unwrap().contains("--max-sessions"),
        "{denied:#?}"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    // Its slot is free again once the session has ended.
    let ok = wait_until(Duration::from_secs(10), || {
        bins::exec(&agent.addr(), "node", &["-n"], &["true"])
            .status
            .success()
    });
    assert!(ok, "{}", agent.logs());
}

#[test]
fn a_tool_past_the_sessions_memory_limit_is_killed_and_the_agent_lives() {
    require_root();
    let agent = Agent::start_with_env(None, &[("KNS_SESSIONS_MEMORY", "64Mi")]);
    assert!(
        agent.logs().contains("sessions' memory limit"),
        "the agent set no memory limit for its sessions (it needs a cgroup v1 memory hierarchy or \
         cgroup v2's memory controller):\n{}",
        agent.logs()
    );
    let hog = ["perl", "-e", r#"$x = "a" x (256 << 20); print "survived\n""#];
    let o = bins::exec(&agent.addr(), "node", &["-n"], &hog);
    let err = bins::stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    assert!(err.contains("memory limit") && err.contains("64 MiB"), "{err}");
    // The agent was not the one killed: it serves the next session.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}\n{}", bins::stderr(&o), agent.logs());
    // Under the limit, the same tool runs to its end.
    let small = ["perl", "-e", r#"$x = "a" x (16 << 20); print "survived\n""#];
    let o = bins::exec(&agent.addr(), "node", &["-n"], &small);
    assert!(o.status.success(), "{}", bins::stderr(&o));
}
