//! The order in which the agent checks an Exec request, on the real
//! `AgentService` served by tonic over an in-memory stream (no socket, no
//! listener, no plugin), with the fake API server answering its
//! TokenReviews and SubjectAccessReviews: validate → identify → resolve →
//! authorize → policy → session limit. Each test gives a request that two
//! adjacent checks would both refuse, and asserts which one answers, so a
//! reordering (asking the API server about a malformed request, telling an
//! unauthenticated caller what exists, counting a refused request against
//! the limit) fails here.

use std::sync::Arc;

use kns_agent::access::audit::Audit;
use kns_agent::access::authz::Access;
use kns_agent::access::clientcert::ClientCerts;
use kns_agent::access::kubeclient::{KubeClient, KubeConfig};
use kns_agent::access::policy::Policies;
use kns_agent::enter::cgroup::Containment;
use kns_agent::enter::request::Node;
use kns_agent::metrics::Metrics;
use kns_agent::record::Store;
use kns_agent::rpc::service::{AgentService, Guard, Limits};
use kns_agent::sys::spawner::Spawner;
use kns_agent::target::resolve::Resolver;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::agent_server::AgentServer;
use kns_proto::agent::{ExecRequest, ExecStart, Namespace, Target, exec_request, target};
use kns_tests::agent::audit_records;
use kns_tests::kubeapi::{FakeApi, Grant};
use kns_tests::require_root;
use tonic::Code;
use tonic::transport::{Endpoint, Server};

const NODE: &str = "node-a";

/// The service as `main` builds it, with the fake API server checking
/// callers, `policy` as the operator's, room for `max_sessions`, and
/// sessions uncontained (no cgroups are needed to be refused).
struct Agent {
    client: AgentClient<tonic::transport::Channel>,
    api: FakeApi,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Agent {
    fn start(policy: &str, max_sessions: u32) -> Agent {
        Agent::start_with(policy, max_sessions, false)
    }

    /// With `stopping`, as the agent is once SIGTERM came or its node
    /// reference exited.
    fn start_with(policy: &str, max_sessions: u32, stopping: bool) -> Agent {
        require_root();
        let api = FakeApi::start();
        api.add_user("alice-token", "alice", &["system:authenticated"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).expect("policy");
        let audit_path = dir.path().join("audit.log");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let service = rt.block_on(async {
            let kube = KubeClient::new(&KubeConfig {
                url: format!("https://{}", api.addr),
                ca: api.ca_path(),
                token_file: api.agent_token_path(),
            })
            .expect("the agent's API client");
            let certs = Arc::new(ClientCerts::new(Some(kube.clone())).expect("client certs"));
            // This process stands in for the node, as the other tests' agents
            // do (pid 1 is out of reach in a sandbox).
            let metrics = Metrics::new();
            let node = Node::probe(std::process::id() as i32).expect("this process as the node reference");
            AgentService::new(
                Resolver::new(node.pid, node.start_time, None, None, metrics.clone()),
                node,
                tokio::sync::watch::channel(stopping).1,
                Spawner::start().expect("spawner"),
                Containment {
                    sessions: None,
                    layout: None,
                    error: Some("not needed to be refused".into()),
                    memory: Ok(None),
                },
                Limits {
                    max_age: None,
                    max_sessions,
                },
                Guard {
                    access: Access::new(Some(kube), certs, Some(NODE.into()), false),
                    audit: Audit::open(Some(&audit_path)).expect("audit log"),
                    policy: Arc::new(Policies::load(Some(policy_path), metrics.clone())),
                    recordings: Store::new(dir.path().join("recordings")),
                    metrics,
                },
            )
        });
        let client = rt.block_on(async {
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            tokio::spawn(
                Server::builder()
                    .add_service(AgentServer::new(service))
                    .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io))),
            );
            let mut client_io = Some(client_io);
            let channel = Endpoint::from_static("http://in-memory")
                .connect_with_connector(tower::service_fn(move |_| {
                    let io = client_io
                        .take()
                        .ok_or_else(|| std::io::Error::other("one connection only"));
                    async move { io.map(hyper_util::rt::TokioIo::new) }
                }))
                .await
                .expect("connect over the duplex");
            AgentClient::new(channel)
        });
        Agent {
            client,
            api,
            dir,
            _rt: rt,
        }
    }

    /// Exec's answer to `start` sent with `token` (none: no credentials).
    fn exec(&mut self, token: Option<&str>, start: ExecStart) -> tonic::Status {
        let msg = ExecRequest {
            msg: Some(exec_request::Msg::Start(start)),
        };
        let mut req = tonic::Request::new(tokio_stream::once(msg));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        let client = &mut self.client;
        match self._rt.block_on(client.exec(req)) {
            Err(s) => s,
            Ok(_) => panic!("the request was admitted, but every test here expects a refusal"),
        }
    }

    fn denials(&self) -> Vec<String> {
        audit_records(&self.dir.path().join("audit.log"))
            .iter()
            .filter(|r| r["event"] == "denied")
            .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn reviews(&self) -> Vec<String> {
        self.api
            .reviews()
            .iter()
            .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn start(target: target::Kind, argv: &[&str]) -> ExecStart {
    ExecStart {
        target: Some(Target { kind: Some(target) }),
        namespaces: vec![Namespace::Net as i32],
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn node() -> target::Kind {
    target::Kind::Node(kns_proto::agent::Node {})
}

fn node_exec() -> Grant {
    Grant::new("alice", "create", "kubectl-ns.io", "nodes/exec").named(NODE)
}

#[test]
fn a_malformed_request_is_refused_before_anyone_is_asked_who_sent_it() {
    let mut a = Agent::start("", 4);
    let s = a.exec(None, start(node(), &[]));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        a.reviews().is_empty(),
        "the API server was asked: {:?}",
        a.reviews()
    );
}

#[test]
fn an_unauthenticated_caller_learns_nothing_of_the_target() {
    let mut a = Agent::start("", 4);
    let missing = target::Kind::ContainerId("0123456789ab".into());
    let s = a.exec(Some("nobody-token"), start(missing, &["true"]));
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert_eq!(a.denials().len(), 1, "the refusal is audited");
    assert_eq!(a.reviews(), ["TokenReview"]);
}

#[test]
fn the_target_is_resolved_before_rights_are_asked_about_it() {
    // The rights asked depend on the pod the runtime names, so a target
    // that does not exist is refused as missing, with no review of rights.
    let mut a = Agent::start("", 4);
    let missing = target::Kind::Pid(i32::MAX);
    let s = a.exec(Some("alice-token"), start(missing, &["true"]));
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    assert_eq!(a.reviews(), ["TokenReview"]);
}

#[test]
fn rights_are_checked_before_the_policy_so_a_refusal_names_the_missing_right() {
    let mut a = Agent::start("nodeTargets: false\n", 4);
    let s = a.exec(Some("alice-token"), start(node(), &["true"]));
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.metadata().get(kns_proto::DENIED_RULE_HEADER).is_some(),
        "not the authorizer's refusal: {s:?}"
    );
    assert_eq!(a.reviews(), ["TokenReview", "SubjectAccessReview"]);
}

#[test]
fn the_policy_refuses_what_the_rights_allow() {
    let mut a = Agent::start("nodeTargets: false\n", 4);
    a.api.set_grants(vec![node_exec()]);
    let s = a.exec(Some("alice-token"), start(node(), &["true"]));
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("(nodeTargets)"), "{s:?}");
    assert!(s.metadata().get(kns_proto::DENIED_RULE_HEADER).is_none(), "{s:?}");
    assert_eq!(a.denials().len(), 1, "the refusal is audited");
}

#[test]
fn the_session_limit_is_counted_last_so_refusals_never_take_a_place() {
    let mut a = Agent::start("readOnly: true\n", 0);
    a.api.set_grants(vec![node_exec()]);
    // Refused by the policy (-t on a read-only node): the policy answers,
    // though there is no room for a session at all.
    let tty = ExecStart {
        tty: true,
        ..start(node(), &["true"])
    };
    let s = a.exec(Some("alice-token"), tty);
    assert!(s.message().contains("(readOnly)"), "{s:?}");
    // Admitted by everything else: the limit answers.
    let s = a.exec(Some("alice-token"), start(node(), &["true"]));
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("--max-sessions"), "{s:?}");
    assert_eq!(
        a.denials().len(),
        2,
        "both refusals are audited: {:?}",
        a.denials()
    );
}

#[test]
fn a_stopping_agent_starts_no_session_even_one_admitted() {
    // Its node reference may have exited, and its PID be another
    // process's: nothing is entered once the agent stops.
    let mut a = Agent::start_with("", 4, true);
    a.api.set_grants(vec![node_exec()]);
    let s = a.exec(Some("alice-token"), start(node(), &["true"]));
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("the agent is stopping"), "{s:?}");
    let audit = audit_records(&a.dir.path().join("audit.log"));
    assert!(audit.iter().all(|r| r["event"] != "start"), "{audit:#?}");
}
