//! The agent image, run as the DaemonSet runs it: scripts/image's archive,
//! imported into a real containerd, started in a hostPID pod with exactly
//! the manifest's capabilities (all others dropped), read-only root, and the
//! CRI socket mounted read-only at its usual path, then used to enter
//! another pod's namespaces.

use std::path::{Path, PathBuf};

use kns_plugin::manifests::{self, Object};
use kns_tests::bins::{exec, stderr, stdout};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::{require_root, wait_until};

/// Where scripts/test has scripts/image write the archive.
fn archive() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kns-agent-image.tar");
    assert!(
        p.exists(),
        "{} is missing: build it with `scripts/image target/kns-agent-image.tar` (scripts/test does)",
        p.display()
    );
    p
}

/// The DaemonSet's pod template, from the embedded manifests.
fn manifest_pod() -> k8s_openapi::api::core::v1::PodSpec {
    manifests::parse()
        .unwrap()
        .into_iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) => d.spec?.template.spec,
            _ => None,
        })
        .unwrap()
}

#[test]
fn agent_image_works_with_the_manifests_security_context() {
    require_root();
    let lab = Lab::shared();
    lab.import_image(&archive()).unwrap();
    let target = lab.run_pod(&PodSpec::httpd("agent-pod-target", 8280)).unwrap();

    let pod = manifest_pod();
    let c = pod.containers[0].clone();
    let sc = c.security_context.clone().unwrap();
    let caps = sc.capabilities.clone().unwrap();
    let sockdir = tempfile::tempdir().unwrap();
    let spec = PodSpec {
        name: "kubectl-ns-agent".into(),
        host_pid: pod.host_pid == Some(true),
        image: manifests::default_image(),
        command: vec!["/kubectl-ns-agent".into()],
        args: vec!["--listen".into(), "unix:///kns/agent.sock".into()],
        // The node reference: this test process (PID 1 cannot be read on
        // these machines), visible through hostPID.
        env: vec![("KNS_NODE_PID".into(), std::process::id().to_string())],
        mounts: vec![
            (lab.socket.clone(), "/run/containerd/containerd.sock".into(), true),
            (sockdir.path().to_owned(), "/kns".into(), false),
        ],
        caps_add: caps.add.unwrap_or_default(),
        caps_drop: caps.drop.unwrap_or_default(),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        ..Default::default()
    };
    lab.run_pod(&spec).unwrap();
    let sock = sockdir.path().join("agent.sock");
    assert!(
        wait_until(std::time::Duration::from_secs(20), || sock.exists()),
        "the agent in its pod never listened; its log: {}",
        std::fs::read_to_string(lab.dir.join("logs/kubectl-ns-agent/app.log")).unwrap_or_default()
    );
    let agent = format!("unix://{}", sock.display());
    let t = format!("container/{}", target.container_id);

    let o = exec(&agent, &t, &["-n"], &["ss", "-lntp"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(":8280") && stdout(&o).contains("httpd"),
        "{}",
        stdout(&o)
    );
    let o = exec(&agent, &t, &["-p"], &["ps", "-eo", "pid,comm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    let o = exec(&agent, &t, &["-m"], &["ss"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
}
