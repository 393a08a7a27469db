//! install / status / version / uninstall against the fake API server: the
//! embedded manifests go out by server-side apply, the rollout is watched,
//! every node without a ready agent is named with its reason, versions come
//! from the agents themselves, and uninstall takes back only what kubectl-ns
//! created.

use kns_tests::agent::Agent;
use kns_tests::bins::{stderr, stdout};
use kns_tests::kubeapi::{AgentFailure, FakeApi};
use kns_tests::require_root;

fn run(api: &FakeApi, args: &[&str]) -> std::process::Output {
    api.kns(args)
}

/// The line of `status` output for `node`.
fn row<'a>(out: &'a str, node: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{node} ")))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{out}"))
}

fn object(api: &FakeApi, path: &str) -> Option<serde_json::Value> {
    api.objects().into_iter().find(|(p, _)| p == path).map(|(_, o)| o)
}

#[test]
fn install_status_uninstall() {
    require_root();
    let api = FakeApi::start();
    for n in ["node-a", "node-b"] {
        api.add_node(n);
    }
    api.add_node_with("node-win", "windows", "amd64", true);
    api.add_node_with("node-arm", "linux", "arm64", true);
    // One real agent answers for the DaemonSet's pods on both nodes: its
    // Version RPC is where `status` and `version` take versions from.
    let agent = Agent::start_tcp(None);
    for n in ["node-a", "node-b"] {
        api.forward("kubectl-ns-system", &format!("kubectl-ns-agent-{n}"), agent.pid());
    }

    let o = run(&api, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(row(&stdout(&o), "node-a").contains("no agent"), "{}", stdout(&o));
    assert!(
        row(&stdout(&o), "node-a").contains("not installed"),
        "{}",
        stdout(&o)
    );

    let o = run(
        &api,
        &[
            "install",
            "--image",
            "registry.local/kubectl-ns-agent@sha256:0123456789abcdef",
            "--timeout",
            "10",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The agents become ready after the DaemonSet is applied: the progress
    // comes from the watch.
    assert!(stderr(&o).contains("rollout: 0/2 agents ready"), "{}", stderr(&o));
    assert!(stderr(&o).contains("rollout: 2/2 agents ready"), "{}", stderr(&o));
    let paths: Vec<String> = api.objects().into_iter().map(|(p, _)| p).collect();
    for want in [
        "/api/v1/namespaces/kubectl-ns-system",
        "/api/v1/namespaces/kubectl-ns-system/serviceaccounts/kubectl-ns-agent",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-user",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-agent",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubectl-ns-agent",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/kubectl-ns-agent-client-ca",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-node-admin",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-session-admin",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubectl-ns-recording-viewer",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/kubectl-ns-system/roles/kubectl-ns-user",
        "/apis/apps/v1/namespaces/kubectl-ns-system/daemonsets/kubectl-ns-agent",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} not applied; applied: {paths:?}"
        );
    }
    // Server-side apply, as kubectl-ns's own field manager, forced; the
    // rollout watched, not polled.
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
    assert!(
        reqs.iter().any(
            |r| r.starts_with("GET /apis/apps/v1/namespaces/kubectl-ns-system/daemonsets?")
                && r.contains("watch=true")
        ),
        "{reqs:?}"
    );
    let after_apply = reqs.iter().skip_while(|r| !r.starts_with("PATCH /apis/apps/v1"));
    let gets = after_apply
        .filter(|r| {
            r.starts_with("GET /apis/apps/v1/namespaces/kubectl-ns-system/daemonsets/kubectl-ns-agent")
        })
        .count();
    assert_eq!(gets, 1, "the DaemonSet is read once, then watched: {reqs:?}");
    let ns = object(&api, "/api/v1/namespaces/kubectl-ns-system").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-ns"
    );
    let ds = object(
        &api,
        "/apis/apps/v1/namespaces/kubectl-ns-system/daemonsets/kubectl-ns-agent",
    )
    .unwrap();
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "registry.local/kubectl-ns-agent@sha256:0123456789abcdef"
    );
    assert_eq!(c["command"], serde_json::json!(["/kubectl-ns-agent"]));
    // Prometheus finds the agents' metrics as the README says: by the
    // pods' annotations, or a PodMonitor by the port's name.
    assert_eq!(
        c["ports"],
        serde_json::json!([{ "name": "metrics", "containerPort": 7471, "protocol": "TCP" }])
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--metrics-listen", "0.0.0.0:7471"]),
        "{args:?}"
    );
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations,
        &serde_json::json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "7471",
            "prometheus.io/path": "/metrics",
        })
    );
    assert_eq!(ds["spec"]["template"]["spec"]["hostPID"], true);

    // Versions as the agent reports them: the image reference is a digest.
    let o = run(&api, &["status"]);
    let out = stdout(&o);
    for n in ["node-a", "node-b"] {
        let r = row(&out, n);
        assert!(
            r.contains(&format!("kubectl-ns-agent-{n}")) && r.contains("0.1.0") && r.contains("yes"),
            "{out}"
        );
    }
    assert!(row(&out, "node-win").contains("node OS windows"), "{out}");
    assert!(
        row(&out, "node-arm").contains("architecture arm64: no agent image for it"),
        "{out}"
    );

    let o = run(&api, &["version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("agents: 0.1.0 on 2 node(s)"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );

    let o = run(&api, &["uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // All but what the cluster had before.
    let left: Vec<String> = api
        .objects()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p != kns_tests::kubeapi::CLIENT_CA_PATH)
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
    let o = run(&api, &["version"]);
    assert!(stdout(&o).contains("agents: none"), "{}", stdout(&o));
    // Uninstalling again is not an error.
    let o = run(&api, &["uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn install_timeout_shows_each_agents_own_reason() {
    let api = FakeApi::start();
    api.add_node("node-a");
    api.add_node_with("node-down", "linux", "amd64", false);
    api.fail_agents(AgentFailure {
        waiting_reason: "CrashLoopBackOff".into(),
        waiting_message: "back-off 40s restarting failed container=agent".into(),
        last_reason: "StartError".into(),
        last_message: "exec: \"--listen\": executable file not found in $PATH".into(),
    });
    let o = run(
        &api,
        &["install", "--agent-namespace", "debug-tools", "--timeout", "2"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("did not become ready within 2s"), "{err}");
    assert!(
        err.contains("kubectl -n debug-tools describe daemonset kubectl-ns-agent"),
        "{err}"
    );
    assert!(
        err.contains("kubectl-ns-agent-node-a on node node-a: container agent: waiting CrashLoopBackOff"),
        "{err}"
    );
    assert!(
        err.contains("exec: \"--listen\": executable file not found"),
        "{err}"
    );
    assert!(
        err.contains("kubectl-ns-agent-node-down on node node-down: pod Pending"),
        "{err}"
    );

    let o = run(&api, &["status", "--agent-namespace", "debug-tools"]);
    let out = stdout(&o);
    assert!(row(&out, "node-a").contains("CrashLoopBackOff"), "{out}");
    assert!(
        row(&out, "node-down").contains("node not Ready (NodeStatusUnknown"),
        "{out}"
    );
}

#[test]
fn install_without_admin_rights_says_what_installing_needs() {
    let api = FakeApi::start();
    api.add_node("node-a");
    api.user_only(true);
    let o = run(&api, &["install", "--timeout", "5"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("forbidden"), "{err}");
    assert!(err.contains("cluster-admin"), "{err}");
    assert!(!err.contains("kubectl-ns-user grants"), "{err}");
    let o = run(&api, &["uninstall"]);
    assert!(stderr(&o).contains("cluster-admin"), "{}", stderr(&o));
}

#[test]
fn a_namespace_that_existed_before_is_adopted_only_when_asked_and_kept() {
    let api = FakeApi::start();
    api.add_node("node-a");
    api.add_namespace("monitoring", &[("team", "observability")]);
    let o = run(&api, &["install", "--agent-namespace", "monitoring", "--no-wait"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--adopt-namespace"), "{}", stderr(&o));
    let labels = object(&api, "/api/v1/namespaces/monitoring").unwrap()["metadata"]["labels"].clone();
    assert!(
        labels.get("pod-security.kubernetes.io/enforce").is_none(),
        "{labels}"
    );
    assert!(
        object(
            &api,
            "/apis/apps/v1/namespaces/monitoring/daemonsets/kubectl-ns-agent"
        )
        .is_none()
    );

    let o = run(
        &api,
        &[
            "install",
            "--agent-namespace",
            "monitoring",
            "--adopt-namespace",
            "--no-wait",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("namespace monitoring existed before and was not created by kubectl-ns"),
        "{}",
        stderr(&o)
    );
    let labels = object(&api, "/api/v1/namespaces/monitoring").unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels["team"], "observability");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    assert!(labels.get("app.kubernetes.io/managed-by").is_none(), "{labels}");

    let o = run(&api, &["uninstall", "--agent-namespace", "monitoring"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("kept Namespace/monitoring"), "{}", stderr(&o));
    assert!(object(&api, "/api/v1/namespaces/monitoring").is_some());
    assert!(
        object(
            &api,
            "/apis/apps/v1/namespaces/monitoring/daemonsets/kubectl-ns-agent"
        )
        .is_none(),
        "the agent itself is removed"
    );
    // Installing again leaves a labelled namespace alone, silently.
    let o = run(&api, &["install", "--agent-namespace", "monitoring", "--no-wait"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn an_image_the_nodes_cannot_pull_is_named_with_the_fix() {
    let api = FakeApi::start();
    api.add_node("node-a");
    api.fail_agents(AgentFailure {
        waiting_reason: "ImagePullBackOff".into(),
        waiting_message: "Back-off pulling image \"ghcr.io/kubectl-ns/kubectl-ns-agent:0.1.0\"".into(),
        last_reason: String::new(),
        last_message: String::new(),
    });
    let o = run(&api, &["install", "--timeout", "2"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    // Which image it deploys, first; then why it does not run, and the fix.
    assert!(
        err.contains("deploying image ghcr.io/kubectl-ns/kubectl-ns-agent:"),
        "{err}"
    );
    assert!(
        err.contains("ImagePullBackOff") && err.contains("--image"),
        "{err}"
    );
}

#[test]
fn agent_is_reported_on_by_status_and_refused_by_install_and_uninstall() {
    require_root();
    let agent = Agent::start_with_env(None, &[("NODE_NAME", "node-local")]);
    // On a node without a kubeconfig, as its operator.
    let home = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(kns_tests::bins::plugin())
        .args(["status", "--agent", &agent.addr()])
        .env("KUBECONFIG", home.path().join("none"))
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let r = row(&out, "node-local");
    assert!(
        r.contains(&agent.addr()) && r.contains(env!("CARGO_PKG_VERSION")) && r.contains("yes"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");

    // install and uninstall act on every node through the API: --agent has
    // no place there, and nothing is applied or deleted.
    let api = FakeApi::start();
    api.add_node("node-a");
    for cmd in ["install", "uninstall"] {
        let o = run(&api, &[cmd, "--agent", &agent.addr()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{cmd} works through the Kubernetes API")) && err.contains("drop it"),
            "{err}"
        );
    }
    assert!(
        !api.requests()
            .iter()
            .any(|r| r.starts_with("PATCH") || r.starts_with("DELETE")),
        "{:?}",
        api.requests()
    );
}
