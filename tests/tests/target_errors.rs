//! Targets that cannot be entered get a clear error and exit 255.

use std::process::Command;

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr};
use kns_tests::require_root;

#[test]
fn a_pid_that_exited_after_lookup_is_named() {
    require_root();
    let agent = Agent::start(None);
    // An exited but unreaped child: its /proc entry still resolves, its
    // namespaces are gone, as for a process that exits during entry.
    let mut zombie = Command::new("true").spawn().unwrap();
    let pid = zombie.id() as i32;
    assert!(kns_tests::wait_until(std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    }));
    let o = exec(&agent.addr(), &format!("pid/{pid}"), &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains(&format!("process {pid} has exited")),
        "{}",
        stderr(&o)
    );
    zombie.wait().unwrap();
    // And once reaped, it does not exist.
    let o = exec(&agent.addr(), &format!("pid/{pid}"), &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn unknown_container_without_a_runtime_is_named() {
    require_root();
    let agent = Agent::start(Some("/nonexistent/cri.sock"));
    let o = exec(&agent.addr(), "container/0123456789ab", &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(err.contains("container 0123456789ab was not found"), "{err}");
    // Why, each part said once: the runtime asked, then the cgroup scan.
    assert_eq!(err.matches("/nonexistent/cri.sock").count(), 1, "{err}");
    assert!(
        err.contains("and no process on this node has it in its cgroup"),
        "{err}"
    );
    assert!(!err.contains("answered ("), "{err}");
}
