//! Messages kubectl-ns never sends, straight over gRPC as any client could:
//! each gets a clear error, nothing of the session is left, and the agent
//! keeps serving.

use std::time::Duration;

use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::{ExecRequest, ExecStart, Namespace, Node, Target, VersionRequest, target};
use kns_tests::agent::Agent;
use kns_tests::{require_root, running, wait_until};
use tonic::transport::Channel;

fn client(rt: &tokio::runtime::Runtime, agent: &Agent) -> AgentClient<Channel> {
    let path = agent.addr().trim_start_matches("unix://").to_owned();
    rt.block_on(kns_proto::unix_endpoint(path).connect())
        .map(AgentClient::new)
        .expect("connect to the agent")
}

fn start(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        msg: Some(In::Start(ExecStart {
            target: Some(Target {
                kind: Some(target::Kind::Node(Node {})),
            }),
            namespaces: vec![Namespace::Net as i32],
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: true,
            ..Default::default()
        })),
    }
}

fn still_serves(rt: &tokio::runtime::Runtime, agent: &Agent) {
    let v = rt.block_on(client(rt, agent).version(VersionRequest {}));
    assert!(v.is_ok(), "the agent stopped serving: {v:?}\n{}", agent.logs());
}

#[test]
fn an_oversized_start_is_refused_with_the_limit() {
    require_root();
    let agent = Agent::start(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let huge = "x".repeat(2 << 20);
    let r = rt.block_on(client(&rt, &agent).exec(tokio_stream::iter([start(&["true", &huge])])));
    let e = r.expect_err("a 2 MiB start was accepted");
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    assert!(
        e.message().contains("1024 KiB") && e.message().contains("arguments"),
        "{e:?}"
    );
    still_serves(&rt, &agent);
}

#[test]
fn an_oversized_stdin_chunk_ends_the_session_and_its_tool() {
    require_root();
    let agent = Agent::start(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut c = client(&rt, &agent);
    let status = rt.block_on(async {
        tx.send(start(&["sleep", "4646"])).await.unwrap();
        let mut out = c
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("the session starts")
            .into_inner();
        let first = out.message().await.expect("started").expect("a message");
        assert!(matches!(
            first.msg,
            Some(kns_proto::agent::exec_response::Msg::Started(_))
        ));
        let chunk = ExecRequest {
            msg: Some(In::Stdin(vec![b'x'; 2 << 20].into())),
        };
        tx.send(chunk).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), out.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("the stream ended without a status"),
                Ok(Err(s)) => break s,
                Err(_) => panic!("the session did not end within 10 s of the oversized chunk"),
            }
        }
    });
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("over the agent's limit"), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || !running(&["sleep", "4646"])),
        "the tool outlived its session"
    );
    still_serves(&rt, &agent);
}
