//! One target's session: open it within the answer timeout, pump the
//! agent's replies to the writer, and pass signals and window sizes on
//! until the exit status comes, last, after every byte of output.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::Instant;

use bytes::Bytes;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, ExecStart, Exited, WindowSize};
use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::local::{Chunk, WriterEnd, forward_stdin, post, spawn_writer};
use super::signals::{SECOND_SIGNAL, Signals, local_signal_exit, sig};
use super::start::{MAX_MESSAGE, check_started, start_message, status_of};
use super::terminal::{self, RawMode};
use crate::agent::route::{self, Route};
use crate::agent::transport;
use crate::cli::ExecArgs;
use crate::error::{self, Failure, LocalError, SessionError};

/// How the reading of the agent's replies ended.
enum Pumped {
    Exited(Exited),
    /// The writer thread stopped; its own end says why.
    WriterGone,
    Failed(Failure),
}

pub(super) async fn run(args: ExecArgs) -> Result<u8, Failure> {
    let tty = args.tty && std::io::stdin().is_terminal();
    if args.tty && !tty {
        eprintln!("warning: stdin is not a terminal; running without a TTY (-t ignored, stdin still passed)");
    }
    let start = start_message(&args, tty)?;
    let tools_asked = start.tools;
    let stdin_on = start.stdin;
    // Handled from here on: until the session is open there is nothing to
    // forward a signal to, so one ends kubectl-ns at once; dropping the
    // connection makes the agent kill anything it started.
    let mut signals = Signals::install()?;
    let (req_tx, req_rx) = mpsc::channel(16);
    let response = tokio::select! {
        r = open(&args, start, &req_tx, req_rx) => r?,
        n = signals.next() => return Ok(local_signal_exit(n)),
    };
    crate::timings::mark("grpc");
    transport::warn_version_skew(response.metadata());
    let replies = response.into_inner();

    let raw = if tty { RawMode::enable() } else { None };
    if stdin_on {
        forward_stdin(req_tx.clone());
    }
    let mut winch = sig(SignalKind::window_change())?;
    let (out_tx, mut writer_end) = spawn_writer()?;
    // A raw terminal does not turn \n into \r\n.
    let eol = if raw.is_some() { "\r\n" } else { "\n" };
    let direct = Route::of(&args.kube).direct().is_some();
    let last_reply = Cell::new(Instant::now());
    // Owns `out_tx`, so the writer sees the channel close when this ends.
    let pump = pump(replies, out_tx, tools_asked, eol, direct, &last_reply);
    tokio::pin!(pump);
    let mut pumped = false;
    let mut outcome: Option<Result<Exited, Failure>> = None;
    let mut forwarded_at: Option<Instant> = None;
    loop {
        tokio::select! {
            p = &mut pump, if !pumped => {
                pumped = true;
                outcome = match p {
                    Pumped::Exited(e) => Some(Ok(e)),
                    Pumped::Failed(f) => Some(Err(f)),
                    Pumped::WriterGone => None,
                };
            }
            end = &mut writer_end => match end {
                Ok(WriterEnd::Closed) => return Ok(0),
                Ok(WriterEnd::Failed(e)) => return Err(LocalError::Write(e).into()),
                // Drained: every byte is out, so the exit status or the
                // error comes last.
                Ok(WriterEnd::Drained) | Err(_) => {
                    let e = match outcome {
                        Some(o) => o?,
                        None => return Err(SessionError::OutputEndedFirst.into()),
                    };
                    return Ok(finish(e, raw));
                }
            },
            n = signals.next() => {
                let interrupt = n == libc::SIGINT || n == libc::SIGTERM;
                // The user asked twice and the agent (or the port-forward
                // in between) has not answered since: stop waiting.
                if interrupt
                    && let Some(at) = forwarded_at
                    && at.elapsed() <= SECOND_SIGNAL
                    && last_reply.get() < at
                {
                    drop(raw);
                    eprintln!("kubectl-ns: the agent did not answer the signal; ending without the remote status");
                    return Ok(local_signal_exit(n));
                }
                if interrupt {
                    forwarded_at = Some(Instant::now());
                }
                post(&req_tx, In::Signal(n));
            }
            _ = winch.recv(), if tty => {
                if let Some((rows, cols)) = terminal::size() {
                    post(&req_tx, In::Resize(WindowSize { rows, cols }));
                }
            }
        }
    }
}

/// Reaches the target and opens the session, within the answer timeout
/// (whose message says whether the target was still being reached).
async fn open(
    args: &ExecArgs,
    mut start: ExecStart,
    req_tx: &mpsc::Sender<ExecRequest>,
    req_rx: mpsc::Receiver<ExecRequest>,
) -> Result<tonic::Response<tonic::Streaming<ExecResponse>>, Failure> {
    let reaching = Cell::new(true);
    let open = async {
        let target = args.target.as_ref().ok_or(SessionError::NoTarget)?;
        let reached = route::reach(&args.kube, target, args.container.as_deref()).await?;
        reaching.set(false);
        start.target = Some(reached.target);
        let mut client = AgentClient::new(reached.channel).max_decoding_message_size(MAX_MESSAGE);
        req_tx
            .send(ExecRequest {
                msg: Some(In::Start(start)),
            })
            .await
            .map_err(|_| SessionError::RequestsClosed)?;
        crate::timings::grpc_call();
        client
            .exec(ReceiverStream::new(req_rx))
            .await
            .map_err(|s| error::status_failure(&s))
    };
    tokio::time::timeout(crate::agent::deadline::ANSWER_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| {
            Err(error::silent(
                reaching.get(),
                crate::agent::deadline::ANSWER_TIMEOUT,
            ))
        })
}

/// Reads the agent's replies and hands the output to the writer, until the
/// exit status, a failure, or the writer's end.
async fn pump(
    mut replies: tonic::Streaming<ExecResponse>,
    out_tx: mpsc::Sender<Chunk>,
    tools_asked: i32,
    eol: &str,
    direct: bool,
    replied: &Cell<Instant>,
) -> Pumped {
    loop {
        let r = match replies.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Pumped::Failed(SessionError::NoExitStatus.into());
            }
            // A status with a source is the transport's own, not one
            // the agent sent.
            Err(s) if std::error::Error::source(&s).is_some() => {
                return Pumped::Failed(error::broken_session(&s, direct));
            }
            Err(s) => return Pumped::Failed(error::status_failure(&s)),
        };
        replied.set(Instant::now());
        let chunk = match r.msg {
            Some(Out::Stdout(b)) => Chunk::Stdout(b),
            Some(Out::Stderr(b)) => Chunk::Stderr(b),
            // Returning drops `out_tx`: the writer drains and ends.
            Some(Out::Exited(e)) => return Pumped::Exited(e),
            Some(Out::Started(s)) => {
                if let Err(f) = check_started(tools_asked, &s) {
                    return Pumped::Failed(f);
                }
                if s.notices.is_empty() {
                    continue;
                }
                // Notes go through the writer, so they keep their place
                // before the command's own output.
                let notes: String = s
                    .notices
                    .iter()
                    .map(|n| format!("kubectl-ns: note: {n}{eol}"))
                    .collect();
                Chunk::Stderr(Bytes::from(notes))
            }
            None => continue,
        };
        if out_tx.send(chunk).await.is_err() {
            return Pumped::WriterGone;
        }
    }
}

/// After the last byte of output: the terminal restored, the agent's
/// error and note said, and the remote status as the exit code.
fn finish(e: Exited, raw: Option<RawMode>) -> u8 {
    drop(raw);
    for m in [&e.error, &e.note].into_iter().filter(|m| !m.is_empty()) {
        eprintln!("kubectl-ns: {m}");
    }
    crate::timings::mark("exec");
    let (code, signal) = status_of(&e);
    error::from_remote(code, signal)
}
