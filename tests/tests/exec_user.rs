//! `-U`: a target's own user namespace is entered (its uid map applies);
//! a target that shares the agent's user namespace is still entered (the
//! kernel refuses to rejoin one's own user namespace, so it is skipped).

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, kns, stderr, stdout};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

#[test]
fn enters_a_targets_own_user_namespace() {
    require_root();
    // Root inside maps to an unprivileged uid outside.
    let t = NsProcess::spawn(
        &["--user", "--map-user=0", "--map-group=0", "--net"],
        "exec sleep 1000",
    );
    t.wait_ready("uid map written", || {
        std::fs::read_to_string(format!("/proc/{}/uid_map", t.pid)).is_ok_and(|m| !m.trim().is_empty())
    });
    let agent = Agent::start(None);
    let target = t.target();
    let inside = std::fs::read_to_string(format!("/proc/{}/uid_map", t.pid)).unwrap();
    let o = exec(
        &agent.addr(),
        &target,
        &["-U", "-n"],
        &["cat", "/proc/self/uid_map"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).split_whitespace().collect::<Vec<_>>(),
        inside.split_whitespace().collect::<Vec<_>>()
    );
    // ls reports the same map, next to the host's.
    let o = kns(&["ls", "--agent", &agent.addr(), &target, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let user = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "user")
        .unwrap()
        .clone();
    assert_eq!(user["verdict"], "private");
}

#[test]
fn user_namespace_shared_with_the_agent_is_not_an_error() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let agent = Agent::start(None);
    let o = exec(&agent.addr(), &t.target(), &["-a"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // -U alone then leaves nothing to join: still not an error.
    let o = exec(&agent.addr(), &t.target(), &["-U"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn becomes_root_in_a_user_namespace_whose_root_is_not_host_root() {
    require_root();
    // Root inside is host uid/gid 100000, as in a pod with hostUsers: false.
    // The maps are written from here, as the runtime writes them (unshare's
    // --map-users would need newuidmap).
    let t = NsProcess::spawn(&["--user", "--net"], "exec sleep 1000");
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", t.pid), "0 100000 65536\n").unwrap();
    }
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-U", "-n"],
        &["sh", "-c", "id -u; id -g; grep ^CapEff /proc/self/status"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["0", "0"], "not root in the user namespace: {out}");
    // Root there holds that namespace's capabilities, not none as the
    // overflow uid would.
    let cap_eff = u64::from_str_radix(lines[2].split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(cap_eff, 0, "{out}");
}

/// A user namespace whose root is host uid/gid 100000; with `deny`, the
/// runtime has forbidden setgroups(2) in it, as rootless runtimes do.
fn mapped_target(setgroups: &str) -> NsProcess {
    let t = NsProcess::spawn(&["--user", "--net"], "exec sleep 1000");
    std::fs::write(format!("/proc/{}/setgroups", t.pid), setgroups).unwrap();
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", t.pid), "0 100000 65536\n").unwrap();
    }
    t
}

#[test]
fn the_agents_groups_do_not_follow_into_a_user_namespace_that_denies_setgroups() {
    require_root();
    let t = mapped_target("deny");
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-U", "-n"],
        &["grep", "^Groups:", "/proc/self/status"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Host group 0 kept would show as the overflow gid and still open
    // root-group files on the node.
    assert_eq!(stdout(&o).trim(), "Groups:", "{}", stdout(&o));
}

#[test]
fn a_tool_in_a_user_namespace_dies_with_the_agent() {
    require_root();
    let t = mapped_target("allow");
    let mut agent = Agent::start(None);
    let client = kns_tests::bins::exec_command(&agent.addr(), &t.target(), &["-U", "-n"], &["sleep", "7171"])
        .spawn()
        .unwrap();
    let up = kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        kns_tests::running(&["sleep", "7171"])
    });
    assert!(up, "the tool never started");
    agent.kill();
    // setresuid(2) to a mapped uid clears the parent-death signal: it must
    // be armed after.
    let gone = kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !kns_tests::running(&["sleep", "7171"])
    });
    let _ = client.wait_with_output();
    assert!(gone, "the tool outlived the agent");
}
