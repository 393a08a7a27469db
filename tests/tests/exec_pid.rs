//! `-p`: the tool is inside the target's PID namespace and /proc matches
//! it, so `ps` shows the target's processes and nothing of the node's.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

fn target() -> NsProcess {
    let t = NsProcess::spawn(
        &["--pid", "--mount-proc"],
        "sleep 1001 & sleep 1002 & exec sleep 1003",
    );
    t.wait_ready("three sleeps", || {
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", t.pid, t.pid))
            .is_ok_and(|c| c.split_whitespace().count() == 2)
            && std::fs::read(format!("/proc/{}/cmdline", t.pid)).is_ok_and(|c| c == b"sleep\x001003\x00")
    });
    t
}

#[test]
fn ps_shows_only_the_targets_processes() {
    require_root();
    let t = target();
    let agent = Agent::start(None);
    let o = exec(&agent.addr(), &t.target(), &["-p"], &["ps", "-eo", "pid,args"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    // The three sleeps and ps itself; PID 1 is the target.
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows.iter().any(|r| r.trim_start().starts_with("1 sleep 1003")),
        "{out}"
    );
    assert!(!out.contains("kubectl-ns"), "{out}");
}

#[test]
fn no_mount_proc_keeps_the_nodes_proc() {
    require_root();
    let t = target();
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-p", "--no-mount-proc"],
        &["ps", "-eo", "pid,args"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The node's /proc lists the agent itself.
    assert!(stdout(&o).contains("kubectl-ns-agent"), "{}", stdout(&o));
}

#[test]
fn private_proc_does_not_leak_into_the_nodes_mount_table() {
    require_root();
    let t = target();
    let agent = Agent::start(None);
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let o = exec(&agent.addr(), &t.target(), &["-p"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before.lines().count(), after.lines().count());
}
