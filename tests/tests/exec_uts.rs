//! `-u`: the target's hostname.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

#[test]
fn hostname_is_the_targets() {
    require_root();
    let t = NsProcess::spawn(&["--uts"], "hostname kns-uts-target && exec sleep 1000");
    t.wait_ready("hostname set", || {
        std::fs::read_to_string(format!("/proc/{}/comm", t.pid)).is_ok_and(|c| c.trim() == "sleep")
    });
    let agent = Agent::start(None);
    let o = exec(&agent.addr(), &t.target(), &["-u"], &["hostname"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "kns-uts-target");
    let node = exec(&agent.addr(), "node", &["-u"], &["hostname"]);
    assert_ne!(stdout(&node).trim(), "kns-uts-target");
}
