//! `-m`: the tool comes from the target's own filesystem, root and working
//! directory; a tool missing from a scratch-like image gets 127 and a hint.
//! A pid/ target has no identity from a container runtime for its binary to
//! run with: -m is refused unless --privileged (node root) is asked for.

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::image::{busybox_spec, populate};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

fn chrooted() -> (tempfile::TempDir, NsProcess) {
    let root = tempfile::tempdir().unwrap();
    populate(&busybox_spec("unused"), root.path()).unwrap();
    std::fs::create_dir_all(root.path().join("srv/app")).unwrap();
    std::fs::write(root.path().join("srv/app/marker"), "inside-the-image\n").unwrap();
    let t = NsProcess::spawn(
        &[
            "--mount",
            &format!("--root={}", root.path().display()),
            "--wd=/srv/app",
        ],
        "exec sleep 1000",
    );
    t.wait_ready("sleep in the chroot", || {
        std::fs::read_to_string(format!("/proc/{}/comm", t.pid)).is_ok_and(|c| c.trim() == "sleep")
    });
    (root, t)
}

#[test]
fn missing_tool_in_the_image_exits_127_with_a_hint() {
    require_root();
    let (_root, t) = chrooted();
    let agent = Agent::start(None);
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
    require_root();
    let (_root, t) = chrooted();
    let agent = Agent::start(None);
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
    require_root();
    let (_root, t) = chrooted();
    let agent = Agent::start(None);
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
    require_root();
    let (_root, t) = chrooted();
    let agent = Agent::start(None);
    let o = exec(&agent.addr(), &t.target(), &["-m"], &["cat", "marker"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("refuses") && err.contains("--privileged") && err.contains("Drop -m"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
