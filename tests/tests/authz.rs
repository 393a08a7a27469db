//! Who may do what through the agent, end to end: the plugin sends the
//! kubeconfig user's token through the port-forward, the agent checks it
//! with the (fake) API server's TokenReview and asks a SubjectAccessReview
//! per target, and writes an audit line for every session and denial.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use kns_tests::agent::audit_records;
use kns_tests::bins::{plugin, stderr, stdout};
use kns_tests::cluster::{NODE, OneNode};
use kns_tests::kubeapi::{Grant, running_pod};
use kns_tests::require_root;
use serde_json::Value;

fn cluster(pod: &str, port: u16) -> OneNode {
    cluster_with_env(pod, port, &[])
}

fn cluster_with_env(pod: &str, port: u16, env: &[(&str, &str)]) -> OneNode {
    let c = OneNode::start_with_env(pod, port, env);
    c.add_agent_pod("kubectl-ns-agent-a1", c.agent.pid());
    for (token, user, groups) in [
        ("alice-token", "alice", &["devs", "system:authenticated"][..]),
        ("bob-token", "bob", &["system:authenticated"][..]),
    ] {
        c.api.add_user(token, user, groups);
    }
    c
}

/// `kubectl-ns ARGS…` as the user of `kubeconfig`.
fn as_user(c: &OneNode, kubeconfig: &Path, args: &[&str]) -> Output {
    c.api
        .kns_command_as(kubeconfig, args)
        .output()
        .expect("run kubectl-ns")
}

fn token(c: &OneNode, token: &str) -> std::path::PathBuf {
    c.api.kubeconfig_for(&format!("token: {token}"))
}

fn events<'a>(audit: &'a [Value], event: &str) -> Vec<&'a Value> {
    audit.iter().filter(|r| r["event"] == event).collect()
}

#[test]
fn a_user_with_pods_exec_runs_and_the_session_is_audited_under_the_verified_name() {
    require_root();
    let c = cluster("authz-ok", 8301);
    c.api.set_grants(vec![
        Grant::new("group:devs", "create", "", "pods/exec")
            .in_namespace("default")
            .named(&c.pod),
    ]);
    let o = as_user(
        &c,
        &token(&c, "alice-token"),
        // -m: the container's own binary, run as the container, as
        // `kubectl exec` would; that needs pods/exec only.
        &["exec", &c.pod, "-m", "--", "echo", "hi"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");

    // The agent asked about the verified user, with all of what the
    // TokenReview said, and about the pod the runtime names.
    let reviews = c.api.reviews();
    let sar = reviews
        .iter()
        .find(|r| r["kind"] == "SubjectAccessReview")
        .expect("a SubjectAccessReview");
    assert_eq!(sar["spec"]["user"], "alice");
    assert_eq!(sar["spec"]["uid"], "alice-uid");
    assert_eq!(sar["spec"]["groups"][0], "devs");
    assert_eq!(
        sar["spec"]["extra"]["authentication.kubernetes.io/credential-id"][0],
        "JTI=alice-token"
    );
    let attrs = &sar["spec"]["resourceAttributes"];
    assert_eq!(
        (&attrs["verb"], &attrs["resource"], &attrs["subresource"]),
        (&"create".into(), &"pods".into(), &"exec".into())
    );
    assert_eq!(
        (&attrs["namespace"], &attrs["name"]),
        (&"default".into(), &c.pod.as_str().into())
    );

    // One start and one end line, naming alice, the pod and the command.
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "end").is_empty()
    });
    let audit = c.agent.audit();
    let (start, end) = (events(&audit, "start"), events(&audit, "end"));
    assert_eq!((start.len(), end.len()), (1, 1), "{audit:#?}");
    for r in [start[0], end[0]] {
        assert_eq!(r["user"]["username"], "alice");
        assert_eq!(r["user"]["groups"][0], "devs");
        assert_eq!(r["auth"], "token");
        assert_eq!(r["target"]["node"], NODE);
        assert_eq!(r["target"]["namespace"], "default");
        assert_eq!(r["target"]["pod"], c.pod.as_str());
        assert_eq!(r["target"]["container"], c.container_id.as_str());
        assert!(r["target"]["pid"].as_i64().unwrap() > 0);
        // What the tool is in: -m as the container enters the container's
        // network namespace as well (and its others), not only the asked mnt.
        let entered = r["namespaces"].as_array().unwrap();
        assert!(
            entered.contains(&"mnt".into()) && entered.contains(&"net".into()),
            "{r}"
        );
        assert_eq!(r["argv"], serde_json::json!(["echo", "hi"]));
        assert_eq!(r["tty"], false);
        assert_eq!(r["privileged"], false);
        assert_eq!(r["session"], start[0]["session"]);
        assert_eq!(r["start_time"], start[0]["start_time"]);
    }
    assert_eq!(end[0]["exit_code"], 0);
    assert_eq!(end[0]["bytes_out"], 3);
    assert!(end[0]["end_time"].is_string());
}

#[test]
fn a_user_without_pods_exec_is_refused_with_the_missing_rule_and_the_grant_and_it_is_audited() {
    require_root();
    let c = cluster("authz-deny", 8302);
    let bob = token(&c, "bob-token");
    let o = as_user(&c, &bob, &["exec", &c.pod, "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("bob may not create pods/exec on pod default/{}", c.pod)),
        "{err}"
    );
    assert!(
        err.contains("kubectl create role kubectl-ns-pods-create-exec --verb=create --resource=pods/exec --namespace default")
            && err.contains(
                "kubectl create rolebinding kubectl-ns-pods-create-exec-bob --role=kubectl-ns-pods-create-exec --user=bob --namespace default"
            ),
        "{err}"
    );

    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "denied").is_empty()
    });
    let audit = c.agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["user"]["username"], "bob");
    assert_eq!(denied[0]["auth"], "token");
    assert_eq!(denied[0]["target"]["pod"], c.pod.as_str());
    assert!(
        denied[0]["reason"]
            .as_str()
            .unwrap()
            .contains("may not create pods/exec"),
        "{audit:#?}"
    );
    assert!(events(&audit, "start").is_empty(), "nothing ran: {audit:#?}");

    // Granted now, allowed now: a refusal is never remembered.
    c.api.set_grants(vec![
        Grant::new("bob", "create", "", "pods/exec").in_namespace("default"),
    ]);
    let o = as_user(&c, &bob, &["exec", &c.pod, "-m", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_node_tool_in_a_pod_needs_the_node_right_as_well() {
    require_root();
    let c = cluster("authz-nodetool", 8306);
    c.api.set_grants(vec![
        Grant::new("bob", "create", "", "pods/exec").in_namespace("default"),
    ]);
    let bob = token(&c, "bob-token");
    // The node's `id` in the pod's network namespace is node root: not
    // what pods/exec grants.
    let o = as_user(&c, &bob, &["exec", &c.pod, "-n", "--", "id", "-u"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "bob may not create nodes/exec (API group kubectl-ns.io) on node {NODE}"
        )) && err.contains("a node tool runs as root on the node"),
        "{err}"
    );
    // Nor is -m as node root, nor the agent's own tool, which runs as
    // node root too.
    let o = as_user(&c, &bob, &["exec", &c.pod, "-m", "--privileged", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let o = as_user(
        &c,
        &bob,
        &["exec", &c.pod, "-n", "--tools", "agent", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(stderr(&o).contains("nodes/exec"), "{}", stderr(&o));
    // With the node right too, it runs.
    c.api.set_grants(vec![
        Grant::new("bob", "create", "", "pods/exec").in_namespace("default"),
        Grant::new("bob", "create", "kubectl-ns.io", "nodes/exec").named(NODE),
    ]);
    let o = as_user(&c, &bob, &["exec", &c.pod, "-n", "--", "id", "-u"]);
    assert_eq!(stdout(&o), "0\n", "{}", stderr(&o));
    let o = as_user(
        &c,
        &bob,
        &["exec", &c.pod, "-n", "--tools", "agent", "--", "id", "-u"],
    );
    assert_eq!(stdout(&o), "0\n", "{}", stderr(&o));
    // The trail says where each tool came from.
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        events(&c.agent.audit(), "end").len() == 2
    });
    let audit = c.agent.audit();
    let tools: Vec<&Value> = events(&audit, "end").iter().map(|r| &r["tools"]).collect();
    assert_eq!(tools, [&Value::from("node"), &Value::from("agent")], "{audit:#?}");
    let denied = events(&audit, "denied");
    assert!(denied.iter().any(|r| r["tools"] == "agent"), "{audit:#?}");
}

#[test]
fn a_token_the_api_server_rejects_is_told_plainly_with_how_to_renew_it() {
    require_root();
    let c = cluster("authz-401", 8313);
    let o = as_user(&c, &token(&c, "expired"), &["exec", &c.pod, "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "cannot get pod default/{}: the API server rejected the kubeconfig's credentials (401 Unauthorized)\n\
             Hint: an expired token is the usual cause: log in again or get a new token",
            c.pod
        )) && err.contains("kubectl create token")
            && err.contains("kubectl config view --minify"),
        "{err}"
    );
    // The API server refused it first: no agent was reached.
    assert!(c.api.reviews().is_empty(), "{:#?}", c.api.reviews());
}

#[test]
fn a_token_the_agents_review_rejects_is_unauthenticated_and_audited() {
    require_root();
    let c = cluster("authz-authn", 8303);
    // Valid for the plugin's lookups, invalid by the time the agent asks:
    // the API server's real answer then has no `authenticated` and
    // `user: {}`, which the agent once took for an API server it could not
    // understand (UNAVAILABLE).
    c.api.add_user("carol-token", "carol", &["system:authenticated"]);
    c.api.expire_on_review("carol-token");
    let o = as_user(
        &c,
        &token(&c, "carol-token"),
        &["exec", &c.pod, "-n", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "the API server rejected the token: invalid bearer token\nHint: your credentials were rejected; \
             an expired token is the usual cause"
        ) && err.contains("kubectl create token"),
        "{err}"
    );
    assert!(!err.contains("cannot check the token"), "{err}");

    let o = as_user(
        &c,
        &c.api.kubeconfig_for(""),
        &["exec", &c.pod, "-n", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(stderr(&o).contains("no bearer token"), "{}", stderr(&o));

    // One denial each, with no user: nobody was verified.
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        events(&c.agent.audit(), "denied").len() >= 2
    });
    let audit = c.agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 2, "{audit:#?}");
    assert!(denied.iter().all(|d| d.get("user").is_none()), "{audit:#?}");
    assert_eq!(
        denied[0]["reason"],
        "the API server rejected the token: invalid bearer token"
    );
}

#[test]
fn a_grpc_call_with_an_invalid_token_is_unauthenticated() {
    require_root();
    let c = cluster("authz-grpc", 8314);
    let pid = c.agent.pid();
    // As any client in the agent's pod network could call it: on a thread
    // in that network namespace, whose runtime's sockets are made there.
    let status = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the agent's netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let addr = format!("http://127.0.0.1:{}", kns_tests::agent::AGENT_PORT);
            let mut client = kns_proto::agent::agent_client::AgentClient::connect(addr)
                .await
                .expect("connect to the agent");
            let mut req = tonic::Request::new(kns_proto::agent::ListRequest::default());
            req.metadata_mut()
                .insert("authorization", "Bearer not-a-token".parse().expect("header"));
            client.list(req).await.expect_err("an invalid token was accepted")
        })
    })
    .join()
    .expect("the client thread");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.metadata().get(kns_proto::TOKEN_REJECTED_HEADER).is_some(),
        "{status:?}"
    );
    assert_eq!(
        status.message(),
        "the API server rejected the token: invalid bearer token"
    );
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "denied").is_empty()
    });
    let audit = c.agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["request"], "list", "{audit:#?}");
}

#[test]
fn node_targets_need_the_node_right() {
    require_root();
    let c = cluster("authz-node", 8304);
    c.api.set_grants(vec![
        Grant::new("alice", "create", "kubectl-ns.io", "nodes/exec").named(NODE),
        // pods/exec everywhere is not the node.
        Grant::new("bob", "create", "", "pods/exec"),
    ]);
    let node = format!("node/{NODE}");
    let o = as_user(
        &c,
        &token(&c, "alice-token"),
        &["exec", &node, "-u", "--", "true"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = as_user(&c, &token(&c, "bob-token"), &["exec", &node, "-u", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "bob may not create nodes/exec (API group kubectl-ns.io) on node {NODE}"
        )) && err.contains(
            "kubectl create clusterrolebinding kubectl-ns-node-admin-bob --clusterrole=kubectl-ns-node-admin --user=bob"
        ),
        "{err}"
    );
    // `ls node/…` lists the node's containers of every namespace: what
    // listing pods in all namespaces shows, and needs.
    let o = as_user(&c, &token(&c, "bob-token"), &["ls", &node]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("bob may not list pods in all namespaces")
            && err.contains("kubectl create clusterrole kubectl-ns-pods-list --verb=list --resource=pods"),
        "{err}"
    );
    c.api.set_grants(vec![Grant::new("bob", "list", "", "pods")]);
    let o = as_user(&c, &token(&c, "bob-token"), &["ls", &node]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_container_is_judged_by_its_real_pod_not_the_one_the_client_names() {
    require_root();
    let c = cluster("authz-real", 8305);
    // A pod alice may exec into, whose status claims the real pod's
    // container (a lying client, or a stale API object).
    c.api
        .add_pod(running_pod("default", "decoy", NODE, &[("app", &c.container_id)]));
    c.api.set_grants(vec![
        Grant::new("alice", "create", "", "pods/exec")
            .in_namespace("default")
            .named("decoy"),
    ]);
    let o = as_user(
        &c,
        &token(&c, "alice-token"),
        &["exec", "decoy", "-n", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "alice may not create pods/exec on pod default/{}",
            c.pod
        )),
        "{}",
        stderr(&o)
    );
    let asked: Vec<Value> = c
        .api
        .reviews()
        .into_iter()
        .filter(|r| r["kind"] == "SubjectAccessReview")
        .map(|r| r["spec"]["resourceAttributes"]["name"].clone())
        .collect();
    assert_eq!(asked, [Value::from(c.pod.as_str())]);
}

#[test]
fn ls_of_a_pod_needs_get_pods_on_it() {
    require_root();
    let c = cluster("authz-ls", 8306);
    c.api.set_grants(vec![]);
    let bob = token(&c, "bob-token");
    let o = as_user(&c, &bob, &["ls", &c.pod]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("bob may not get pods on pod default/{}", c.pod)),
        "{}",
        stderr(&o)
    );
    c.api
        .set_grants(vec![Grant::new("bob", "get", "", "pods").in_namespace("default")]);
    let o = as_user(&c, &bob, &["ls", &c.pod]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_user_who_is_not_root_is_told_the_socket_serves_root_only() {
    require_root();
    let agent = kns_tests::agent::Agent::start(None);
    // As the agent makes it: 0600, in a directory only root may enter.
    let o = Command::new("setpriv")
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups", "--"])
        .arg(plugin())
        .args(["exec", "--agent", &agent.addr(), "node", "-u", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("its socket serves root only, and kubectl-ns runs as uid 1000") && err.contains("sudo"),
        "{err}"
    );
    assert!(!err.contains("is kubectl-ns-agent running"), "{err}");
}

#[test]
fn only_root_may_use_the_unix_socket() {
    require_root();
    let c = cluster("authz-unix", 8307);
    // A socket made reachable by mistake: the peer's uid still decides.
    use std::os::unix::fs::PermissionsExt;
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    open(c.agent.socket.parent().unwrap(), 0o755);
    open(&c.agent.socket, 0o666);
    let exec = |mut cmd: Command| {
        cmd.args(["exec", "--agent", &c.agent.addr(), "node", "-u", "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut as_1000 = Command::new("setpriv");
    as_1000
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups", "--"])
        .arg(plugin());
    let o = exec(as_1000);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unix:uid:1000 may not use this agent's unix socket"),
        "{}",
        stderr(&o)
    );
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "denied").is_empty()
    });
    let audit = c.agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["auth"], "peercred");
    assert_eq!(denied[0]["user"]["uid"], "1000");

    let o = exec(Command::new(plugin()));
    assert!(o.status.success(), "root: {}", stderr(&o));
    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "end").is_empty()
    });
    assert_eq!(
        events(&c.agent.audit(), "start")[0]["user"]["username"],
        "unix:uid:0"
    );
    // The node's name the node right is checked on, as the agent reports it.
    let o = Command::new(plugin())
        .args(["version", "--agent", &c.agent.addr()])
        .output()
        .unwrap();
    assert!(stdout(&o).contains(&format!("node {NODE})")), "{}", stdout(&o));
}

#[test]
fn insecure_skip_authz_lets_anyone_in_and_says_so_everywhere() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let c = cluster_with_env(
        "authz-skip",
        8308,
        &[
            ("KNS_INSECURE_SKIP_AUTHZ", "1"),
            ("KNS_AUDIT_LOG", log.to_str().unwrap()),
        ],
    );
    c.api.set_grants(vec![]);
    let o = as_user(&c, &token(&c, "bob-token"), &["exec", &c.pod, "-n", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(c.api.reviews().is_empty(), "nobody was asked");
    assert!(
        c.agent.logs().contains("--insecure-skip-authz"),
        "{}",
        c.agent.logs()
    );

    let o = c.api.kns(&["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with(NODE))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(row.contains("INSECURE: --insecure-skip-authz"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("run with --insecure-skip-authz"),
        "{}",
        stderr(&o)
    );

    // The trail is on stdout and in the file alike (written in that order).
    let both = kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "end").is_empty() && audit_records(&log) == c.agent.audit()
    });
    let audit = c.agent.audit();
    assert!(both, "{audit:#?}\n{:#?}", audit_records(&log));
    assert_eq!(events(&audit, "start")[0]["auth"], "skip");
}

#[test]
fn a_client_certificate_the_cluster_signed_names_the_user_for_the_same_checks() {
    require_root();
    let c = cluster("authz-cert", 8310);
    c.api.set_grants(vec![
        Grant::new("group:devs", "create", "", "pods/exec")
            .in_namespace("default")
            .named(&c.pod),
    ]);
    // No token in this kubeconfig: the plugin presents the certificate in
    // a TLS handshake inside the port-forward, on the agent's TLS port.
    let carol = c.api.kubeconfig_with_cert("carol", Some("devs"));
    let o = as_user(&c, &carol, &["exec", &c.pod, "-m", "--", "echo", "hi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");

    // The agent asked about the user the certificate names, as the API
    // server's x509 authenticator reads it, and asked no TokenReview.
    let reviews = c.api.reviews();
    assert!(reviews.iter().all(|r| r["kind"] != "TokenReview"), "{reviews:#?}");
    let sar = reviews
        .iter()
        .find(|r| r["kind"] == "SubjectAccessReview")
        .expect("a SubjectAccessReview");
    assert_eq!(sar["spec"]["user"], "carol");
    assert_eq!(
        sar["spec"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    let credential = sar["spec"]["extra"]["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(credential.starts_with("X509SHA256="), "{credential}");

    kns_tests::wait_until(std::time::Duration::from_secs(10), || {
        !events(&c.agent.audit(), "end").is_empty()
    });
    let audit = c.agent.audit();
    let start = events(&audit, "start");
    assert_eq!(start[0]["user"]["username"], "carol");
    assert_eq!(start[0]["auth"], "x509");

    // Warm, the port-forward opened beside the pod GET (to the cached
    // agent) carries the certificate's handshake just as well.
    c.api.take_requests();
    let o = as_user(&c, &carol, &["exec", &c.pod, "-m", "--", "echo", "hi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");
    let reqs = c.api.take_requests();
    let to_api: Vec<_> = reqs.iter().filter(|r| !r.contains("accessreviews")).collect();
    assert_eq!(to_api.len(), 2, "the pod GET and the port-forward: {reqs:?}");
    assert!(to_api.iter().any(|r| r.contains("/portforward")), "{reqs:?}");

    // A certificate user without the right is refused by name, as a token
    // user is.
    let dave = c.api.kubeconfig_with_cert("dave", None);
    let o = as_user(&c, &dave, &["exec", &c.pod, "-m", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("dave may not create pods/exec on pod default/{}", c.pod)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_audited() {
    require_root();
    let c = cluster("authz-cert-ca", 8311);
    // Same subject as the cluster's CA, another key: only the signature
    // tells them apart.
    let (other_ca, _) = kns_tests::kubeapi::client_ca();
    let mallory = c
        .api
        .kubeconfig_signed_by(&other_ca, "admin", Some("system:masters"));
    let o = as_user(&c, &mallory, &["exec", &c.pod, "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("the client certificate is not one the cluster's client CA signed")
            && err.contains("client-ca-file"),
        "{err}"
    );
    assert!(
        c.api.reviews().iter().all(|r| r["kind"] != "SubjectAccessReview"),
        "nothing was asked about a user nobody vouched for"
    );
    let audit = c.agent.audit();
    assert!(events(&audit, "start").is_empty(), "nothing ran: {audit:#?}");
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert!(denied[0].get("user").is_none(), "{audit:#?}");
    assert!(
        denied[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not one the cluster's client CA signed"),
        "{audit:#?}"
    );
}

#[test]
fn without_the_clusters_client_ca_certificate_users_are_told_why() {
    require_root();
    let c = cluster("authz-cert-noca", 8312);
    c.api.remove_client_ca();
    let carol = c.api.kubeconfig_with_cert("carol", Some("devs"));
    let o = as_user(&c, &carol, &["exec", &c.pod, "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("the agent cannot check client certificates")
            && err.contains("extension-apiserver-authentication")
            && err.contains("Hint: kubectl-ns sends the agent your kubeconfig user's bearer token"),
        "{err}"
    );
    let denied = events(&c.agent.audit(), "denied").len();
    assert_eq!(denied, 1, "{:#?}", c.agent.audit());
}
