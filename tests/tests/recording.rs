//! Recorded sessions, end to end: the node's policy chooses, a real agent
//! writes the asciicast file while the plugin runs a terminal session under
//! script(1), the user is told at the start, the audit trail's `end` line
//! names the file with its size and sha256, and Debian's `asciinema` reads
//! the file back.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec, stderr, stdout};
use kns_tests::recordings::{Recordings, end_line};
use kns_tests::{require_root, wait_until};
use sha2::Digest;

struct Recorded {
    agent: Agent,
    rec: Recordings,
}

fn agent_recording(policy: &str) -> Recorded {
    require_root();
    let rec = Recordings::new(policy);
    let agent = Agent::start_with_env(None, &rec.env());
    Recorded { agent, rec }
}

/// `kubectl-ns exec … node -n -t -- CMD` with a real terminal.
fn terminal_session(agent: &Agent, cmd: &str) -> Output {
    let line = format!(
        "stty rows 30 cols 100; {} exec --agent {} node -n -t -- sh -c '{cmd}'",
        bins::plugin().display(),
        agent.addr()
    );
    Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux")
}

/// What Debian's asciinema shows when it plays `file` (fast: a hundred
/// times its pace, pauses cut to 10 ms) in a terminal of script(1)'s.
fn asciinema_play(file: &Path) -> String {
    assert!(
        Command::new("asciinema")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "asciinema is missing: apt-get install asciinema (scripts/deps installs it)"
    );
    let line = format!(
        "asciinema play --speed 100 --idle-time-limit 0.01 {}",
        file.display()
    );
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    assert!(o.status.success(), "asciinema play: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn a_recorded_terminal_session_replays_with_asciinema_and_the_audit_names_its_hash() {
    let r = agent_recording("recording:\n  record: tty\n");
    let o = terminal_session(&r.agent, "echo recorded-$((6*7)); printf \"caf\\303\\251\\n\"");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("this session is recorded by the node's kubectl-ns policy (its output)"),
        "{out}"
    );

    let end = end_line(&r.agent);
    let files = r.rec.files();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let played = asciinema_play(file);
    assert!(played.contains("recorded-42"), "{played:?}");
    assert!(played.contains("café"), "{played:?}");
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(file).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(100), Some(30))
    );

    let bytes = std::fs::read(file).unwrap();
    let rec = &end["recording"];
    assert_eq!(rec["name"], file.file_name().unwrap().to_str().unwrap());
    assert_eq!(rec["size"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(rec["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)));
    let start = r
        .agent
        .audit()
        .into_iter()
        .find(|l| l["event"] == "start")
        .expect("a start line");
    assert_eq!(start["recording"]["name"], rec["name"]);

    let mode =
        |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions());
    assert_eq!(mode(&r.rec.dir) & 0o777, 0o700);
    assert_eq!(mode(file) & 0o777, 0o600);
}

#[test]
fn record_tty_leaves_sessions_nobody_drives_unrecorded_and_unannounced() {
    let r = agent_recording("recording:\n  record: tty\n");
    let o = exec(&r.agent.addr(), "node", &["-n"], &["echo", "plain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("recorded"), "{}", stderr(&o));
    assert!(r.rec.files().is_empty());
    // With stdin, a person can drive a shell (or make a terminal of it on
    // the node): recorded as a terminal session is.
    let o = exec(&r.agent.addr(), "node", &["-n", "--stdin"], &["cat"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("this session is recorded"), "{}", stderr(&o));
    assert_eq!(r.rec.files().len(), 1);
}

#[test]
fn record_all_with_input_keeps_stdout_stderr_and_what_was_typed() {
    let r = agent_recording("recording:\n  record: all\n  input: true\n");
    let mut child = bins::exec_command(
        &r.agent.addr(),
        "node",
        &["-n", "--stdin"],
        &["sh", "-c", "read l; echo out-$l; echo err-$l >&2"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // While it waits for its input, the live listing says it is recorded.
    let listed = || -> serde_json::Value {
        let o = bins::kns(&["sessions", "--agent", &r.agent.addr(), "-o", "json"]);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)))
    };
    assert!(
        wait_until(Duration::from_secs(10), || listed()["sessions"][0].is_object()),
        "never listed"
    );
    let file = r.rec.files()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(listed()["sessions"][0]["recording"], file.as_str());
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(its output and what you type)"),
        "{}",
        stderr(&o)
    );
    end_line(&r.agent);
    let files = r.rec.files();
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> String {
        events
            .iter()
            .filter(|e| e[1] == kind)
            .map(|e| e[2].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(of("i"), "typed\n", "{text}");
    let out = of("o");
    assert!(
        out.contains("out-typed\n") && out.contains("err-typed\n"),
        "{out:?}"
    );
}

#[test]
fn a_session_the_policy_records_is_refused_when_its_recording_cannot_be_made() {
    // The directory's place is a file: nothing can be made there.
    let r = agent_recording("recording:\n  record: all\n");
    std::fs::write(&r.rec.dir, "not a directory").unwrap();
    let o = exec(
        &r.agent.addr(),
        "node",
        &["-n"],
        &["sh", "-c", "echo ran > /dev/null; echo ran"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "the tool ran: {}", stdout(&o));
    assert!(
        stderr(&o).contains("records this session (recording), but the agent cannot"),
        "{}",
        stderr(&o)
    );
    let denied = r
        .agent
        .audit()
        .into_iter()
        .find(|l| l["event"] == "denied")
        .expect("a denied line");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("recordings directory"),
        "{denied}"
    );
}
