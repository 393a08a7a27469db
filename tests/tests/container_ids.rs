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
        ("abc", 255, "too short"),
    ] {
        let o = exec(&agent.addr(), &format!("container/{id}"), &["-n"], &["true"]);
        assert_eq!(o.status.code(), Some(code), "{id}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{id}: {}", stderr(&o));
    }
}
