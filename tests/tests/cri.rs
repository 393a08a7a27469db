//! Container targets resolved through a real containerd's CRI: a running
//! container (by ID and by prefix), a hostNetwork pod, a sandbox, and a
//! stopped container, also one the agent entered before it stopped.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, kns, stderr, stdout};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::require_root;

fn agent_for(lab: &Lab) -> Agent {
    Agent::start(Some(lab.socket.to_str().unwrap()))
}

#[test]
fn container_by_id_and_prefix_enters_its_network_namespace() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("cri-net", 8080)).unwrap();
    let agent = agent_for(&lab);
    for id in [pod.container_id.as_str(), &pod.container_id[..12]] {
        let o = exec(
            &agent.addr(),
            &format!("container/{id}"),
            &["-n"],
            &["ss", "-lntp"],
        );
        assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
        let out = stdout(&o);
        assert!(out.contains(":8080") && out.contains("httpd"), "{out}");
    }
    // The container's own PID namespace: httpd is PID 1 there.
    let o = exec(
        &agent.addr(),
        &format!("container/{}", pod.container_id),
        &["-p"],
        &["ps", "-eo", "pid,comm"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.split_whitespace().eq(["1", "httpd"])),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn mount_namespace_of_a_busybox_image_lacks_ss() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("cri-mnt", 8081)).unwrap();
    let agent = agent_for(&lab);
    let target = format!("container/{}", pod.container_id);
    let o = exec(&agent.addr(), &target, &["-m"], &["ss"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("container image has no such binary"),
        "{}",
        stderr(&o)
    );
    // The image's own busybox is there.
    let o = exec(&agent.addr(), &target, &["-m", "-p"], &["ls", "/bin/busybox"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn host_network_pod_shares_the_nodes_network_namespace() {
    require_root();
    let lab = Lab::shared();
    let spec = PodSpec {
        name: "cri-hostnet".into(),
        host_network: true,
        command: vec!["/bin/sleep".into(), "100000".into()],
        ..Default::default()
    };
    let pod = lab.run_pod(&spec).unwrap();
    let agent = agent_for(&lab);
    let o = kns(&[
        "ls",
        "--agent",
        &agent.addr(),
        &format!("container/{}", pod.container_id),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict = |kind: &str| {
        v["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == kind)
            .map(|n| n["verdict"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(verdict("net"), "host", "{v}");
    assert_eq!(verdict("pid"), "private", "{v}");
    assert_eq!(verdict("mnt"), "private", "{v}");
    assert_eq!(v["container_id"], pod.container_id.as_str());
}

#[test]
fn sandbox_id_enters_the_pause_process() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("cri-sandbox", 8082)).unwrap();
    let agent = agent_for(&lab);
    let o = exec(
        &agent.addr(),
        &format!("container/{}", pod.sandbox_id),
        &["-u"],
        &["hostname"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "cri-sandbox");
}

#[test]
fn stopped_container_is_refused_naming_its_state() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("cri-stopped", 8083)).unwrap();
    let agent = agent_for(&lab);
    let target = format!("container/{}", pod.container_id);
    // Entered once while it runs: the agent remembers it, and must still
    // hear that it stopped.
    let o = exec(&agent.addr(), &target, &["-n"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    lab.stop_container(&pod.container_id).unwrap();
    let o = exec(&agent.addr(), &target, &["-n"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(err.contains("is not running (state EXITED"), "{err}");
}
