//! The project's binaries, built by `cargo build --workspace` next to the
//! test executables.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// target/<profile>/ of the running test binary (it lives in deps/).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The path of one of the workspace's binaries; panics with the fix when
/// it has not been built.
pub fn path(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins), as ./scripts/test does",
        p.display()
    );
    p
}

pub fn plugin() -> PathBuf {
    path("kubectl-ns")
}

pub fn agent() -> PathBuf {
    path("kubectl-ns-agent")
}

/// Runs `kubectl-ns` with the given arguments and no stdin, to completion.
pub fn kns(args: &[&str]) -> Output {
    Command::new(plugin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-ns")
}

/// `kubectl-ns exec --agent ADDR TARGET FLAGS -- CMD`, not yet started,
/// for tests that drive its stdio or signal it.
pub fn exec_command(agent: &str, target: &str, flags: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(plugin());
    c.args(["exec", "--agent", agent, target])
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null());
    c
}

/// Runs `kubectl-ns exec --agent ADDR TARGET FLAGS -- CMD` to completion.
pub fn exec(agent: &str, target: &str, flags: &[&str], cmd: &[&str]) -> Output {
    exec_command(agent, target, flags, cmd)
        .output()
        .expect("run kubectl-ns")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts `kubectl-ns exec --agent ADDR node -n -- sh -c SCRIPT`, with stdout
/// and stderr piped, and waits for the script's first line, which must be
/// `ready`: the session is open. Returns the client and the rest of its
/// stdout.
pub fn start_ready(agent: &str, script: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = exec_command(agent, "node", &["-n"], &["sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl-ns");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the script's first line");
    assert_eq!(line, "ready\n", "the session did not start");
    (child, out)
}
