//! `-m`: the tool comes from the target's own filesystem, root and working
//! directory; a tool missing from a scratch-like image gets 127 and a hint.
//! A pid/ target has no identity from a container runtime for its binary to
//! run with: -m is refused unless --privileged (node root) is asked for, and
//! the refusal is audited; -a enters every other kind with the node's tools.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::image::{busybox_spec, populate};
use kns_tests::target::NsProcess;
use kns_tests::{ns_inode, require_root};

fn chrooted() -> (tempfile::TempDir, NsProcess) {
    chrooted_with(&[])
}

/// A process in a mount namespace of its own whose root is a small image,
/// and in the namespaces `unshare_flags` add.
fn chrooted_with(unshare_flags: &[&str]) -> (tempfile::TempDir, NsProcess) {
    let root = tempfile::tempdir().unwrap();
    populate(&busybox_spec("unused"), root.path()).unwrap();
    std::fs::create_dir_all(root.path().join("srv/app")).unwrap();
    std::fs::write(root.path().join("srv/app/marker"), "inside-the-image\n").unwrap();
    let root_flag = format!("--root={}", root.path().display());
    let flags: Vec<&str> = ["--mount", &root_flag, "--wd=/srv/app"]
        .into_iter()
        .chain(unshare_flags.iter().copied())
        .collect();
    let t = NsProcess::spawn(&flags, "exec sleep 1000");
    t.wait_ready("sleep in the chroot", || {
        std::fs::read_to_string(format!("/proc/{}/comm", t.pid)).is_ok_and(|c| c.trim() == "sleep")
    });
    (root, t)
}

/// [`chrooted`] (needs root), and an agent to reach it.
fn chrooted_with_agent() -> (tempfile::TempDir, NsProcess, Agent) {
    require_root();
    let (root, t) = chrooted();
    (root, t, Agent::start(None))
}

#[test]
fn missing_tool_in_the_image_exits_127_with_a_hint() {
    let (_root, t, agent) = chrooted_with_agent();
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-m", "--privileged"],
        &["ss", "-lnt"],
    );
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("container image has no such binary"), "{err}");
    assert!(err.contains("Drop -m"), "{err}");
}

#[test]
fn sees_the_targets_root_and_working_directory() {
    let (_root, t, agent) = chrooted_with_agent();
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-m", "--privileged"],
        &["cat", "marker"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "inside-the-image\n");
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-m", "--privileged", "-w", "/"],
        &["ls", "/"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = stdout(&o);
    assert!(listing.contains("srv") && !listing.contains("usr"), "{listing}");
}

#[test]
fn not_executable_exits_126() {
    let (_root, t, agent) = chrooted_with_agent();
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-m", "--privileged"],
        &["/srv/app/marker"],
    );
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot execute"), "{}", stderr(&o));
}

#[test]
fn without_an_identity_for_the_images_binary_m_is_refused_unless_privileged() {
    let (_root, t, agent) = chrooted_with_agent();
    let o = exec(&agent.addr(), &t.target(), &["-m"], &["cat", "marker"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("refuses") && err.contains("--privileged") && err.contains("Drop -m"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // A denial like the authorizer's, in the audit trail.
    let audit = agent.audit();
    let denied: Vec<_> = audit.iter().filter(|r| r["event"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{audit:#?}");
    let r = denied[0];
    assert_eq!(r["request"], "exec");
    assert_eq!(r["user"]["username"], "unix:uid:0");
    assert_eq!(r["target"]["requested"], t.target());
    assert_eq!(r["target"]["pid"], t.pid);
    assert_eq!(r["namespaces"], serde_json::json!(["mnt"]));
    assert_eq!(r["argv"], serde_json::json!(["cat", "marker"]));
    assert!(r["reason"].as_str().unwrap().contains("none is known"), "{r}");
    assert!(!audit.iter().any(|r| r["event"] == "start"), "{audit:#?}");
}

#[test]
fn all_on_a_target_without_an_identity_enters_the_rest_with_the_nodes_tools() {
    require_root();
    let (_root, t) = chrooted_with(&["--uts"]);
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-a"],
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/uts; test -e /srv/app/marker || echo the-nodes-filesystem",
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        stdout(&o),
        format!("uts:[{}]\nthe-nodes-filesystem\n", ns_inode(t.pid, "uts"))
    );
    assert!(
        err.contains(&format!(
            "-a entered every namespace of process {} but its mount namespace",
            t.pid
        )) && err.contains("--privileged"),
        "{err}"
    );
    // Not a word about a flag that was not given.
    assert!(!err.contains("-m"), "{err}");
    let audit = agent.audit();
    let start = audit
        .iter()
        .find(|r| r["event"] == "start")
        .unwrap_or_else(|| panic!("{audit:#?}"));
    let entered = start["namespaces"].as_array().unwrap();
    assert!(
        entered.contains(&"uts".into()) && !entered.contains(&"mnt".into()),
        "{start}"
    );
    assert_eq!(start["tools"], "node");
    assert_eq!(start["runs_as"], "node-root");
}
