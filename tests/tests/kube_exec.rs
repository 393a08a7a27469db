//! End to end over Kubernetes: kubectl-ns → fake API server (HTTPS, JSON,
//! port-forward WebSocket) → real agent on 127.0.0.1 → real containerd
//! container.

use kns_tests::bins::{stderr, stdout};
use kns_tests::cluster::{NODE, OneNode};
use kns_tests::kubeapi::running_pod;
use kns_tests::require_root;

/// The one-node cluster with the agent pod that port-forwards to the agent.
fn cluster(pod: &str, port: u16) -> OneNode {
    let c = OneNode::start(pod, port);
    c.add_agent_pod("kubectl-ns-agent-x1", c.agent.pid());
    c
}

fn kubectl_ns(c: &OneNode, args: &[&str]) -> std::process::Output {
    c.api.kns(args)
}

#[test]
fn exec_in_a_pod_through_the_port_forward() {
    require_root();
    let c = cluster("kube-web", 8180);
    let o = kubectl_ns(&c, &["exec", "kube-web", "-n", "--", "ss", "-lnt"]);
    assert!(
        o.status.success(),
        "{}\nrequests: {:?}",
        stderr(&o),
        c.api.requests()
    );
    assert!(stdout(&o).contains(":8180"), "{}", stdout(&o));
    // The plugin found the agent by label and node, then port-forwarded.
    let reqs = c.api.requests().join("\n");
    assert!(
        reqs.contains("GET /api/v1/namespaces/default/pods/kube-web"),
        "{reqs}"
    );
    assert!(
        reqs.contains("labelSelector=app.kubernetes.io%2Fname%3Dkubectl-ns-agent"),
        "{reqs}"
    );
    assert!(reqs.contains("fieldSelector=spec.nodeName%3Dlab-node"), "{reqs}");
    let pf = reqs.lines().find(|l| {
        l.starts_with("GET /api/v1/namespaces/kubectl-ns-system/pods/kubectl-ns-agent-x1/portforward?")
    });
    assert!(pf.is_some_and(|l| l.contains("ports=7469")), "{reqs}");

    // NS/POD form, exit codes and stdin pass through the port-forward too.
    let o = kubectl_ns(
        &c,
        &[
            "exec",
            "default/kube-web",
            "-c",
            "app",
            "-p",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

#[test]
fn ls_compares_the_pods_containers() {
    require_root();
    let c = cluster("kube-ls", 8181);
    let o = kubectl_ns(&c, &["ls", "kube-ls", "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["node"], NODE);
    let app = &v["containers"][0];
    assert_eq!(app["container"], "app");
    assert_eq!(app["container_id"], c.container_id.as_str());
    let verdict = |k: &str| {
        app["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == k)
            .unwrap()["verdict"]
            .clone()
    };
    assert_eq!(verdict("net"), "private");
    assert_eq!(verdict("user"), "host");
    let table = stdout(&kubectl_ns(&c, &["ls", "kube-ls"]));
    assert!(
        table.contains("POD kube-ls  NODE lab-node") && table.contains("app "),
        "{table}"
    );
}

#[test]
fn node_target_enters_the_nodes_namespaces() {
    require_root();
    let c = cluster("kube-node", 8182);
    let o = kubectl_ns(&c, &["exec", "node/lab-node", "-u", "--", "hostname"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(stdout(&o).trim(), here.trim());
    let o = kubectl_ns(&c, &["exec", "node/nowhere", "-u", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("node nowhere not found"), "{}", stderr(&o));
}

#[test]
fn errors_say_what_to_do() {
    require_root();
    let c = cluster("kube-err", 8183);
    let o = kubectl_ns(&c, &["exec", "missing", "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("pod missing not found in namespace default"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--namespace"), "{}", stderr(&o));

    // A pod on a node without an agent.
    c.api.add_pod(running_pod(
        "default",
        "elsewhere",
        "node-without-agent",
        &[("app", "abc")],
    ));
    let o = kubectl_ns(&c, &["exec", "elsewhere", "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("kubectl ns install"), "{}", stderr(&o));

    // A container name that does not exist.
    let o = kubectl_ns(&c, &["exec", "kube-err", "-c", "nope", "-n", "--", "true"]);
    assert!(stderr(&o).contains("has no container nope"), "{}", stderr(&o));

    // Port-forward refused by RBAC.
    c.api.forbid_portforward(true);
    let o = kubectl_ns(&c, &["exec", "kube-err", "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(
        err.contains("forbidden") && err.contains("pods/portforward"),
        "{err}"
    );
    assert!(err.contains("kubectl-ns-user"), "{err}");
}
