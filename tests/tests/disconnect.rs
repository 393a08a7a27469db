//! Nothing is left behind: a client killed with -9, or an agent shut down,
//! ends the session and kills everything it started in the target.

use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins;
use kns_tests::target::NsProcess;
use kns_tests::{assert_none_marked, marked, ns_inode, require_root, running, wait_marked, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Fails unless every process marked `mark` in the namespace is gone within
/// 30 s, naming those left.
fn assert_none_left(net: u64, mark: &str, what: &str) {
    assert_none_marked(net, mark, what, String::new);
}

/// A target in a network namespace of its own, and that namespace's
/// inode (to find what a session left there); needs root.
fn net_target() -> (NsProcess, u64) {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let net = ns_inode(t.pid, "net");
    (t, net)
}

/// Kills the client with SIGKILL, as `kill -9` does, and reaps it.
fn kill_9(mut client: std::process::Child) {
    client.kill().unwrap();
    client.wait().unwrap();
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
    let (t, net) = net_target();
    let agent = Agent::start(None);
    let client = start_session(&agent, t.pid, "4242");
    assert!(
        wait_until(Duration::from_secs(10), || marked(net, "4242").len() == 2),
        "the session's two sleeps never appeared in the target"
    );
    kill_9(client);
    assert_none_left(net, "4242", "processes left in the target");
    assert!(agent.logged("ClientGone"), "{}", agent.logs());
}

#[test]
fn agent_shutdown_ends_sessions_with_a_message() {
    let (t, net) = net_target();
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
    // A stopped agent removes its sessions' cgroup subtree too.
    assert!(
        agent.cgroup.sessions_dirs().is_empty(),
        "{:?}",
        agent.cgroup.sessions_dirs()
    );
}

#[test]
fn a_second_agent_in_the_same_cgroup_leaves_the_first_ones_sessions_alone() {
    let (t, net) = net_target();
    let agent = Agent::start(None);
    let mut client = start_script(&agent, &t, "exec sleep 4848", "4848", 1);
    let second = agent.sibling();
    // The second agent's start-up cleaning must not take the live session.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(marked(net, "4848").len(), 1, "{}", second.logs());
    assert!(!second.logs().contains("previous run"), "{}", second.logs());
    let _ = client.kill();
    let _ = client.wait();
    assert_none_left(net, "4848", "the session outlived its client");
}

#[test]
fn exiting_tool_takes_its_background_children_along() {
    let (t, net) = net_target();
    let agent = Agent::start(None);
    let o = bins::exec(
        &agent.addr(),
        &t.target(),
        &["-n"],
        &["sh", "-c", "sleep 4444 & echo started"],
    );
    assert!(o.status.success());
    assert_none_left(net, "4444", "a background child outlived the session");
}

/// Starts `sh -c SCRIPT` in the target's network namespace and waits until
/// at least `n` processes marked `mark` run there (the shell itself counts
/// when it does not exec).
fn start_script(agent: &Agent, t: &NsProcess, script: &str, mark: &str, n: usize) -> std::process::Child {
    let client = bins::exec_command(&agent.addr(), &t.target(), &["-n"], &["sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_marked(ns_inode(t.pid, "net"), mark, n, String::new);
    client
}

#[test]
fn killing_the_client_kills_what_left_the_process_group() {
    let (t, net) = net_target();
    let agent = Agent::start(None);
    // A setsid'd child and a shell job in a group of its own (set -m) both
    // leave the tool's process group.
    let client = start_script(
        &agent,
        &t,
        "setsid sleep 4545 & set -m; sleep 4545 & sleep 4545",
        "4545",
        3,
    );
    kill_9(client);
    assert_none_left(net, "4545", "escaped the session");
    assert!(
        wait_until(Duration::from_secs(10), || agent.cgroup.sessions().is_empty()),
        "session cgroups left: {:?}",
        agent.cgroup.sessions()
    );
}

#[test]
fn a_daemon_the_tool_started_dies_when_the_tool_exits() {
    let (t, net) = net_target();
    let agent = Agent::start(None);
    // Double fork and setsid: the classic daemon, reparented away from the
    // tool and in a session of its own.
    let o = bins::exec(
        &agent.addr(),
        &t.target(),
        &["-n"],
        // The daemon says so once it is in a session of its own, so the
        // tool cannot exit (and have its group killed) before that.
        &[
            "sh",
            "-c",
            "(setsid sh -c 'echo detached; exec sleep 4646' &) | head -n 1",
        ],
    );
    assert!(o.status.success(), "{}", bins::stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "detached\n");
    assert_none_left(net, "4646", "a daemon outlived the session");
}

#[test]
fn an_agent_killed_with_sigkill_leaves_nothing_once_restarted() {
    let (t, net) = net_target();
    let mut agent = Agent::start(None);
    let mut client = start_script(&agent, &t, "setsid sleep 4747 & exec sleep 4747", "4747", 2);
    agent.kill();
    // The tool is the agent's child and dies with it (PR_SET_PDEATHSIG); the
    // setsid'd one is in the session's cgroup, which the next start kills.
    assert!(
        wait_until(Duration::from_secs(10), || marked(net, "4747").len() <= 1),
        "the tool outlived the agent: {:?}",
        marked(net, "4747")
    );
    let _ = client.kill();
    let _ = client.wait();
    agent.launch();
    assert_none_left(net, "4747", "left behind after the restart");
    assert!(agent.logs().contains("previous run"), "{}", agent.logs());
    assert!(
        agent.cgroup.sessions().is_empty(),
        "{:?}",
        agent.cgroup.sessions()
    );
}

#[test]
fn a_dead_agents_subtree_that_cannot_be_removed_leaves_the_next_run_contained() {
    let mut agent = Agent::start(None);
    agent.kill();
    // A dead run's session cgroup with a cgroup below it, which no agent
    // makes and rmdir(2) refuses (EBUSY) while it is there.
    let stale = agent.cgroup.dir.join("kns-sessions-1").join("session-9");
    let stuck = stale.join("stuck");
    std::fs::create_dir_all(&stuck).unwrap();
    agent.launch();
    let logs = agent.logs();
    let _ = std::fs::remove_dir(&stuck);
    assert!(
        logs.contains("cannot remove what a previous run of the agent left")
            && logs.contains("sessions each run in a cgroup of their own")
            && !logs.contains("no session cgroups"),
        "{logs}"
    );
}

#[test]
fn a_client_that_stops_answering_is_dropped_by_keepalive() {
    let (t, net) = net_target();
    let agent = Agent::start_with_env(None, &[("KNS_KEEPALIVE", "1")]);
    let mut client = start_script(&agent, &t, "exec sleep 4949", "4949", 1);
    // A stopped client keeps its connection open but answers no ping: a
    // laptop asleep, a link cut without a reset.
    let pid = Pid::from_raw(client.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let gone = wait_until(Duration::from_secs(10), || marked(net, "4949").is_empty());
    let _ = kill(pid, Signal::SIGCONT);
    let _ = client.kill();
    let _ = client.wait();
    assert!(gone, "the session outlived a client that stopped answering");
    assert!(agent.logged("ClientGone"), "{}", agent.logs());
}

#[test]
fn a_session_past_the_maximum_age_is_ended_with_a_message() {
    let (t, net) = net_target();
    let agent = Agent::start_with_env(None, &[("KNS_MAX_SESSION_AGE", "1")]);
    let o = bins::exec(&agent.addr(), &t.target(), &["-n"], &["sleep", "5050"]);
    assert_eq!(o.status.code(), Some(255), "{}", bins::stderr(&o));
    assert!(
        bins::stderr(&o).contains("maximum age of 1 s"),
        "{}",
        bins::stderr(&o)
    );
    assert!(marked(net, "5050").is_empty());
}

#[test]
fn a_thousand_children_all_die_with_the_session() {
    let (t, net) = net_target();
    let agent = Agent::start(None);
    let client = start_script(
        &agent,
        &t,
        "i=0; while [ $i -lt 1000 ]; do setsid sleep 6262 & i=$((i+1)); done; wait",
        "6262",
        1000,
    );
    kill_9(client);
    assert_none_left(net, "6262", "processes left");
}

#[test]
fn a_target_that_dies_mid_session_ends_it_with_the_tools_status() {
    require_root();
    // The tool is in the target's PID namespace, whose init is the target:
    // when it dies the kernel kills every process in the namespace.
    let t = NsProcess::spawn(&["--pid", "--mount-proc"], "exec sleep 1000");
    let agent = Agent::start(None);
    let client = bins::exec_command(&agent.addr(), &t.target(), &["-p"], &["sleep", "6363"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || running(&["sleep", "6363"])),
        "the tool never started"
    );
    drop(t);
    let o = client.wait_with_output().unwrap();
    // 128 + SIGKILL.
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_agent_killed_mid_session_is_named_with_what_became_of_the_session() {
    let (t, net) = net_target();
    let mut agent = Agent::start(None);
    let client = start_script(&agent, &t, "exec sleep 5353", "5353", 1);
    agent.kill();
    let o = client.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(255));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the connection to the agent broke in the middle of the session")
            && err.contains("the agent went away")
            && err.contains("the tool died with the agent"),
        "{err}"
    );
    assert!(!err.contains("not as a kubectl-ns agent"), "{err}");
    assert_none_left(net, "5353", "the tool outlived the agent");
}
