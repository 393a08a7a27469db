//! The agent refuses to start without a readable node reference process
//! and stops when it exits, saying what to do, and rejects bad listen
//! addresses before serving.

use std::process::Command;

use kns_tests::bins;

#[test]
fn unreadable_node_reference_is_explained() {
    let o = Command::new(bins::agent())
        .args([
            "--listen",
            "unix:///tmp/kns-never.sock",
            "--node-pid",
            "2147483600",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot use process 2147483600 as the node reference"),
        "{err}"
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("Hint:") && err.contains("--node-pid"), "{err}");
}

#[test]
fn bad_listen_address_is_a_usage_error() {
    let o = Command::new(bins::agent())
        .args(["--listen", "localhost:80"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("expected unix:///PATH, tcp://IP:PORT or tls://IP:PORT")
    );
}

#[test]
fn a_socket_another_agent_serves_is_not_taken_over() {
    kns_tests::require_root();
    let first = kns_tests::agent::Agent::start(None);
    let second = Command::new(bins::agent())
        .args([
            "--listen",
            &first.addr(),
            "--node-pid",
            &std::process::id().to_string(),
        ])
        .env("KNS_CRI_ENDPOINT", "/nonexistent/cri.sock")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = second.id();
    let o = second.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another agent serves it"), "{err}");
    // Failing to start, it leaves no sessions' cgroup behind either.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .trim_start_matches('/');
    let leftover = kns_tests::agent::unified_mount()
        .join(own)
        .join(format!("kns-sessions-{pid}"));
    assert!(!leftover.exists(), "{} was left", leftover.display());
    // The first agent still serves its socket.
    let o = bins::exec(&first.addr(), "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}", bins::stderr(&o));
}

/// Without --listen the agent serves a unix socket only root can connect
/// to, in a directory only root can enter: with umask 0, a socket bound
/// and then chmod-ed would be open to all for a moment, and a directory
/// made with the umask's mode would let anyone in.
#[test]
fn by_default_the_agent_listens_on_a_root_only_unix_socket() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    kns_tests::require_root();
    // A /run of its own, so the default path is this test's alone.
    let mut agent = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs tmpfs /run && umask 0 && exec "$0" --node-pid "$1""#)
        .arg(bins::agent())
        .arg(std::process::id().to_string())
        .env("KNS_CRI_ENDPOINT", "/nonexistent/cri.sock")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // unshare and sh exec: the PID is the agent's.
    let dir = std::path::PathBuf::from(format!("/proc/{}/root/run/kubectl-ns", agent.id()));
    let socket = dir.join("agent.sock");
    let up = kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket())
    });
    let modes = up.then(|| {
        let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        (mode(&dir), mode(&socket))
    });
    let served = up.then(|| {
        bins::exec(
            &format!("unix://{}", socket.display()),
            "node",
            &["-n"],
            &["true"],
        )
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
    assert!(up, "the agent never made {}", socket.display());
    assert_eq!(modes, Some((0o700, 0o600)), "(directory, socket) modes");
    let o = served.unwrap();
    assert!(o.status.success(), "{}", bins::stderr(&o));
}

/// `--node-pid` names a process by its PID, which the kernel hands out
/// again once that process has gone: the agent stops rather than take
/// whatever holds it next for the node.
#[test]
fn the_agent_stops_when_its_node_reference_exits() {
    kns_tests::require_root();
    let mut reference = Command::new("sleep").arg("600").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(bins::agent())
        .arg("--listen")
        .arg(format!("unix://{}", socket.display()))
        .args(["--node-pid", &reference.id().to_string()])
        .env("KNS_CRI_ENDPOINT", "/nonexistent/cri.sock")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("unix://{}", socket.display());
    let served = kns_tests::wait_until(std::time::Duration::from_secs(10), || socket.exists());
    assert!(served, "the agent never listened");
    let o = bins::exec(&addr, "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}", bins::stderr(&o));

    reference.kill().unwrap();
    reference.wait().unwrap();
    let stopped = kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        agent.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = agent.kill();
    }
    let o = agent.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        stopped,
        "the agent still serves without its node reference: {err}"
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the node reference process"), "{err}");
    assert!(err.contains("Hint:") && err.contains("--node-pid"), "{err}");
}
