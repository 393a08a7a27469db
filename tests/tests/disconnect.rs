//! Nothing is left behind: a client killed with -9, or an agent shut down,
//! ends the session and kills everything it started in the target.

use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins;
use kns_tests::target::NsProcess;
use kns_tests::{ns_inode, pids_in_ns, require_root, wait_until};

fn comm_args(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// PIDs in the target's netns running `sleep MARK` (the tool and a child
/// it forked into the background).
fn marked(net_inode: u64, mark: &str) -> Vec<i32> {
    pids_in_ns("net", net_inode)
        .into_iter()
        .filter(|p| comm_args(*p).contains(mark))
        .collect()
}

fn start_session(agent: &Agent, target: i32, mark: &str) -> std::process::Child {
    let script = format!("sleep {mark} & exec sleep {mark}");
    bins::exec_command(
        &agent.addr(),
        &format!("pid/{target}"),
        &["-n"],
        &["sh", "-c", &script],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[test]
fn killing_the_client_kills_the_remote_process_group() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let net = ns_inode(t.pid, "net");
    let agent = Agent::start(None);
    let mut client = start_session(&agent, t.pid, "4242");
    assert!(
        wait_until(Duration::from_secs(10), || marked(net, "4242").len() == 2),
        "the session's two sleeps never appeared in the target"
    );
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || marked(net, "4242").is_empty()),
        "processes left in the target: {:?}",
        marked(net, "4242")
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent.logs().contains("ClientGone")),
        "{}",
        agent.logs()
    );
}

#[test]
fn agent_shutdown_ends_sessions_with_a_message() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let net = ns_inode(t.pid, "net");
    let mut agent = Agent::start(None);
    let client = start_session(&agent, t.pid, "4343");
    assert!(wait_until(Duration::from_secs(10), || marked(net, "4343").len() == 2));
    let status = agent.terminate().expect("agent exit status");
    assert!(status.success(), "agent exited with {status:?}");
    let o = client.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(255));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shutting down"), "{err}");
    assert!(
        marked(net, "4343").is_empty(),
        "left behind: {:?}",
        marked(net, "4343")
    );
}

#[test]
fn exiting_tool_takes_its_background_children_along() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let net = ns_inode(t.pid, "net");
    let agent = Agent::start(None);
    let o = bins::exec(
        &agent.addr(),
        &t.target(),
        &["-n"],
        &["sh", "-c", "sleep 4444 & echo started"],
    );
    assert!(o.status.success());
    assert!(
        wait_until(Duration::from_secs(5), || marked(net, "4444").is_empty()),
        "a background child outlived the session"
    );
}
