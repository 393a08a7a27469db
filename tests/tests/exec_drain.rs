//! Nothing lost: output the tool wrote before it exited reaches a slow
//! reader in full, before the exit status.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::{bins, poll_until, require_root};

const MB: usize = 1 << 20;

/// `kubectl-ns exec node -n -- sh -c SCRIPT`, its stdout and stderr piped
/// to the test, which reads them when it chooses.
fn writer(agent: &Agent, script: &str) -> std::process::Child {
    bins::exec_command(&agent.addr(), "node", &["-n"], &["sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_slow_reader_gets_every_byte_written_before_exit() {
    require_root();
    let agent = Agent::start(None);
    // 20 MB written as fast as the pipes take it, then exit 3: most of it
    // is still in flight (pipes, the agent's queue, HTTP/2 windows) when
    // the tool is gone.
    let mut child = writer(&agent, "head -c 20971520 /dev/zero; exit 3");
    let mut out = child.stdout.take().unwrap();
    // About 1 MB/s.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        std::thread::sleep(Duration::from_millis(60));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        total,
        20 * MB,
        "output was cut short: {}\n{}",
        bins::stderr(&o),
        agent.logs()
    );
    assert_eq!(o.status.code(), Some(3), "{}", bins::stderr(&o));
}

#[test]
fn a_reader_that_pauses_after_the_tool_exits_still_gets_everything() {
    require_root();
    let agent = Agent::start(None);
    // Output is lost only if some of it is still in the tool's pipe when the
    // tool exits, i.e. for amounts between what the buffers downstream hold
    // and that plus the pipe. Those sizes are tuning, so cover a range: each
    // session writes a different amount and exits while nobody reads (a
    // terminal paused with Ctrl-S, a pager nobody scrolls).
    let sizes: Vec<usize> = (8..=24).map(|half_mb| half_mb * MB / 2).collect();
    let mut children: Vec<_> = sizes
        .iter()
        .map(|n| writer(&agent, &format!("head -c {n} /dev/zero; exit 3")))
        .collect();
    // Longer than any fixed grace for draining (it was 2 s).
    std::thread::sleep(Duration::from_secs(5));
    for (child, want) in children.iter_mut().zip(&sizes) {
        let mut got = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(got.len(), *want, "output was cut short: {err}\n{}", agent.logs());
        assert_eq!(status.code(), Some(3), "{err}");
    }
}

#[test]
fn a_reader_that_stops_for_good_gets_a_failure_never_a_clean_exit() {
    require_root();
    let agent = Agent::start_with_env(None, &[("KNS_MAX_SESSIONS", "1")]);
    // More than every buffer on the way holds: when the tool exits, and its
    // background writer is killed with it, output is still waiting in its
    // pipe.
    let mut child = writer(&agent, "head -c 209715200 /dev/zero & sleep 3; exit 0");
    // Nobody reads until the agent has given up waiting for progress
    // (30 s after the tool exits). The session then ends and records its
    // end, though the client has not yet taken the message that says so.
    assert!(
        poll_until(Duration::from_secs(90), Duration::from_millis(200), || {
            agent.audit().iter().any(|r| r["event"] == "end")
        }),
        "the agent never gave up on a reader that stopped: {}",
        agent.logs()
    );
    // What is still queued for that client keeps the session's slot: the
    // session limit bounds the memory all sessions hold.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert!(
        bins::stderr(&o).contains("--max-sessions"),
        "{}",
        bins::stderr(&o)
    );
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = bins::stderr(&o);
    assert!(
        out.len() < 200 * MB,
        "everything arrived: nothing was left to drop"
    );
    assert_eq!(
        o.status.code(),
        Some(255),
        "a cut stream ended with {:?}: {err}",
        o.status
    );
    assert!(err.contains("dropped"), "{err}");
    // Taken, the slot is free.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}", bins::stderr(&o));
}
