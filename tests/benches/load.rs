//! Load on one agent: 200 concurrent sessions each streaming 1 MiB, plus 50
//! interactive TTY sessions, each over its own connection, as 250 users
//! would. Reports every byte accounted for, session start latency (request
//! to `Started`), the agent's peak RSS, failures, and what is left after.
//!
//! Run as root: `cargo build --release --workspace --bins && cargo bench -p kns-tests --bench load`
//! (or `./scripts/bench`). Prints a Markdown table for docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecStart, Namespace, Node, Target, WindowSize, exited, target};
use kns_tests::agent::Agent;
use kns_tests::containerd::channel;
use kns_tests::{require_root, wait_until};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const STREAMS: usize = 200;
const TTYS: usize = 50;
const BYTES: usize = 1 << 20;

struct Outcome {
    start: Duration,
    stdout: Vec<u8>,
    exit: Option<i32>,
    error: Option<String>,
}

async fn session(socket: std::path::PathBuf, start: ExecStart, input: Option<Vec<u8>>) -> Outcome {
    let (tx, rx) = mpsc::channel(4);
    tx.send(ExecRequest {
        msg: Some(In::Start(start)),
    })
    .await
    .unwrap();
    if let Some(data) = input {
        tx.send(ExecRequest {
            msg: Some(In::Stdin(data.into())),
        })
        .await
        .unwrap();
    }
    let t0 = Instant::now();
    let mut client = AgentClient::new(channel(&socket)).max_decoding_message_size(16 << 20);
    let mut out = Outcome {
        start: Duration::ZERO,
        stdout: Vec::new(),
        exit: None,
        error: None,
    };
    let mut replies = match client.exec(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            out.error = Some(s.message().to_owned());
            return out;
        }
    };
    loop {
        match replies.message().await {
            Ok(Some(m)) => match m.msg {
                Some(Out::Started(_)) => out.start = t0.elapsed(),
                Some(Out::Stdout(b)) => out.stdout.extend_from_slice(&b),
                Some(Out::Exited(e)) => {
                    out.exit = match e.status {
                        Some(exited::Status::Code(c)) => Some(c),
                        Some(exited::Status::Signal(s)) => Some(128 + s),
                        None => None,
                    };
                    break;
                }
                _ => {}
            },
            Ok(None) => break,
            Err(s) => {
                out.error = Some(s.message().to_owned());
                break;
            }
        }
    }
    drop(tx);
    out
}

fn start(argv: &[&str], tty: bool) -> ExecStart {
    ExecStart {
        target: Some(Target {
            kind: Some(target::Kind::Node(Node {})),
        }),
        namespaces: vec![Namespace::Net as i32],
        argv: argv.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: tty,
        window: tty.then_some(WindowSize { rows: 24, cols: 80 }),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    require_root();
    let agent = Agent::start_with_env(None, &[("KNS_MAX_SESSIONS", "512"), ("KNS_LOG", "warn")]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wall = Instant::now();
    let outcomes: Vec<(bool, Outcome)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let s = start(&["head", "-c", &BYTES.to_string(), "/dev/zero"], false);
            tasks.push((false, tokio::spawn(session(agent.socket.clone(), s, None))));
        }
        for i in 0..TTYS {
            let s = start(&["sh"], true);
            let input = format!("echo kns-tty-{i}-ok\nexit 0\n").into_bytes();
            tasks.push((true, tokio::spawn(session(agent.socket.clone(), s, Some(input)))));
        }
        let mut out = Vec::new();
        for (tty, t) in tasks {
            out.push((tty, t.await.unwrap()));
        }
        out
    });
    let wall = wall.elapsed();

    let mut failures = Vec::new();
    let mut bytes = 0usize;
    for (i, (tty, o)) in outcomes.iter().enumerate() {
        let ok = o.error.is_none()
            && o.exit == Some(0)
            && if *tty {
                String::from_utf8_lossy(&o.stdout).contains(&format!("kns-tty-{}-ok", i - STREAMS))
            } else {
                o.stdout.len() == BYTES && o.stdout.iter().all(|b| *b == 0)
            };
        if !tty {
            bytes += o.stdout.len();
        }
        if !ok {
            failures.push(format!(
                "session {i}: exit {:?}, error {:?}, {} bytes",
                o.exit,
                o.error,
                o.stdout.len()
            ));
        }
    }
    let mut starts: Vec<f64> = outcomes
        .iter()
        .map(|(_, o)| o.start.as_secs_f64() * 1e3)
        .collect();
    starts.sort_by(|a, b| a.total_cmp(b));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let clean = wait_until(Duration::from_secs(10), || {
        agent.cgroup.sessions().is_empty() && agent.cgroup.procs() == vec![agent.pid()]
    });

    println!("| load: {STREAMS} × 1 MiB streams + {TTYS} TTY sessions, one agent | value |");
    println!("|---|---|");
    println!("| wall time, all sessions | {:.2} s |", wall.as_secs_f64());
    println!("| bytes delivered / expected | {bytes} / {} |", STREAMS * BYTES);
    println!(
        "| session start (request → Started): p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        percentile(&starts, 0.5),
        percentile(&starts, 0.99),
        starts.last().unwrap()
    );
    println!(
        "| agent RSS: peak / after | {:.1} / {:.1} MiB |",
        kib("VmHWM:") / 1024.0,
        kib("VmRSS:") / 1024.0
    );
    println!("| failed sessions | {} |", failures.len());
    println!(
        "| left after: session cgroups / processes besides the agent | {} / {} |",
        agent.cgroup.sessions().len(),
        agent.cgroup.procs().len().saturating_sub(1)
    );
    for f in failures.iter().take(10) {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty() && bytes == STREAMS * BYTES && clean,
        "the load run failed"
    );
}
