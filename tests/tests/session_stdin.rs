//! A tool that never reads its stdin must not stop the session from seeing
//! what else the client sends: signals, resizes, the client leaving.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::{bins, require_root, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn a_signal_arrives_behind_stdin_the_tool_never_reads() {
    require_root();
    let agent = Agent::start(None);
    let mut child = bins::exec_command(&agent.addr(), "node", &["-n", "--stdin"], &["sleep", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // More than the tool's stdin pipe and the agent's stdin queue hold
    // (about 1 MiB together), less than what the agent holds back for it.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&vec![b'x'; 3 << 20]);
        // Kept open: the session must not need stdin to end.
        std::thread::sleep(Duration::from_secs(30));
    });
    // Give the stdin time to travel and back up behind the sleeping tool.
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let mut status = None;
    let ended = wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    drop(writer);
    assert!(
        ended,
        "the SIGINT never reached the tool; agent log:\n{}",
        agent.logs()
    );
    // sleep died of the forwarded SIGINT: 128 + 2.
    assert_eq!(status.unwrap().code(), Some(130));
}
