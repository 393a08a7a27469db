//! The agent image, run as the DaemonSet runs it: scripts/image's archive,
//! imported into a real containerd, and started from the DaemonSet's own
//! container spec mapped to the CRI as the kubelet maps it (command, args,
//! env, securityContext, hostPath mounts, hostPID), so any drift between
//! the manifest and the image fails here. Then the agent is reached where
//! the kubelet's port-forward reaches it, on 127.0.0.1:7469 inside the
//! pod's own network namespace, and used to enter another pod.
//!
//! Test-only patches, as a kustomize overlay would make them: KNS_NODE_PID
//! (PID 1 is unreadable on these machines; this test process, visible
//! through hostPID, is the node reference), the CRI socket directory
//! (the lab's containerd), and, where no API server is given,
//! KNS_INSECURE_SKIP_AUTHZ. With the fake API server the pod gets its
//! ServiceAccount mount and in-cluster address as the kubelet gives them,
//! and the image's defaults check every caller.
//! The pod is bound to a node, as the scheduler binds it.
//!
//! The toolbox variant (`scripts/image --toolbox`) runs the same way, and
//! its tools run through `--tools agent`.

use std::path::Path;
use std::process::Output;

use kns_plugin::kube::manifests;
use kns_tests::agent_pod::{AgentPod, archive, manifest_pod, read, toolbox_archive};
use kns_tests::bins::{stderr, stdout};
use kns_tests::cluster::AGENT_NAMESPACE;
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{FakeApi, Grant, agent_pod, running_pod};
use kns_tests::require_root;

/// A capability set (`CapEff:`, …) from a /proc/PID/status text.
fn caps(status: &str, set: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(set))
        .unwrap_or_else(|| panic!("no {set} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn status_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
    stdout(o)
}

#[test]
fn agent_image_runs_as_the_daemonset_runs_it() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    let target = lab.run_pod(&PodSpec::httpd("agent-pod-target", 8280)).unwrap();
    let agent = AgentPod::start(&lab, "kubectl-ns-agent", &target, None, |_| {});

    // The agent is in its own network namespace, not the node's.
    assert_ne!(
        kns_tests::ns_inode(agent.pid, "net"),
        kns_tests::ns_inode(std::process::id() as i32, "net")
    );
    // The cgroupfs the runtime gives a pod, where the agent makes its
    // sessions' cgroups, follows the node's layout: on a cgroup v2 node
    // (scripts/vm-test's VM) a private cgroup namespace and the unified
    // hierarchy at /sys/fs/cgroup, rooted at the container's own cgroup,
    // read-only (as the target keeps it: the agent remounts its own copy
    // writable); on a v1 hybrid node the node's cgroup namespace and no
    // unified hierarchy at all.
    let node_v2 = kns_tests::agent::cgroup_mounts().iter().all(|m| m.unified);
    let own_cgroupns =
        kns_tests::ns_inode(agent.pid, "cgroup") != kns_tests::ns_inode(std::process::id() as i32, "cgroup");
    let cgroup2 = |pid: i32| -> Vec<Vec<String>> {
        read(Path::new(&format!("/proc/{pid}/mountinfo")))
            .lines()
            .filter(|l| l.contains(" - cgroup2 "))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    let target_pid = lab.container_pid(&target.container_id).unwrap();
    if node_v2 {
        assert!(own_cgroupns, "no cgroup namespace of its own");
        for (pid, id) in [
            (agent.pid, &agent.pod.container_id),
            (target_pid, &target.container_id),
        ] {
            let mounts = cgroup2(pid);
            let m = mounts
                .iter()
                .find(|m| m[4] == "/sys/fs/cgroup")
                .unwrap_or_else(|| panic!("no cgroup2 at /sys/fs/cgroup: {mounts:?}"));
            assert!(m[3].ends_with(id.as_str()), "{m:?}");
            assert!(pid == agent.pid || m[5].starts_with("ro,"), "{m:?}");
        }
    } else {
        assert!(!own_cgroupns, "a cgroup namespace of its own");
        assert!(cgroup2(agent.pid).is_empty(), "{:?}", cgroup2(agent.pid));
    }
    let out = ok(&agent.exec(&["-n"], &["ss", "-lntp"]));
    assert!(out.contains(":8280") && out.contains("httpd"), "{out}");
    let out = ok(&agent.exec(&["-p"], &["ps", "-eo", "pid,comm"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    let o = agent.exec(&["-m"], &["ss"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // -m runs the image's binary with the container's identity: the
    // manifest's capabilities cover the runtime's default set, so the tool
    // has exactly the container's.
    let tool = ok(&agent.exec(&["-m", "-p"], &["cat", "/proc/self/status"]));
    let container = status_of(lab.container_pid(&target.container_id).unwrap());
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps(&tool, set), caps(&container, set), "{set}\n{tool}");
    }
    // Namespaces not chosen are the node's, not the agent pod's.
    let node = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(ok(&agent.exec(&["-p"], &["hostname"])).trim(), node);
    // The node's interfaces: the lab's bridge exists only there (the other
    // test adds pods meanwhile, so the lists are not compared whole).
    let out = ok(&agent.exec(&["-p"], &["ip", "-br", "link"]));
    assert!(out.contains(&lab.bridge()), "{out}");
    // The agent's own listener is out of the tools' reach.
    assert!(!ok(&agent.exec(&["-p"], &["ss", "-lnt"])).contains("127.0.0.1:7469"));
    // The manifest's metrics port, on every address of the pod, answers
    // scrapes with the sessions just run.
    let port = manifest_pod().containers[0].ports.clone().unwrap_or_default();
    assert_eq!(port.len(), 1, "{port:?}");
    let metrics_port = port[0].container_port as u16;
    assert!(kns_tests::listens(agent.pid, metrics_port), "{}", agent.log());
    let text = kns_tests::http_in_netns(agent.pid, metrics_port, "GET /metrics HTTP/1.0");
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}\n{}", agent.log());
    let started = text
        .lines()
        .find_map(|l| l.strip_prefix("kubectl_ns_sessions_started_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(started.is_some_and(|n| n >= 5), "{text}");
    // The runtime that answered the agent, named as its Version said.
    assert!(
        text.lines().any(|l| l.starts_with("kubectl_ns_agent_build_info{")
            && l.contains("runtime=\"containerd\"")
            && l.ends_with("} 1")),
        "{text}"
    );

    let probe = manifest_pod().containers[0]
        .readiness_probe
        .clone()
        .and_then(|p| p.exec)
        .and_then(|e| e.command)
        .unwrap();
    ok(&agent.probe(&probe));
}

/// A container given capabilities beyond the runtime's default: those the
/// agent holds reach a -m tool whole; one it does not hold cannot be given
/// (a process cannot grant what it lacks), and the plugin names it.
#[test]
fn minus_m_tools_have_the_containers_added_capabilities() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    let mut spec = PodSpec::httpd("agent-pod-target-caps", 8284);
    spec.caps_add = vec!["NET_ADMIN".into(), "SYS_PTRACE".into()];
    let held = lab.run_pod(&spec).unwrap();
    let mut spec = PodSpec::httpd("agent-pod-target-caps-time", 8285);
    spec.caps_add = vec!["SYS_TIME".into()];
    let beyond = lab.run_pod(&spec).unwrap();
    let agent = AgentPod::start(&lab, "kubectl-ns-agent-caps", &held, None, |_| {});

    let tool = ok(&agent.exec(&["-m", "-p"], &["cat", "/proc/self/status"]));
    let container = status_of(lab.container_pid(&held.container_id).unwrap());
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps(&tool, set), caps(&container, set), "{set}\n{tool}");
    }

    let o = agent.exec_in(
        &format!("container/{}", beyond.container_id),
        &["-m", "-p"],
        &["cat", "/proc/self/status"],
    );
    let tool = ok(&o);
    let container = status_of(lab.container_pid(&beyond.container_id).unwrap());
    let own = status_of(agent.pid);
    const SYS_TIME: u64 = 1 << 25;
    assert_ne!(caps(&container, "CapEff:") & SYS_TIME, 0, "{container}");
    for set in ["CapEff:", "CapBnd:"] {
        assert_eq!(
            caps(&tool, set),
            caps(&container, set) & caps(&own, set),
            "{set}\n{tool}"
        );
    }
    assert!(stderr(&o).contains("CAP_SYS_TIME"), "{}", stderr(&o));
}

/// A manifest that gives only args (as before `command:` was added, or a
/// user's own overlay) relies on the image's Entrypoint: with a Cmd-only
/// image the kubelet would run `--listen` as the program.
#[test]
fn agent_image_runs_with_args_only() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    let target = lab.run_pod(&PodSpec::httpd("agent-pod-target-2", 8281)).unwrap();
    let agent = AgentPod::start(&lab, "kubectl-ns-agent-args", &target, None, |pod| {
        pod.containers[0].command = None;
    });
    let out = ok(&agent.exec(&["-n"], &["ss", "-lnt"]));
    assert!(out.contains(":8281"), "{out}");
}

/// The toolbox image, deployed as `kubectl ns install --image …-toolbox`
/// would (the manifest's pod with only the image changed): its tools run
/// from the agent's own filesystem (`--tools agent`) inside the target's
/// namespaces, as node root, in a mount namespace of their own.
#[test]
fn toolbox_image_runs_its_own_tools_in_the_targets_namespaces() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&toolbox_archive()).unwrap();
    let target = lab.run_pod(&PodSpec::httpd("agent-pod-target-tb", 8282)).unwrap();
    let agent = AgentPod::start(&lab, "kubectl-ns-agent-toolbox", &target, None, |pod| {
        pod.containers[0].image = Some(format!("{}-toolbox", manifests::default_image()));
    });
    let tools = ["-n", "--tools", "agent"];

    // The listener exists only in the target's network namespace; the
    // agent binary at / only in the agent's image, which this machine's
    // filesystem has not.
    assert!(!Path::new("/kubectl-ns-agent").exists());
    let out = ok(&agent.exec(&tools, &["sh", "-c", "ls /kubectl-ns-agent && ss -ltn"]));
    assert!(
        out.starts_with("/kubectl-ns-agent\n") && out.contains(":8282"),
        "{out}"
    );
    assert!(
        !out.contains("127.0.0.1:7469"),
        "the agent pod's own network: {out}"
    );
    // The image's busybox, not this machine's coreutils.
    assert_eq!(
        ok(&agent.exec(&tools, &["readlink", "/proc/self/exe"])).trim(),
        "/usr/bin/busybox"
    );
    // Every tool loads with the libraries the image brought for it, and
    // works where it runs: tcpdump sees the target's interfaces, strace
    // traces.
    for tool in [
        &["ip", "-V"][..],
        &["ps", "-V"],
        &["top", "-V"],
        &["dig", "-v"],
        &["strace", "-o", "/dev/null", "true"],
    ] {
        ok(&agent.exec(&tools, tool));
    }
    let out = ok(&agent.exec(&tools, &["tcpdump", "-D"]));
    assert!(out.contains("eth0"), "{out}");
    // -p: the image's ps sees the target's processes through a /proc of
    // the target's PID namespace (httpd, and ps itself).
    let out = ok(&agent.exec(&["-p", "--tools", "agent"], &["ps", "-eo", "pid,comm"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("httpd") && out.contains("ps"), "{out}");
    // What the tool mounts stays in its own mount namespace.
    ok(&agent.exec(
        &tools,
        &["sh", "-c", "mount -t tmpfs kns /tmp && touch /tmp/kns-mark"],
    ));
    assert!(!Path::new(&format!("/proc/{}/root/tmp/kns-mark", agent.pid)).exists());

    // A tool the node lacks: 127, and the hint names where to get one.
    let o = agent.exec(&["-n"], &["no-such-tool-kns"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tools agent"), "{}", stderr(&o));
    let o = agent.exec(&["-n"], &["/kubectl-ns-agent", "--version"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("this node's kubectl-ns agent image has /kubectl-ns-agent: add --tools agent"),
        "{}",
        stderr(&o)
    );
    // The mount namespace is where the tools come from: one or the other.
    let o = agent.exec(&["-m", "--tools", "agent"], &["ss"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The image's defaults, with no test overlay for access: the agent finds
/// the API server from its ServiceAccount mount and checks every caller
/// that comes through the port-forward, by token and by client certificate.
#[test]
fn in_its_pod_the_image_checks_every_caller_with_the_api_server() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    // The API's pod is the runtime's: the agent judges a container by the
    // pod its runtime labels name.
    let web = "agent-pod-target-authz";
    let target = lab.run_pod(&PodSpec::httpd(web, 8283)).unwrap();
    let api = FakeApi::start();
    let agent = AgentPod::start(&lab, "kubectl-ns-agent-authz", &target, Some(&api), |_| {});
    api.add_node("lab-node");
    api.add_pod(running_pod(
        "default",
        web,
        "lab-node",
        &[("app", &target.container_id)],
    ));
    api.add_pod(agent_pod("kubectl-ns-agent-authz", "lab-node"));
    api.forward(AGENT_NAMESPACE, "kubectl-ns-agent-authz", agent.pid);
    api.add_user("bob-token", "bob", &["system:authenticated"]);
    api.set_grants(Vec::new());
    let exec = |kubeconfig: &Path, argv: &[&str]| {
        let mut args = vec!["exec", web, "-m", "--"];
        args.extend_from_slice(argv);
        api.kns_command_as(kubeconfig, &args)
            .output()
            .expect("run kubectl-ns")
    };
    let bob = api.kubeconfig_for("token: bob-token");
    let o = exec(&bob, &["true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("bob may not create pods/exec on pod default/{web}")),
        "{}",
        stderr(&o)
    );
    api.set_grants(vec![
        Grant::new("bob", "create", "", "pods/exec").in_namespace("default"),
        Grant::new("group:devs", "create", "", "pods/exec").in_namespace("default"),
    ]);
    assert_eq!(ok(&exec(&bob, &["echo", "hi"])), "hi\n");
    let carol = api.kubeconfig_with_cert("carol", Some("devs"));
    assert_eq!(ok(&exec(&carol, &["echo", "hi"])), "hi\n");
    // The agent asked the API server about each of them.
    let users: Vec<String> = api
        .reviews()
        .iter()
        .filter(|r| r["kind"] == "SubjectAccessReview")
        .map(|r| r["spec"]["user"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        users.contains(&"bob".to_owned()) && users.contains(&"carol".to_owned()),
        "{users:?}"
    );
}
