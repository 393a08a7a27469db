//! kubectl's habits over Kubernetes: which container a multi-container pod
//! defaults to, and the notice that says so.

use kns_tests::agent::Agent;
use kns_tests::bins::stderr;
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{FakeApi, agent_pod, running_pod};
use kns_tests::require_root;

const NODE: &str = "lab-node";

#[test]
fn multi_container_pod_defaults_like_kubectl() {
    require_root();
    let lab = Lab::shared();
    let real = lab.run_pod(&PodSpec::httpd("habits-web", 8183)).unwrap();
    let api = FakeApi::start();
    let agent = Agent::start_tcp_env(Some(lab.socket.to_str().unwrap()), &api.agent_env(NODE));
    api.serve_in_netns(agent.pid());
    api.add_node(NODE);
    // Only the real container can be entered: the other ID is unknown to
    // the runtime, so success proves which one was chosen.
    api.add_pod(running_pod(
        "default",
        "first",
        NODE,
        &[("app", &real.container_id), ("sidecar", "0123abcd")],
    ));
    let mut annotated = running_pod(
        "default",
        "annotated",
        NODE,
        &[("app", "0123abcd"), ("sidecar", &real.container_id)],
    );
    annotated.metadata.annotations = Some(
        [(
            "kubectl.kubernetes.io/default-container".to_owned(),
            "sidecar".to_owned(),
        )]
        .into(),
    );
    api.add_pod(annotated);
    api.add_pod(agent_pod("kubectl-ns-agent-h1", NODE));
    api.forward("kubectl-ns-system", "kubectl-ns-agent-h1", agent.pid());

    let o = api.kns(&["exec", "first", "-n", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "Defaulted container \"app\" out of: app, sidecar\n");

    let o = api.kns(&["exec", "annotated", "-n", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "the annotation's choice needs no notice");
}
