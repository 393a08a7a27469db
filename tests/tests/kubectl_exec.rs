//! The real `kubectl exec` against the fake API server, whose `pods/exec`
//! runs the command in a real containerd container: the baseline the
//! benches compare kubectl-ns with must be kubectl's own path, streams and
//! exit code included, and refused as RBAC refuses it.

use std::process::{Command, Output};

use kns_tests::bins::{stderr, stdout};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{FakeApi, Grant, USER, running_pod};
use kns_tests::require_root;

/// `kubectl --kubeconfig KUBECONFIG ARGS…`, its cache beside the server's.
fn kubectl(api: &FakeApi, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("KUBECACHEDIR", api.cache_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl")
}

#[test]
fn kubectl_exec_runs_in_the_container_and_is_refused_without_the_right() {
    require_root();
    let lab = Lab::shared();
    let pod = lab.run_pod(&PodSpec::httpd("kexec-web", 8184)).unwrap();
    let api = FakeApi::start();
    api.exec_with(&lab.socket);
    api.add_pod(running_pod(
        "default",
        "kexec-web",
        "lab-node",
        &[("app", &pod.container_id)],
    ));

    let script = "echo out; echo err >&2; hostname; exit 3";
    let o = kubectl(
        &api,
        &api.kubeconfig,
        &["-v=8", "exec", "kexec-web", "--", "sh", "-c", script],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}\n{:?}", api.requests());
    // The command ran in the container: its own hostname, the pod's.
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("out"), "{out}");
    assert!(lines.next().is_some_and(|h| h != here.trim()), "{out}");
    assert!(err.lines().any(|l| l == "err"), "{err}");
    // kubectl 1.32 offers the WebSocket protocols, newest first, and needs
    // no SPDY fallback.
    assert!(err.contains("Sec-Websocket-Protocol: v5.channel.k8s.io"), "{err}");
    let reqs = api.take_requests();
    let execs: Vec<_> = reqs.iter().filter(|r| r.contains("/exec?")).collect();
    assert_eq!(execs.len(), 1, "{reqs:?}");
    assert!(
        execs[0].starts_with("GET /api/v1/namespaces/default/pods/kexec-web/exec?command=sh&command=-c&"),
        "{reqs:?}"
    );

    // A user who may read pods but not exec into them: RBAC's 403, after
    // which kubectl's SPDY fallback is refused alike.
    api.add_user("reader-token", "reader", &["system:authenticated"]);
    api.set_grants(vec![
        Grant::new(USER, "*", "*", "*"),
        Grant::new("reader", "get", "", "pods"),
    ]);
    let reader = api.kubeconfig_for("token: reader-token");
    let o = kubectl(&api, &reader, &["exec", "kexec-web", "--", "true"]);
    let reqs = api.take_requests();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let upgrades: Vec<_> = reqs
        .iter()
        .filter_map(|r| r.strip_suffix(" /api/v1/namespaces/default/pods/kexec-web/exec?command=true&container=app&stderr=true&stdout=true"))
        .collect();
    assert_eq!(upgrades, ["GET", "POST"], "{reqs:?}");
    assert!(
        stderr(&o).contains(
            "pods \"kexec-web\" is forbidden: User \"reader\" cannot create resource \"pods/exec\" \
             in API group \"\" in the namespace \"default\""
        ),
        "{}",
        stderr(&o)
    );

    // v1.32 authorizes the WebSocket upgrade by its method, GET: `get` on
    // pods/exec is enough there (v1.35 also asks `create`).
    api.set_grants(vec![
        Grant::new(USER, "*", "*", "*"),
        Grant::new("reader", "get", "", "pods"),
        Grant::new("reader", "get", "", "pods/exec"),
    ]);
    let o = kubectl(&api, &reader, &["exec", "kexec-web", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reqs = api.take_requests();
    assert!(
        reqs.iter().all(|r| !r.starts_with("POST ")),
        "no SPDY fallback: {reqs:?}"
    );
}
