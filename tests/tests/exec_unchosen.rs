//! nsenter's contract: the kinds you choose are the target's, every other
//! kind is the node's — never the agent's own. The agent runs as in its
//! DaemonSet pod (own net/uts/ipc/mnt/cgroup namespaces, hostPID), the
//! node reference is this test process, and the tool reports the identity
//! of each of its namespaces.

use std::collections::BTreeMap;

use kns_tests::agent::{AGENT_PORT, Agent, SANDBOX_HOSTNAME};
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::target::NsProcess;
use kns_tests::{ns_inode, require_root};

const KINDS: [&str; 8] = ["mnt", "uts", "ipc", "net", "pid", "user", "cgroup", "time"];

/// A target in its own namespaces of every kind but user, like a pod.
fn target() -> NsProcess {
    let t = NsProcess::spawn(
        &[
            "--net",
            "--uts",
            "--ipc",
            "--mount",
            "--cgroup",
            "--time",
            "--pid",
            "--mount-proc",
        ],
        "hostname kns-target && exec sleep 1000",
    );
    t.wait_ready("hostname set", || {
        std::fs::read_to_string(format!("/proc/{}/comm", t.pid)).is_ok_and(|c| c.trim() == "sleep")
    });
    t
}

/// The identity of each of a process's namespaces, by kind.
fn identities(pid: i32) -> BTreeMap<&'static str, u64> {
    KINDS.into_iter().map(|k| (k, ns_inode(pid, k))).collect()
}

/// The tool's own namespaces, as it reads them from /proc/self.
fn tool_identities(agent: &Agent, t: &NsProcess, flags: &[&str]) -> BTreeMap<&'static str, u64> {
    let paths: Vec<String> = KINDS.iter().map(|k| format!("/proc/self/ns/{k}")).collect();
    let mut argv = vec!["readlink"];
    argv.extend(paths.iter().map(String::as_str));
    let o = exec(&agent.addr(), &t.target(), flags, &argv);
    assert!(o.status.success(), "{flags:?}: {}\n{}", stderr(&o), agent.logs());
    let out = stdout(&o);
    let ids: Vec<u64> = out
        .lines()
        .map(|l| {
            l.rsplit_once('[')
                .and_then(|(_, r)| r.trim_end_matches(']').parse().ok())
                .unwrap_or_else(|| panic!("{flags:?}: unexpected readlink output {out:?}"))
        })
        .collect();
    assert_eq!(ids.len(), KINDS.len(), "{out}");
    KINDS.into_iter().zip(ids).collect()
}

#[test]
fn every_kind_not_chosen_is_the_nodes() {
    require_root();
    let t = target();
    let agent = Agent::start(None);
    let node = identities(std::process::id() as i32);
    let pod = identities(agent.pid());
    let tgt = identities(t.pid);
    // The sandbox really differs from the node where a pod's does; else the
    // test would prove nothing.
    for k in ["net", "uts", "ipc", "mnt", "cgroup"] {
        assert_ne!(
            pod[k], node[k],
            "the agent's sandbox shares the node's {k} namespace"
        );
    }

    // (flags, kinds that are the target's). -p keeps the node's /proc here
    // so that /proc/self names the tool; -m comes with -p for the same
    // reason (the target's /proc is its PID namespace's). A pid/ target has
    // no runtime identity for -m's binary: --privileged runs it.
    let cases: [(&[&str], &[&str]); 8] = [
        (&["-n"], &["net"]),
        (&["-u"], &["uts"]),
        (&["-i"], &["ipc"]),
        (&["-C"], &["cgroup"]),
        (&["-T"], &["time"]),
        (&["-p", "--no-mount-proc"], &["pid"]),
        (&["-m", "-p", "--privileged"], &["mnt", "pid"]),
        // The target shares the node's user namespace: -a skips it.
        (
            &["-a", "--privileged"],
            &["mnt", "uts", "ipc", "net", "pid", "cgroup", "time"],
        ),
    ];
    for (flags, chosen) in cases {
        let got = tool_identities(&agent, &t, flags);
        for k in KINDS {
            let (want, whose) = if chosen.contains(&k) {
                (tgt[k], "target's")
            } else {
                (node[k], "node's")
            };
            assert_eq!(
                got[k], want,
                "{flags:?}: the tool's {k} namespace is not the {whose} (agent pod's is {}, node's {}, target's {})",
                pod[k], node[k], tgt[k]
            );
        }
    }
}

#[test]
fn a_pid_only_session_sees_the_nodes_hostname_and_network() {
    require_root();
    let t = target();
    let agent = Agent::start_tcp(None);

    let o = exec(&agent.addr(), &t.target(), &["-p"], &["hostname"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let node_hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(stdout(&o).trim(), node_hostname);
    assert_ne!(stdout(&o).trim(), SANDBOX_HOSTNAME);

    // The node's interfaces, not the sandbox's lone loopback.
    let host = std::process::Command::new("ip")
        .args(["-br", "link"])
        .output()
        .unwrap();
    let o = exec(&agent.addr(), &t.target(), &["-p"], &["ip", "-br", "link"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(Into::into)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&stdout(&o)), names(&stdout(&host)));

    // The agent's own loopback listener is out of the tool's reach.
    let o = exec(&agent.addr(), &t.target(), &["-p"], &["ss", "-lnt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains(&format!("127.0.0.1:{AGENT_PORT}")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn mount_without_pid_warns_that_proc_will_not_match() {
    require_root();
    let t = target();
    let agent = Agent::start(None);
    let o = exec(&agent.addr(), &t.target(), &["-m", "--privileged"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("-m without -p") && stderr(&o).contains("Add -p"),
        "{}",
        stderr(&o)
    );
    // Said once, and not when -p comes along or the PID namespace is the
    // node's anyway.
    assert_eq!(stderr(&o).matches("-m without -p").count(), 1);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-m", "-p", "--privileged"],
        &["true"],
    );
    assert!(!stderr(&o).contains("-m without -p"), "{}", stderr(&o));
    let o = exec(&agent.addr(), "node", &["-m"], &["true"]);
    assert!(!stderr(&o).contains("-m without -p"), "{}", stderr(&o));
}
