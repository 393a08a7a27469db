//! Nothing a session starts outlives it, and all sessions together are
//! memory-bounded apart from the agent, where it must hold: in the agent's
//! own pod, the image started through the CRI from the DaemonSet's spec on
//! the real containerd, so with runc's own cgroup mounts and the
//! manifest's securityContext and memory limit (`kns_tests::agent_pod`).
//!
//! Layouts covered: on these machines **cgroup v1 hybrid**, where runc
//! mounts only the v1 controllers in the container, read-only, and no
//! cgroup2 at all (as recorded from a real node in
//! shared/fixtures/kube-v1.32); `scripts/vm-test containment` runs this
//! same file in a VM with **cgroup v2** only, where the container has a
//! private cgroup namespace and a read-only cgroup2 at /sys/fs/cgroup.

use std::process::{Child, Stdio};
use std::time::Duration;

use kns_tests::agent_pod::{AgentPod, archive, read};
use kns_tests::bins::stderr;
use kns_tests::cluster::AGENT_NAMESPACE;
use kns_tests::containerd::{Lab, Pod, PodSpec};
use kns_tests::kubeapi::{FakeApi, agent_pod};
use kns_tests::{assert_none_marked, kubelet, ns_inode, require_root, running_pid, wait_marked, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// This node's cgroup layout, by what is mounted where (as an operator
/// would tell it from `mount`).
fn layout() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fstype_at = |point: &str| {
        mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (pre.split_whitespace().nth(4)? == point)
                .then(|| post.split_whitespace().next().map(str::to_owned))?
        })
    };
    match (
        fstype_at("/sys/fs/cgroup").as_deref(),
        fstype_at("/sys/fs/cgroup/unified").as_deref(),
    ) {
        (Some("cgroup2"), _) => "cgroup v2",
        (_, Some("cgroup2")) => "cgroup v1 hybrid",
        _ => "cgroup v1",
    }
}

/// A target pod and an agent pod beside it (with `patch` applied to the
/// DaemonSet's pod, as an overlay would).
fn pods(
    name: &str,
    port: u16,
    patch: impl FnOnce(&mut k8s_openapi::api::core::v1::PodSpec),
) -> (Pod, AgentPod) {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    let target = lab
        .run_pod(&PodSpec::httpd(&format!("{name}-target"), port))
        .unwrap();
    let agent = AgentPod::start(&lab, name, &target, None, patch);
    (target, agent)
}

/// The target's network namespace, where a session with -n runs.
fn target_net(agent: &AgentPod, target: &Pod) -> u64 {
    ns_inode(agent.lab.container_pid(&target.container_id).unwrap(), "net")
}

/// Starts `sh -c SCRIPT` in the target's network namespace and waits until
/// at least `n` processes marked `mark` run there.
fn start(agent: &AgentPod, net: u64, script: &str, mark: &str, n: usize) -> Child {
    let client = agent
        .exec_command(&["-n"], &["sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_marked(net, mark, n, || format!("the agent's log: {}", agent.log()));
    client
}

/// Fails unless every process marked `mark` is gone within 30 s.
fn assert_none_left(agent: &AgentPod, net: u64, mark: &str, what: &str) {
    assert_none_marked(net, mark, &format!("{what} ({})", layout()), || {
        format!("the agent's log: {}", agent.log())
    });
}

#[test]
fn in_its_pod_the_agent_contains_sessions_and_status_says_so() {
    let (_target, agent) = pods("kns-contain-status", 8290, |_| {});
    let log = agent.log();
    assert!(
        log.contains("sessions each run in a cgroup of their own") && !log.contains("no session cgroups"),
        "{log}"
    );
    assert!(log.contains("sessions' memory limit"), "{log}");
    assert!(
        log.contains(layout()),
        "the agent names the node's layout ({}): {log}",
        layout()
    );

    let api = FakeApi::start();
    api.add_node("lab-node");
    api.add_pod(agent_pod("kns-contain-status", "lab-node"));
    api.forward(AGENT_NAMESPACE, "kns-contain-status", agent.pid);
    let o = api.kns(&["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let row = out
        .lines()
        .find(|l| l.starts_with("lab-node"))
        .unwrap_or_else(|| panic!("{out}"));
    // The manifest's KNS_SESSIONS_MEMORY.
    assert!(row.contains("contained, 448Mi"), "{out}");
    assert!(!stderr(&o).contains("cannot give each session"), "{}", stderr(&o));
}

#[test]
fn a_client_killed_with_sigkill_leaves_no_setsid_or_double_forked_process() {
    let (target, agent) = pods("kns-contain-client", 8291, |_| {});
    let net = target_net(&agent, &target);
    // setsid'd, double-forked (reparented, in a session of its own), and a
    // shell job in a process group of its own: all leave the tool's group.
    let mut client = start(
        &agent,
        net,
        "setsid sleep 7111 & (setsid sleep 7111 &); set -m; sleep 7111 & exec sleep 7111",
        "7111",
        4,
    );
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    assert_none_left(
        &agent,
        net,
        "7111",
        "escaped the session after the client's SIGKILL",
    );
}

#[test]
fn a_daemon_the_tool_started_dies_when_the_tool_exits() {
    let (target, agent) = pods("kns-contain-daemon", 8292, |_| {});
    let net = target_net(&agent, &target);
    // The daemon says so once it is in a session of its own, so the tool
    // cannot exit (and have its process group killed) before that.
    let script = "(setsid sh -c 'echo detached; exec sleep 7222' &) | head -n 1";
    let o = agent.exec(&["-n"], &["sh", "-c", script]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "detached\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_none_left(&agent, net, "7222", "a daemon outlived its session");
}

#[test]
fn an_agent_killed_with_sigkill_leaves_nothing_behind() {
    let (target, agent) = pods("kns-contain-agent", 8293, |_| {});
    let net = target_net(&agent, &target);
    let mut client = start(&agent, net, "setsid sleep 7333 & exec sleep 7333", "7333", 2);
    kill(Pid::from_raw(agent.pid), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !running_pid(agent.pid)),
        "the agent did not die"
    );
    assert_none_left(&agent, net, "7333", "outlived the agent");
    let _ = client.kill();
    let _ = client.wait();
}

/// The agent's sessions' cgroup as the node sees it (v2: under
/// /sys/fs/cgroup, the agent's cgroup namespace being its own).
fn sessions_dir(agent_pid: i32) -> std::path::PathBuf {
    let name = format!("kns-sessions-{agent_pid}");
    let o = std::process::Command::new("find")
        .args(["/sys/fs/cgroup", "-type", "d", "-name", &name])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .map(std::path::PathBuf::from);
    found.unwrap_or_else(|| panic!("no {name} under /sys/fs/cgroup"))
}

#[test]
fn a_runaway_tool_is_killed_at_the_sessions_limit_with_a_note_and_the_agent_lives() {
    let (_target, agent) = pods("kns-contain-memory", 8294, |pod| {
        kubelet::set_env(&mut pod.containers[0], "KNS_SESSIONS_MEMORY", "64Mi").unwrap();
    });
    let hog = ["perl", "-e", r#"$x = "a" x (256 << 20); print "survived\n""#];
    let o = agent.exec(&["-n"], &hog);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(137),
        "{err}\nthe agent's log: {}",
        agent.log()
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    assert!(err.contains("memory limit") && err.contains("64 MiB"), "{err}");
    if layout() == "cgroup v2" {
        // memory.max bounds RAM only; the sessions get no swap either (the
        // VM's kernel accounts swap, as Debian's does).
        let dir = sessions_dir(agent.pid);
        assert_eq!(
            read(&dir.join("memory.swap.max")).trim(),
            "0",
            "{}",
            dir.display()
        );
    }
    // Killed by the sessions' limit, not the container's: the agent lives
    // and serves the next session.
    assert!(running_pid(agent.pid), "the agent was killed: {}", agent.log());
    let o = agent.exec(&["-n"], &["true"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.log());
    let small = ["perl", "-e", r#"$x = "a" x (16 << 20); print "survived\n""#];
    let o = agent.exec(&["-n"], &small);
    assert!(o.status.success(), "{}", stderr(&o));
}
