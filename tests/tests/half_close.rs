//! A client that ends its request stream right after `start`, as grpcurl
//! and most generated clients do for a call with one message: the session
//! runs to its end, the client gets every byte and exactly one `exited`,
//! and a session that ends any other way never ends with status OK.

use std::time::Duration;

use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, ExecStart, Exited, Namespace, Target, exited, target};
use kns_tests::agent::{AGENT_PORT, Agent};
use kns_tests::target::NsProcess;
use kns_tests::{require_root, running, wait_until};
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// Bounds a whole session, so a regression fails instead of hanging.
const SESSION: Duration = Duration::from_secs(60);

fn unix_client(rt: &tokio::runtime::Runtime, agent: &Agent) -> AgentClient<Channel> {
    let path = agent.addr().trim_start_matches("unix://").to_owned();
    rt.block_on(kns_proto::unix_endpoint(path).connect())
        .map(|c| AgentClient::new(c).max_decoding_message_size(16 << 20))
        .expect("connect to the agent's socket")
}

/// `start` for `argv` in the target's network namespace.
fn start(t: &NsProcess, argv: &[&str]) -> ExecStart {
    ExecStart {
        target: Some(Target {
            kind: Some(target::Kind::Pid(t.pid)),
        }),
        namespaces: vec![Namespace::Net as i32],
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Sends `start`, then `stdin`, then ends the request stream at once.
async fn half_closed(
    client: &mut AgentClient<Channel>,
    start: ExecStart,
    stdin: &[&[u8]],
) -> Streaming<ExecResponse> {
    let requests: Vec<ExecRequest> = std::iter::once(In::Start(start))
        .chain(stdin.iter().map(|b| In::Stdin(b.to_vec().into())))
        .map(|m| ExecRequest { msg: Some(m) })
        .collect();
    client
        .exec(tokio_stream::iter(requests))
        .await
        .expect("the session starts")
        .into_inner()
}

/// Everything a session's reply stream carried.
#[derive(Default)]
struct Seen {
    started: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exited: Vec<Exited>,
    /// Messages that came after the first `exited`.
    after_exited: usize,
    /// How the stream ended: `Ok` is gRPC's status OK.
    end: Option<Result<(), Status>>,
}

/// Output shown by its length and start: a failing test's message stays
/// readable after megabytes.
impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = |b: &[u8]| {
            format!(
                "{} bytes {:?}",
                b.len(),
                String::from_utf8_lossy(&b[..b.len().min(200)])
            )
        };
        f.debug_struct("Seen")
            .field("started", &self.started)
            .field("stdout", &head(&self.stdout))
            .field("stderr", &head(&self.stderr))
            .field("exited", &self.exited)
            .field("after_exited", &self.after_exited)
            .field("end", &self.end)
            .finish()
    }
}

impl Seen {
    /// Fails unless the session ended with exactly one `exited` (code 0)
    /// as its last message, then status OK.
    fn assert_clean_exit(&self, logs: &str) {
        assert_eq!(self.started, 1, "{self:?}\n{logs}");
        assert!(
            matches!(self.end, Some(Ok(()))),
            "the stream did not end with status OK: {:?}\n{logs}",
            self.end
        );
        assert_eq!(
            self.exited.len(),
            1,
            "not exactly one exit status: {self:?}\n{logs}"
        );
        assert_eq!(
            self.exited[0].status,
            Some(exited::Status::Code(0)),
            "{self:?}\n{logs}"
        );
        assert_eq!(self.after_exited, 0, "messages after the exit status: {self:?}");
    }
}

async fn take(stream: &mut Streaming<ExecResponse>, seen: &mut Seen) {
    loop {
        match stream.message().await {
            Ok(Some(m)) => {
                if !seen.exited.is_empty() {
                    seen.after_exited += 1;
                }
                match m.msg {
                    Some(Out::Started(_)) => seen.started += 1,
                    Some(Out::Stdout(b)) => seen.stdout.extend_from_slice(&b),
                    Some(Out::Stderr(b)) => seen.stderr.extend_from_slice(&b),
                    Some(Out::Exited(e)) => seen.exited.push(e),
                    None => {}
                }
            }
            Ok(None) => {
                seen.end = Some(Ok(()));
                return;
            }
            Err(s) => {
                seen.end = Some(Err(s));
                return;
            }
        }
    }
}

/// Reads the replies to the end, within [`SESSION`].
async fn collect(mut stream: Streaming<ExecResponse>) -> Seen {
    let mut seen = Seen::default();
    if tokio::time::timeout(SESSION, take(&mut stream, &mut seen))
        .await
        .is_err()
    {
        panic!("the session did not end within {SESSION:?}: {seen:?}");
    }
    seen
}

fn run(
    rt: &tokio::runtime::Runtime,
    client: &mut AgentClient<Channel>,
    start: ExecStart,
    stdin: &[&[u8]],
) -> Seen {
    rt.block_on(async { collect(half_closed(client, start, stdin).await).await })
}

fn net_target() -> NsProcess {
    NsProcess::spawn(&["--net"], "exec sleep 1000")
}

/// What most tests here start from: a target in a network namespace of its
/// own, a local agent, and a client on its socket.
struct Session {
    t: NsProcess,
    agent: Agent,
    rt: tokio::runtime::Runtime,
    c: AgentClient<Channel>,
}

impl Session {
    fn new() -> Self {
        require_root();
        let t = net_target();
        let agent = Agent::start(None);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let c = unix_client(&rt, &agent);
        Session { t, agent, rt, c }
    }
}

#[test]
fn a_plain_tool_runs_to_its_end_after_a_half_close() {
    let Session { t, agent, rt, mut c } = Session::new();

    let seen = run(&rt, &mut c, start(&t, &["sh", "-c", "echo x; echo y >&2"]), &[]);
    seen.assert_clean_exit(&agent.logs());
    assert_eq!(seen.stdout, b"x\n");
    assert_eq!(seen.stderr, b"y\n");

    // Many messages' worth, most of it still on its way when the tool exits.
    let size = 5 << 20;
    let seen = run(
        &rt,
        &mut c,
        start(&t, &["head", "-c", &size.to_string(), "/dev/zero"]),
        &[],
    );
    seen.assert_clean_exit(&agent.logs());
    assert_eq!(seen.stdout.len(), size, "output was cut short");
    assert!(seen.stdout.iter().all(|b| *b == 0));
}

#[test]
fn a_terminal_session_runs_to_its_end_after_a_half_close() {
    let Session { t, agent, rt, mut c } = Session::new();
    let seen = run(
        &rt,
        &mut c,
        ExecStart {
            tty: true,
            ..start(&t, &["sh", "-c", "tty; echo x"])
        },
        &[],
    );
    seen.assert_clean_exit(&agent.logs());
    // The terminal turns \n into \r\n.
    let out = String::from_utf8_lossy(&seen.stdout);
    assert!(
        out.starts_with("/dev/pts/") && out.ends_with("\r\nx\r\n"),
        "{out:?}"
    );
}

#[test]
fn a_half_close_is_the_end_of_stdin() {
    let Session { t, agent, rt, mut c } = Session::new();
    let seen = run(
        &rt,
        &mut c,
        ExecStart {
            stdin: true,
            ..start(&t, &["cat"])
        },
        &[b"hello ", b"world"],
    );
    seen.assert_clean_exit(&agent.logs());
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "hello world");
    // The end of stdin is the tool's to see, whatever it then does.
    let seen = run(
        &rt,
        &mut c,
        ExecStart {
            stdin: true,
            ..start(&t, &["sh", "-c", "wc -c; exit 7"])
        },
        // Under the agent's 1 MiB limit for one message.
        &[&[b'z'; 256 << 10][..]; 12],
    );
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        (3 << 20).to_string(),
        "{seen:?}"
    );
    assert_eq!(seen.exited.len(), 1, "{seen:?}");
    assert_eq!(seen.exited[0].status, Some(exited::Status::Code(7)));
    assert!(matches!(seen.end, Some(Ok(()))), "{seen:?}");
}

#[test]
fn a_half_closed_session_still_ends_when_its_client_leaves() {
    let Session { t, agent, rt, mut c } = Session::new();
    rt.block_on(async {
        // The pause outlasts what the session took to end when it took
        // a half-close for a client gone.
        let script = "sleep 1; echo ready; exec sleep 4747";
        let mut replies = half_closed(&mut c, start(&t, &["sh", "-c", script]), &[]).await;
        // Up to `ready`: the tool runs on, its output reaching a client
        // that sends nothing more.
        let mut out = Vec::new();
        let ready = tokio::time::timeout(SESSION, async {
            while !out.ends_with(b"ready\n") {
                match replies.message().await {
                    Ok(Some(ExecResponse {
                        msg: Some(Out::Stdout(b)),
                    })) => out.extend_from_slice(&b),
                    Ok(Some(_)) => {}
                    end => return Err(end),
                }
            }
            Ok(())
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(end)) => panic!(
                "the session ended before the tool's output: {end:?}\n{}",
                agent.logs()
            ),
            Err(_) => panic!("no output within {SESSION:?}"),
        }
        assert!(
            wait_until(Duration::from_secs(10), || running(&["sleep", "4747"])),
            "the tool never reached its sleep"
        );
        // Dropping the replies cancels the call.
    });
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || !running(&["sleep", "4747"])),
        "the tool outlived a client that cancelled the call\n{}",
        agent.logs()
    );
    assert!(agent.logged("ClientGone"), "{}", agent.logs());
}

/// Starts `sleep MARK` in a half-closed session and waits until it runs.
fn sleeping(
    rt: &tokio::runtime::Runtime,
    c: &mut AgentClient<Channel>,
    t: &NsProcess,
    mark: &str,
) -> Streaming<ExecResponse> {
    let replies = rt.block_on(half_closed(c, start(t, &["sleep", mark]), &[]));
    assert!(
        wait_until(Duration::from_secs(10), || running(&["sleep", mark])),
        "the half-closed session's tool never ran"
    );
    replies
}

fn assert_ended_with(seen: &Seen, code: tonic::Code, says: &str) {
    assert!(seen.exited.is_empty(), "{seen:?}");
    match &seen.end {
        Some(Err(s)) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(s.message().contains(says), "{s:?}");
        }
        other => panic!("a session ended without its exit status, yet with {other:?}"),
    }
}

#[test]
fn a_session_ended_by_the_agent_never_ends_with_status_ok() {
    require_root();
    let t = net_target();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let aging = Agent::start_with_env(None, &[("KNS_MAX_SESSION_AGE", "2")]);
    let mut c = unix_client(&rt, &aging);
    let replies = sleeping(&rt, &mut c, &t, "4848");
    let seen = rt.block_on(collect(replies));
    assert_ended_with(&seen, tonic::Code::DeadlineExceeded, "maximum age of 2 s");
    assert!(!running(&["sleep", "4848"]));

    let mut agent = Agent::start(None);
    let mut c = unix_client(&rt, &agent);
    let replies = sleeping(&rt, &mut c, &t, "4949");
    let collecting = rt.spawn(collect(replies));
    let status = agent.terminate().expect("agent exit status");
    assert!(status.success(), "agent exited with {status:?}\n{}", agent.logs());
    let seen = rt.block_on(collecting).unwrap();
    assert_ended_with(&seen, tonic::Code::Unavailable, "shutting down");
    assert!(!running(&["sleep", "4949"]));
}

#[test]
fn a_half_close_over_tcp_is_the_same() {
    require_root();
    let t = net_target();
    // The TCP listener checks tokens with the API server, which this test
    // has no part in: it is the stream handling that is under test.
    let agent = Agent::start_tcp_env(None, &[("KNS_INSECURE_SKIP_AUTHZ".into(), "1".into())]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pid = agent.pid();
    let channel = rt
        .block_on(
            Endpoint::from_static("http://agent.invalid").connect_with_connector(tower::service_fn(
                move |_: tonic::transport::Uri| async move {
                    kns_tests::kubeapi::connect_in_netns(pid, AGENT_PORT)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                },
            )),
        )
        .expect("connect to the agent's TCP port");
    let mut c = AgentClient::new(channel).max_decoding_message_size(16 << 20);
    let seen = run(&rt, &mut c, start(&t, &["echo", "x"]), &[]);
    seen.assert_clean_exit(&agent.logs());
    assert_eq!(seen.stdout, b"x\n");
    let seen = run(
        &rt,
        &mut c,
        ExecStart {
            stdin: true,
            ..start(&t, &["cat"])
        },
        &[b"over tcp"],
    );
    seen.assert_clean_exit(&agent.logs());
    assert_eq!(seen.stdout, b"over tcp");
}
