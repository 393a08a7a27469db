//! What crosses the session: exit codes and signals, stdout and stderr kept
//! apart and byte-exact, stdin, and a real terminal.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec, stderr, stdout};
use kns_tests::require_root;
use sha2::{Digest, Sha256};

fn node(agent: &Agent, cmd: &[&str]) -> std::process::Output {
    exec(&agent.addr(), "node", &["-n"], cmd)
}

#[test]
fn exit_codes_and_signals_pass_through() {
    require_root();
    let agent = Agent::start(None);
    assert_eq!(node(&agent, &["sh", "-c", "exit 42"]).status.code(), Some(42));
    assert_eq!(node(&agent, &["true"]).status.code(), Some(0));
    assert_eq!(node(&agent, &["sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    let o = node(&agent, &["no-such-tool-kns"]);
    assert_eq!(o.status.code(), Some(127));
    // Minimal node OSes lack tools: the error points at the toolbox.
    let err = stderr(&o);
    assert!(
        err.contains("no-such-tool-kns: command not found on the node")
            && err.contains("install the toolbox agent image")
            && err.contains("-toolbox")
            && err.contains("--tools agent"),
        "{err}"
    );
    let o = exec(
        &agent.addr(),
        "node",
        &["-n", "--tools", "agent"],
        &["no-such-tool-kns"],
    );
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("not found in the agent's image"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stdout_and_stderr_stay_apart() {
    require_root();
    let agent = Agent::start(None);
    let o = node(&agent, &["sh", "-c", "echo out; echo err >&2; echo out2"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "out\nout2\n");
    assert_eq!(stderr(&o), "err\n");
}

#[test]
fn hundred_megabytes_of_binary_stdout_arrive_intact() {
    require_root();
    let agent = Agent::start(None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let mut data = vec![0u8; 100_000_000];
    // Deterministic, non-repeating bytes (a simple LCG), binary throughout.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    std::fs::write(&file, &data).unwrap();
    let o = node(&agent, &["cat", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), data.len());
    assert_eq!(Sha256::digest(&o.stdout), Sha256::digest(&data));
}

#[test]
fn stdin_round_trips() {
    require_root();
    let agent = Agent::start(None);
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut child = bins::exec_command(&agent.addr(), "node", &["-n", "--stdin"], &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let input = input.clone();
        std::thread::spawn(move || {
            stdin.write_all(&input).unwrap();
        })
    };
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), input.len());
    assert!(o.stdout == input);
}

#[test]
fn tty_without_a_terminal_still_passes_stdin() {
    require_root();
    let agent = Agent::start(None);
    let mut child = bins::exec_command(&agent.addr(), "node", &["-n", "-t"], &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped into -t\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped into -t\n");
    assert!(stderr(&o).contains("-t ignored"), "{}", stderr(&o));
}

#[test]
fn sigint_is_forwarded_to_the_remote_command() {
    require_root();
    let agent = Agent::start(None);
    let script = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.05; done";
    let (mut child, mut out) = bins::start_ready(&agent.addr(), script);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(status.code(), Some(7));
}

/// A reader that stops reading (a pipe nobody drains, a terminal scrolled
/// back, a pager paused) must not hold back Ctrl-C: the remote command
/// still gets it while its output is stuck.
#[test]
fn a_stuck_reader_does_not_hold_back_signals() {
    require_root();
    let agent = Agent::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (ready, marker) = (dir.path().join("ready"), dir.path().join("got-int"));
    let script = format!(
        "trap 'echo int > {m}; kill $!; exit 7' INT; yes & touch {r}; wait",
        m = marker.display(),
        r = ready.display()
    );
    let mut child = bins::exec_command(&agent.addr(), "node", &["-n"], &["sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stuck = child.stdout.take().unwrap(); // held open, never read
    assert!(kns_tests::wait_until(Duration::from_secs(10), || ready.exists()));
    // yes fills every buffer on the way within this: kubectl-ns's stdout
    // pipe, its queue, the HTTP/2 windows and the agent's.
    std::thread::sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let forwarded = kns_tests::wait_until(Duration::from_secs(10), || marker.exists());
    let _ = child.kill();
    let _ = child.wait();
    drop(stuck);
    assert!(
        forwarded,
        "SIGINT never reached the remote command while stdout was stuck"
    );
}

/// `| head`: the reader goes away, kubectl-ns ends quietly with 0.
#[test]
fn closed_stdout_ends_quietly() {
    require_root();
    let agent = Agent::start(None);
    let mut child = bins::exec_command(&agent.addr(), "node", &["-n"], &["yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut head = [0u8; 4];
    std::io::Read::read_exact(&mut out, &mut head).unwrap();
    assert_eq!(&head, b"y\ny\n");
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// `-t` under script(1), which gives the plugin a real terminal.
#[test]
fn tty_gives_the_command_a_terminal() {
    require_root();
    let agent = Agent::start(None);
    let cmd = format!(
        "{} exec --agent {} node -n -t -- sh -c 'test -t 0 && test -t 1 && echo TTY-YES $(stty size)'",
        bins::plugin().display(),
        agent.addr()
    );
    let o = Command::new("script")
        .args(["-qec", &format!("stty rows 33 cols 101; {cmd}"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("TTY-YES 33 101"), "{out}");
}

#[test]
fn without_tty_the_command_has_no_terminal() {
    require_root();
    let agent = Agent::start(None);
    let o = node(&agent, &["sh", "-c", "test -t 1 && echo tty || echo no-tty"]);
    assert_eq!(stdout(&o), "no-tty\n");
}

#[test]
fn environment_and_workdir_are_set() {
    require_root();
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        "node",
        &["-n", "-e", "KNS_X=hello", "-w", "/tmp"],
        &["sh", "-c", "echo $KNS_X $(pwd) $PATH"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "hello /tmp /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}
