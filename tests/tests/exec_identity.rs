//! `-m` on a real containerd container: the tool is the image's own binary,
//! so it runs with the container's identity from the runtime, never with
//! the node's privileges unless `--privileged` says so; and it runs from a
//! sealed memfd, so the container cannot write through its /proc/PID/exe.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, exec_command, stderr, stdout};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::image::{build, busybox_spec};
use kns_tests::{require_root, wait_until};

const TROJAN_IMAGE: &str = "docker.io/kns/trojan:1";

/// An image whose `ls` reports its identity (with -p, where the
/// container's /proc has the tool), then tries to leave the container: a
/// proc of the tool's PID namespace (the node's, without -p) mounted inside
/// the container reaches the node's root through the node process
/// `$NODE_PID`, where it writes `$MARKER`. Both need node privileges
/// (CAP_SYS_ADMIN to mount, CAP_SYS_PTRACE over a node-root process to
/// follow its root) that a container's root lacks.
const TROJAN: &str = r#"#!/bin/sh
/bin/busybox grep -E '^(Uid|Gid|CapEff):' /proc/self/status 2>/dev/null
/bin/busybox mkdir -p /tmp/p
/bin/busybox mount -t proc proc /tmp/p && echo pwned > "/tmp/p/$NODE_PID/root$MARKER" && echo escaped
"#;

fn import_trojan(lab: &Lab) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ls");
    std::fs::write(&script, TROJAN).unwrap();
    let mut spec = busybox_spec(TROJAN_IMAGE);
    spec.links.retain(|(link, _)| link != "bin/ls");
    spec.files.push(("bin/ls".into(), script));
    let archive = dir.path().join("trojan.tar");
    build(&spec, &archive).unwrap();
    lab.import_image(&archive).unwrap();
}

/// `Name:\tvalue` lines of a /proc/PID/status text, for the given names.
fn status_fields(status: &str, names: &[&str]) -> Vec<String> {
    status
        .lines()
        .filter(|l| names.iter().any(|n| l.split(':').next() == Some(*n)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn field(status: &str, name: &str) -> String {
    status_fields(status, &[name]).pop().unwrap_or_default()
}

#[test]
fn a_trojaned_binary_run_with_m_gets_the_containers_privileges_not_the_nodes() {
    require_root();
    let lab = Lab::shared();
    import_trojan(&lab);
    let pod = lab
        .run_pod(&PodSpec {
            name: "trojan".into(),
            image: TROJAN_IMAGE.into(),
            command: vec!["/bin/sleep".into(), "100000".into()],
            ..Default::default()
        })
        .unwrap();
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let target = format!("container/{}", pod.container_id);
    let container = std::fs::read_to_string(format!(
        "/proc/{}/status",
        lab.container_pid(&pod.container_id).unwrap()
    ))
    .unwrap();
    let node_caps = field(&std::fs::read_to_string("/proc/self/status").unwrap(), "CapEff");

    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let env = [
        "-e".to_owned(),
        format!("NODE_PID={}", std::process::id()),
        "-e".to_owned(),
        format!("MARKER={}", marker.display()),
    ];
    let flags = |extra: &[&'static str]| -> Vec<String> {
        env.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |extra: &[&'static str]| {
        let f = flags(extra);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        exec(&agent.addr(), &target, &f, &["ls"])
    };

    let o = run(&["-m", "-p"]);
    let out = stdout(&o);
    assert!(out.contains("Uid:\t0\t"), "{out}\n{}", stderr(&o));
    assert_eq!(field(&out, "CapEff"), field(&container, "CapEff"), "{out}");
    assert_ne!(field(&out, "CapEff"), node_caps, "{out}");
    let o = run(&["-m"]);
    assert!(stderr(&o).contains("mount: permission denied"), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("escaped") && !marker.exists(),
        "{}",
        stdout(&o)
    );

    // --privileged is node root, and the same trojan gets out: the checks
    // above can fail.
    let o = run(&["-m", "-p", "--privileged"]);
    assert_eq!(field(&stdout(&o), "CapEff"), node_caps, "{}", stdout(&o));
    let o = run(&["-m", "--privileged"]);
    assert!(stdout(&o).contains("escaped"), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "pwned\n");
    assert!(
        agent.logs().contains("--privileged"),
        "the agent must log --privileged: {}",
        agent.logs()
    );
}

/// A container with a non-root user, groups, every capability dropped but
/// one, and no_new_privs.
fn restricted_pod(lab: &Lab, name: &str) -> kns_tests::containerd::Pod {
    lab.run_pod(&PodSpec {
        name: name.into(),
        command: vec!["/bin/sleep".into(), "100000".into()],
        run_as_user: Some(1000),
        run_as_group: Some(1000),
        supplemental_groups: vec![2000, 3000],
        caps_drop: vec!["ALL".into()],
        caps_add: vec!["NET_BIND_SERVICE".into()],
        no_new_privs: true,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_tool_takes_the_containers_uid_groups_capabilities_and_no_new_privs() {
    require_root();
    let lab = Lab::shared();
    let pod = restricted_pod(&lab, "identity");
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let cpid = lab.container_pid(&pod.container_id).unwrap();
    let container = std::fs::read_to_string(format!("/proc/{cpid}/status")).unwrap();
    let o = exec(
        &agent.addr(),
        &format!("container/{}", pod.container_id),
        &["-m", "-p"],
        &["cat", "/proc/self/status"],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
    let tool = stdout(&o);
    let names = [
        "Uid",
        "Gid",
        "Groups",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
    ];
    assert_eq!(
        status_fields(&tool, &names),
        status_fields(&container, &names),
        "{tool}"
    );
    // And that is the spec asked for, not the agent's.
    assert_eq!(field(&tool, "Uid"), "Uid: 1000 1000 1000 1000");
    assert!(field(&tool, "Groups").contains("2000 3000"), "{tool}");
    assert_eq!(field(&tool, "CapBnd"), "CapBnd: 0000000000000400");
    assert_eq!(field(&tool, "NoNewPrivs"), "NoNewPrivs: 1");
    assert!(agent.logged("container uid=1000"), "{}", agent.logs());
}

#[test]
fn a_tool_run_as_the_container_is_in_all_of_its_namespaces() {
    require_root();
    let lab = Lab::shared();
    let pod = restricted_pod(&lab, "allns");
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let cpid = lab.container_pid(&pod.container_id).unwrap();
    // Only -m asked: the tool, as the container, must not stay in the
    // node's PID, network, IPC or UTS namespace.
    let o = exec(
        &agent.addr(),
        &format!("container/{}", pod.container_id),
        &["-m"],
        &[
            "sh",
            "-c",
            "for k in pid net ipc uts; do readlink /proc/$$/ns/$k; done",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
    let want: String = ["pid", "net", "ipc", "uts"]
        .iter()
        .map(|k| {
            format!(
                "{}\n",
                std::fs::read_link(format!("/proc/{cpid}/ns/{k}"))
                    .unwrap()
                    .display()
            )
        })
        .collect();
    assert_eq!(stdout(&o), want);
    assert!(stderr(&o).contains("also entered"), "{}", stderr(&o));
}

#[test]
fn the_tool_is_under_the_containers_seccomp_profile() {
    require_root();
    let lab = Lab::shared();
    // The runtime's default profile, as `seccompProfile: RuntimeDefault`
    // asks: once for a restricted container (no_new_privs: the filter is
    // loaded last), once for a root one without it (loaded while the
    // agent still holds CAP_SYS_ADMIN, before the identity change).
    let restricted = lab
        .run_pod(&PodSpec {
            name: "seccomp-nnp".into(),
            command: vec!["/bin/sleep".into(), "100000".into()],
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            caps_drop: vec!["ALL".into()],
            no_new_privs: true,
            seccomp_default: true,
            ..Default::default()
        })
        .unwrap();
    let root = lab
        .run_pod(&PodSpec {
            name: "seccomp-root".into(),
            command: vec!["/bin/sleep".into(), "100000".into()],
            seccomp_default: true,
            ..Default::default()
        })
        .unwrap();
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    for pod in [&restricted, &root] {
        let cpid = lab.container_pid(&pod.container_id).unwrap();
        let container = std::fs::read_to_string(format!("/proc/{cpid}/status")).unwrap();
        assert_eq!(field(&container, "Seccomp"), "Seccomp: 2", "{container}");
        let target = format!("container/{}", pod.container_id);
        let o = exec(&agent.addr(), &target, &["-m"], &["cat", "/proc/self/status"]);
        assert!(o.status.success(), "{}\n{}", stderr(&o), agent.logs());
        let names = ["Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff"];
        assert_eq!(
            status_fields(&stdout(&o), &names),
            status_fields(&container, &names),
            "{}",
            stdout(&o)
        );
        // And it is the profile's rules, not just a filter: the default
        // profile refuses new user namespaces without CAP_SYS_ADMIN, which
        // this kernel gives any user otherwise.
        let o = exec(
            &agent.addr(),
            &target,
            &["-m"],
            &["busybox", "unshare", "-U", "true"],
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
    }
    // The same call with the same identity, without the profile, works: it
    // is the filter that refuses it.
    let o = exec(
        &agent.addr(),
        &format!("container/{}", root.container_id),
        &["-m", "--privileged"],
        &["busybox", "unshare", "-U", "true"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The PID of the running tool `argv`, once it has started.
fn started(argv: &[&str], agent: &Agent) -> i32 {
    let mut tool = None;
    let up = wait_until(Duration::from_secs(10), || {
        tool = find(argv);
        tool.is_some()
    });
    assert!(up, "the tool {argv:?} never started: {}", agent.logs());
    tool.unwrap_or_default()
}

/// The tool's PID inside the container's PID namespace (the last NSpid).
fn pid_in_container(host_pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    field(&status, "NSpid")
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

/// A PID whose command line is exactly `argv`.
fn find(argv: &[&str]) -> Option<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read(e.path().join("cmdline")).ok()? == want).then_some(pid)
    })
}

#[test]
fn a_process_in_the_target_cannot_write_through_the_tools_exe() {
    require_root();
    let lab = Lab::shared();
    let pod = restricted_pod(&lab, "exe");
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let cpid = lab.container_pid(&pod.container_id).unwrap();
    // The tool is a file the container's user owns: were the tool's exe
    // that file, the container could write to it. What this checks is that
    // the exe is no file at all.
    let root = Path::new("/proc").join(cpid.to_string()).join("root");
    let tool_file = root.join("tmp/kns-sleep/sleep");
    std::fs::create_dir_all(tool_file.parent().unwrap()).unwrap();
    std::fs::copy(root.join("bin/busybox"), &tool_file).unwrap();
    std::os::unix::fs::chown(&tool_file, Some(1000), Some(1000)).unwrap();
    let before = std::fs::read(&tool_file).unwrap();

    let argv = ["/tmp/kns-sleep/sleep", "100000"];
    let mut client = exec_command(
        &agent.addr(),
        &format!("container/{}", pod.container_id),
        &["-m", "-p"],
        &argv,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let tool = started(&argv, &agent);
    assert_eq!(
        std::fs::metadata(format!("/proc/{tool}/status")).unwrap().uid(),
        1000
    );

    // CVE-2019-5736's shape, from a process of the container's (its user,
    // no capabilities): hold the tool's exe, let the tool exit, reopen the
    // handle for writing.
    let script = format!(
        "exec 3< /proc/{t}/exe || exit 10; readlink /proc/{t}/exe; kill -9 {t}; sleep 1; \
         echo pwned >> /proc/self/fd/3 && echo written",
        t = pid_in_container(tool)
    );
    let attack = Command::new("nsenter")
        .args(["--target", &cpid.to_string(), "--mount", "--pid"])
        .args([
            "--setuid", "1000", "--setgid", "1000", "--", "/bin/sh", "-c", &script,
        ])
        .output()
        .unwrap();
    let _ = client.kill();
    let _ = client.wait();
    let out = stdout(&attack);
    assert!(!out.contains("written"), "{out}\n{}", stderr(&attack));
    assert_eq!(
        std::fs::read(&tool_file).unwrap(),
        before,
        "the tool's file was written"
    );
    assert!(out.starts_with("/memfd:kns-tool"), "{out}\n{}", stderr(&attack));
}

#[test]
fn m_without_an_identity_from_the_runtime_is_refused_unless_privileged() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("no-identity", 8290)).unwrap();
    // A pod sandbox: the pause process's identity is no workload's.
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let target = format!("container/{}", pod.sandbox_id);
    let o = exec(&agent.addr(), &target, &["-m"], &["true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("none is known") && err.contains("--privileged"),
        "{err}"
    );
    let o = exec(&agent.addr(), &target, &["-m", "--privileged"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Without -m the node's own tools run as today.
    let o = exec(&agent.addr(), &target, &["-u"], &["hostname"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Nothing of the agent's reaches a tool: its fds are its stdio, whatever
/// the agent holds (listeners, the CRI connection, pidfds, other sessions').
#[test]
fn a_tool_holds_no_fd_but_its_stdio() {
    require_root();
    let lab = Lab::shared();
    let pod = restricted_pod(&lab, "fds");
    let agent = Agent::start(Some(lab.socket.to_str().unwrap()));
    let target = format!("container/{}", pod.container_id);
    for (flags, argv) in [
        (&["-n"][..], ["sleep", "7272"]),
        (&["-m", "-p"][..], ["/bin/sleep", "7273"]),
    ] {
        let mut client = exec_command(&agent.addr(), &target, flags, &argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let tool = started(&argv, &agent);
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{tool}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        let _ = client.kill();
        let _ = client.wait();
        assert_eq!(fds, ["0", "1", "2"], "{flags:?}");
    }
}

/// The fds of `pid` and what each links to.
fn fd_links(pid: i32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let link = std::fs::read_link(e.path()).map(|l| l.display().to_string());
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        link.unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The agent's child that joins the target's namespaces holds none of the
/// agent's sockets (its listeners, the CRI and API connections) nor the
/// audit trail while it does: a process in the target that may ptrace
/// could take them from /proc/PID/fd before the exec. strace holds the
/// child at its first setns(2) for a few seconds, long enough to look.
#[test]
fn the_child_entering_the_target_holds_none_of_the_agents_fds() {
    require_root();
    let t = kns_tests::target::NsProcess::spawn(&["--net"], "exec sleep 1000");
    let agent = Agent::start(None);
    let agent_fds = fd_links(agent.pid());
    assert!(
        agent_fds.iter().any(|(_, l)| l.starts_with("socket:")),
        "the agent holds no socket to leak: {agent_fds:?}"
    );
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "trace=setns",
            "-e",
            "inject=setns:delay_enter=4000000",
            "-p",
        ])
        .arg(agent.pid().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (scripts/deps installs it)");
    // strace says so on stderr once it has attached to every thread; a
    // pause stands in for reading it.
    std::thread::sleep(Duration::from_secs(1));
    let mut client = exec_command(&agent.addr(), &t.target(), &["-n"], &["true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The forked child: the agent's child that is not the tool (it has not
    // exec'd, so its command line is the agent's).
    let agent_cmdline = std::fs::read(format!("/proc/{}/cmdline", agent.pid())).unwrap();
    let mut child = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            child = std::fs::read_to_string(format!("/proc/{}/task/{}/children", agent.pid(), agent.pid()))
                .ok()
                .into_iter()
                .chain(
                    std::fs::read_dir(format!("/proc/{}/task", agent.pid()))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok()),
                )
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                        .collect::<Vec<_>>()
                })
                .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == agent_cmdline))
                // Held at setns(2) (308 on x86_64, 268 on aarch64), not
                // caught between the fork and its first steps.
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/syscall")).is_ok_and(|s| {
                        s.starts_with(if cfg!(target_arch = "aarch64") {
                            "268 "
                        } else {
                            "308 "
                        })
                    })
                });
            child.is_some()
        }),
        "no child of the agent was held at setns(2)"
    );
    let fds = fd_links(child.unwrap());
    let _ = strace.kill();
    let _ = strace.wait();
    let _ = client.wait();
    // The agent's audit trail and log (its stdout and stderr here), its
    // sockets and event loop, and the session cgroups' directories (the
    // agent's cgroup2 mount among them); the session's memory cgroup's
    // `tasks` the child still writes itself into.
    let trail: Vec<&String> = agent_fds
        .iter()
        .filter(|(n, _)| n == "1" || n == "2")
        .map(|(_, l)| l)
        .collect();
    let leaked: Vec<_> = fds
        .iter()
        .filter(|(_, l)| {
            l.starts_with("socket:")
                || l.starts_with("anon_inode:[event")
                || trail.contains(&l)
                || (l.contains("kns-sessions-") && !l.ends_with("/tasks"))
        })
        .collect();
    assert!(fds.len() > 3, "the child was not looked at in time: {fds:?}");
    assert!(
        leaked.is_empty(),
        "the namespace-joining child holds the agent's {leaked:?} (all: {fds:?})"
    );
}
