//! `-n`: the node's `ss` sees a listener that exists only inside the
//! target's network namespace; through both ways of joining namespaces.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

const PORT: u16 = 45321;

fn listener() -> NsProcess {
    let t = NsProcess::spawn(
        &["--net"],
        &format!("ip link set lo up; exec busybox httpd -f -p 127.0.0.1:{PORT} -h /tmp"),
    );
    // /proc/PID/net/tcp is the target's own netns view; 0A is LISTEN.
    let hex = format!(":{PORT:04X} 00000000:0000 0A");
    t.wait_ready("httpd listening", || {
        std::fs::read_to_string(format!("/proc/{}/net/tcp", t.pid)).is_ok_and(|s| s.contains(&hex))
    });
    t
}

fn check(agent: &Agent, t: &NsProcess) {
    let o = exec(&agent.addr(), &t.target(), &["-n"], &["ss", "-lnt"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
    assert!(
        stdout(&o).contains(&format!("127.0.0.1:{PORT}")),
        "{}",
        stdout(&o)
    );

    // The node's own network namespace has no such listener.
    let o = exec(&agent.addr(), "node", &["-n"], &["ss", "-lnt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(&format!(":{PORT}")), "{}", stdout(&o));
}

#[test]
fn ss_sees_only_the_targets_listener() {
    require_root();
    let t = listener();
    let agent = Agent::start(None);
    check(&agent, &t);
}

#[test]
fn per_namespace_file_fallback_enters_the_same_namespace() {
    require_root();
    let t = listener();
    let agent = Agent::start_with_env(None, &[("KNS_NSFD_FALLBACK", "1")]);
    check(&agent, &t);
}
