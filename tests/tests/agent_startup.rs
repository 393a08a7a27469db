//! The agent refuses to start without a readable node reference process,
//! saying what to do, and rejects bad listen addresses before serving.

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
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected unix:///PATH or tcp://IP:PORT"));
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
