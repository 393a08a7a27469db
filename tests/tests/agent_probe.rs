//! `kubectl-ns-agent probe`: the DaemonSet's readiness probe asks the
//! agent's gRPC health service on its loopback address.

use std::process::Command;

use kns_tests::agent::{Agent, free_port};
use kns_tests::bins;
use kns_tests::require_root;

fn probe(port: u16) -> std::process::Output {
    Command::new(bins::agent())
        .args(["--listen", &format!("tcp://127.0.0.1:{port}"), "probe"])
        .output()
        .unwrap()
}

#[test]
fn probe_passes_while_the_agent_serves_and_fails_after() {
    require_root();
    let port = free_port();
    let mut agent = Agent::start_tcp(None, port);
    let o = probe(port);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same check over the agent's unix socket.
    let o = Command::new(bins::agent())
        .args(["--listen", &agent.addr(), "probe"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    agent.terminate();
    let o = probe(port);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the agent"));
}
