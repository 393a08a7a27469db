//! Usage errors exit 2 with a message that says what to do; kubectl-ns's
//! own failures exit 255 with a hint.

use kns_tests::bins::{kns, stderr};

#[test]
fn no_namespace_is_a_usage_error() {
    let o = kns(&[
        "exec",
        "--agent",
        "unix:///nonexistent.sock",
        "node",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no namespace chosen"), "{}", stderr(&o));
}

#[test]
fn dash_n_with_a_name_points_to_namespace_flag() {
    let o = kns(&[
        "exec",
        "--agent",
        "unix:///x.sock",
        "-n",
        "prod",
        "pid/1",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--namespace prod"), "{}", stderr(&o));
}

#[test]
fn bad_target_is_a_usage_error() {
    let o = kns(&["exec", "--agent", "unix:///x.sock", "pid/abc", "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a PID"), "{}", stderr(&o));
}

#[test]
fn unreachable_agent_fails_with_a_hint() {
    let o = kns(&[
        "exec",
        "--agent",
        "unix:///nonexistent/kns.sock",
        "node",
        "-n",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(
        err.contains("cannot reach the agent at unix:///nonexistent/kns.sock"),
        "{err}"
    );
    assert!(err.contains("Hint:"), "{err}");
}

#[test]
fn help_teaches_the_namespace_flags() {
    let o = kns(&["exec", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for s in [
        "cannot reach a dependency",
        "-n (net)",
        "--no-mount-proc",
        "Examples:",
    ] {
        assert!(help.contains(s), "--help lacks {s:?}:\n{help}");
    }
}
