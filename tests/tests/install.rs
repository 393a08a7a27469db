//! install / status / uninstall against the fake API server: the embedded
//! manifests go out by server-side apply, the rollout is awaited, and
//! uninstall takes everything back.

use kns_tests::bins::{kns, stderr, stdout};
use kns_tests::kubeapi::FakeApi;

fn run(api: &FakeApi, args: &[&str]) -> std::process::Output {
    let kc = api.kubeconfig_arg();
    let mut all = vec![args[0], "--kubeconfig", &kc];
    all.extend_from_slice(&args[1..]);
    kns(&all)
}

#[test]
fn install_status_uninstall() {
    let api = FakeApi::start();
    for n in ["node-a", "node-b"] {
        api.add_node(n);
    }
    let o = run(&api, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("node-a") && stdout(&o).contains("no agent"),
        "{}",
        stdout(&o)
    );

    let o = run(
        &api,
        &[
            "install",
            "--image",
            "registry.local/kubectl-ns-agent:0.1.0",
            "--timeout",
            "10",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("rollout: 2/2 agents ready"), "{}", stderr(&o));
    let paths: Vec<String> = api.objects().into_iter().map(|(p, _)| p).collect();
    for want in [
        "/api/v1/namespaces/kubectl-ns-system",
        "/api/v1/namespaces/kubectl-ns-system/serviceaccounts/kubectl-ns-agent",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-user",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/kubectl-ns-system/roles/kubectl-ns-user",
        "/apis/apps/v1/namespaces/kubectl-ns-system/daemonsets/kubectl-ns-agent",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} not applied; applied: {paths:?}"
        );
    }
    // Server-side apply, as kubectl-ns's own field manager, forced.
    let reqs = api.requests();
    let patch = reqs
        .iter()
        .find(|r| r.starts_with("PATCH /apis/apps/v1"))
        .unwrap();
    assert!(
        patch.contains("fieldManager=kubectl-ns") && patch.contains("force=true"),
        "{patch}"
    );
    assert!(patch.ends_with("application/apply-patch+yaml"), "{patch}");
    let ds = api
        .objects()
        .into_iter()
        .find(|(p, _)| p.ends_with("/daemonsets/kubectl-ns-agent"))
        .unwrap()
        .1;
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/kubectl-ns-agent:0.1.0"
    );
    assert_eq!(ds["spec"]["template"]["spec"]["hostPID"], true);

    let o = run(&api, &["status"]);
    let out = stdout(&o);
    assert!(!out.contains("no agent"), "{out}");
    assert!(
        out.contains("kubectl-ns-agent-node-b") && out.contains("0.1.0") && out.contains("yes"),
        "{out}"
    );

    let o = run(&api, &["version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("agents: 0.1.0 on 2 node(s)"),
        "{}",
        stdout(&o)
    );

    let o = run(&api, &["uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(api.objects().is_empty(), "left: {:?}", api.objects());
    let o = run(&api, &["version"]);
    assert!(stdout(&o).contains("agents: none"), "{}", stdout(&o));
    // Uninstalling again is not an error.
    let o = run(&api, &["uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
