//! `kubectl-ns-agent probe`: the DaemonSet's readiness probe asks the
//! agent's gRPC health service on its loopback address.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use kns_tests::agent::{AGENT_PORT, Agent};
use kns_tests::bins;
use kns_tests::{ns_inode, require_root, wait_until};

/// The probe as the kubelet runs it: inside the agent's pod, so in its
/// network namespace, where the agent listens on loopback.
fn probe(agent: &Agent, listen: &str) -> std::process::Output {
    agent
        .in_netns(bins::agent())
        .args(["--listen", listen, "probe"])
        .output()
        .unwrap()
}

#[test]
fn probe_passes_while_the_agent_serves_and_fails_after() {
    require_root();
    let mut agent = Agent::start_tcp(None);
    let tcp = format!("tcp://127.0.0.1:{AGENT_PORT}");
    let o = probe(&agent, &tcp);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same check over the agent's unix socket.
    let o = probe(&agent, &agent.addr());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A process that keeps the pod's network namespace once the agent is
    // gone, as the pod's sandbox does.
    let mut holder = agent.in_netns("sleep").arg("60").spawn().unwrap();
    let held = wait_until(Duration::from_secs(10), || {
        std::fs::metadata(format!("/proc/{}/ns/net", holder.id()))
            .is_ok_and(|m| m.ino() == ns_inode(agent.pid(), "net"))
    });
    assert!(held, "the holder never joined the agent's network namespace");
    agent.terminate();
    let o = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", holder.id()))
        .arg("--")
        .arg(bins::agent())
        .args(["--listen", &tcp, "probe"])
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the agent"));
}
