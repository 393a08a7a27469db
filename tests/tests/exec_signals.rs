//! Ctrl-C while nobody answers: the first SIGINT/SIGTERM is forwarded, a
//! second within about a second ends kubectl-ns locally with 130/143, even
//! when the agent (or the port-forward in between) has stopped answering.

use std::io::BufRead;
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec_command};
use kns_tests::{require_root, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Sends `sig` every 250 ms until kubectl-ns exits and returns its exit
/// code, or fails when it still runs after 10 s (it is then killed). Not
/// just twice: two signals that arrive before kubectl-ns handles the first
/// reach it as one.
fn repeated_then_exit_code(mut child: Child, sig: Signal) -> Option<i32> {
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        if status.is_none() {
            signal(&child, sig);
            std::thread::sleep(Duration::from_millis(250));
        }
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("kubectl-ns still runs after 10 s of {sig} every 250 ms");
    };
    assert_eq!(
        status.signal(),
        None,
        "kubectl-ns died of a signal instead of exiting"
    );
    status.code()
}

/// An "agent" that accepts connections and never says a word.
fn silent_agent(dir: &std::path::Path) -> (String, std::sync::mpsc::Receiver<()>) {
    let path = dir.join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept() {
            held.push(conn);
            let _ = tx.send(());
        }
    });
    (format!("unix://{}", path.display()), rx)
}

#[test]
fn signals_end_a_session_the_agent_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, accepted) = silent_agent(dir.path());
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let child = exec_command(&addr, "node", &["-n"], &["sleep", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        accepted
            .recv_timeout(Duration::from_secs(5))
            .expect("kubectl-ns connected");
        // Let the request reach the silent socket: kubectl-ns now waits for
        // an answer that never comes.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(repeated_then_exit_code(child, sig), Some(code), "{sig}");
    }
}

#[test]
fn second_signal_ends_a_session_whose_agent_stopped_answering() {
    require_root();
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let agent = Agent::start(None);
        let (mut child, _out) = bins::start_ready(&agent.addr(), "echo ready; exec sleep 100");
        // The session is open and the agent freezes: signals go into a
        // connection nobody reads.
        let agent_pid = Pid::from_raw(agent.pid());
        kill(agent_pid, Signal::SIGSTOP).unwrap();
        let mut err = child.stderr.take().unwrap();
        let got = repeated_then_exit_code(child, sig);
        kill(agent_pid, Signal::SIGCONT).unwrap();
        assert_eq!(got, Some(code), "{sig}");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut err, &mut text).unwrap();
        assert!(text.contains("the agent did not answer the signal"), "{text}");
    }
}

/// One signal to a session whose agent answers is still the remote
/// command's to handle: it traps it and goes on.
#[test]
fn one_signal_is_forwarded_not_acted_on() {
    require_root();
    let agent = Agent::start(None);
    let script = "trap 'echo got-int' INT; echo ready; while :; do sleep 0.05; done";
    let (mut child, mut out) = bins::start_ready(&agent.addr(), script);
    signal(&child, Signal::SIGINT);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-int\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(child.try_wait().unwrap(), None, "one SIGINT ended kubectl-ns");
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
}
