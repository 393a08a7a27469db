//! With the runtime gone (containerd stopped, containers still running under
//! their shims) a container is found by scanning /proc cgroups.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::require_root;

#[test]
fn container_is_found_through_cgroups_when_the_cri_is_down() {
    require_root();
    let netns = || std::fs::read_dir("/run/netns").map(|d| d.count()).unwrap_or(0);
    let netns_before = netns();
    let lab = Lab::start_temp().unwrap_or_else(|e| panic!("{e:#}"));
    let pod = lab.run_pod(&PodSpec::httpd("fallback", 8090)).unwrap();
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    lab.stop_daemon();
    let o = exec(
        &agent.addr(),
        &format!("container/{}", &pod.container_id[..16]),
        &["-n"],
        &["ss", "-lnt"],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
    assert!(stdout(&o).contains(":8090"), "{}", stdout(&o));
    assert!(
        agent.logs().contains("scanning /proc cgroups"),
        "{}",
        agent.logs()
    );
    drop(agent);

    // Teardown with the runtime gone still removes the pod's processes,
    // cgroups and bridge.
    let (cgroup, bridge) = (lab.cgroup_parent(), lab.bridge());
    drop(lab);
    let pids = std::path::Path::new("/sys/fs/cgroup/pids").join(cgroup.trim_start_matches('/'));
    assert!(!pids.exists(), "{} left behind", pids.display());
    assert!(
        !std::path::Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left behind"
    );
    assert_eq!(
        netns(),
        netns_before,
        "a pod network namespace was left in /run/netns"
    );
}
