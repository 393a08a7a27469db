//! Container IDs from clients: never a path, never so short they match
//! anything, and a prefix that names two containers is an error listing
//! them — also when containers are found by their cgroups, without a
//! runtime.

use std::process::{Child, Command};
use std::time::Duration;

use kns_tests::agent::{Agent, AgentCgroup};
use kns_tests::bins::{exec, stderr};
use kns_tests::{require_root, wait_until};

/// A process in a cgroup named like a container's (cgroupfs driver).
struct FakeContainer {
    child: Child,
    _cgroup: AgentCgroup,
}

fn container(id: &str) -> FakeContainer {
    let cgroup = AgentCgroup::named(id);
    let child = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(cgroup.dir.join("cgroup.procs"), child.id().to_string()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).is_ok_and(|c| c.contains(id))
    }));
    FakeContainer {
        child,
        _cgroup: cgroup,
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates_in_the_cgroup_fallback() {
    require_root();
    let a = format!("abcd{}", "1".repeat(60));
    let b = format!("abcd{}", "2".repeat(60));
    let _a = container(&a);
    let _b = container(&b);
    // No runtime at all: containers are found by their cgroups.
    let agent = Agent::start(Some("/nonexistent/cri.sock"));
    let o = exec(&agent.addr(), "container/abcd", &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ambiguous") && err.contains(&a[..12]) && err.contains(&b[..12]),
        "{err}"
    );
    // One more digit names one of them.
    let o = exec(&agent.addr(), "container/abcd1", &["-n"], &["true"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
}

#[test]
fn ids_that_are_paths_or_too_short_are_refused() {
    require_root();
    let agent = Agent::start(Some("/nonexistent/cri.sock"));
    // The plugin refuses paths itself (a usage error); the agent checks
    // again, as it must for any client (see the service's unit tests).
    for (id, code, says) in [
        ("../../etc", 2, "not a container ID"),
        ("abcd/../x", 2, "not a container ID"),
        ("abc", 2, "too short"),
        ("zzzz", 2, "not a container ID"),
    ] {
        let o = exec(&agent.addr(), &format!("container/{id}"), &["-n"], &["true"]);
        assert_eq!(o.status.code(), Some(code), "{id}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{id}: {}", stderr(&o));
    }
}

#[test]
fn a_runtime_that_accepts_but_never_answers_does_not_hang_a_session() {
    require_root();
    let id = format!("beef{}", "3".repeat(60));
    let _c = container(&id);
    // A socket that takes connections and never says a word, as a wedged
    // runtime does: every CRI call must give up on its own.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let agent = Agent::start(Some(socket.to_str().unwrap()));
    let mut session = kns_tests::bins::exec_command(
        &agent.addr(),
        &format!("container/{}", &id[..12]),
        &["-n"],
        &["true"],
    )
    .spawn()
    .unwrap();
    // Generous: each CRI call gives up after a few seconds, then the
    // container is found through its cgroup.
    let ended = wait_until(Duration::from_secs(30), || {
        session.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = session.kill();
    }
    assert!(
        ended,
        "the session hung on a runtime that never answers\n{}",
        agent.logs()
    );
    assert!(session.wait().unwrap().success(), "{}", agent.logs());
    assert!(
        agent.logs().contains("scanning /proc cgroups"),
        "{}",
        agent.logs()
    );
}
