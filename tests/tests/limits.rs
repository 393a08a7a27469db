//! Bounded load: over the agent's session limit, a session is refused with
//! a message that names the limit, and the agent keeps serving.

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
