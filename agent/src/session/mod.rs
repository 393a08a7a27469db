//! One exec session: moving a running tool's I/O to and from the client,
//! forwarding signals and resizes, and making sure nothing outlives it.
//! The session's events are handled here; the byte moving is in `pump`,
//! the reply stream in [`replies`], the sessions running now (and their
//! kill switches) in [`registry`].

mod pump;
pub mod registry;
pub mod replies;

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, Exited, exited};
use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::enter::nsenter::{Spawned, Tool};
use crate::record::Tap;
use crate::session::pump::{feed, pump};
use crate::session::registry::Live;
use crate::session::replies::Reply;
use crate::status::AgentError;
use crate::sys::pty;
use crate::sys::{self, ExitStatus};

/// Client stdin held for a tool that is not reading it. Up to this much the
/// session keeps taking messages, so the client leaving, resizes and signals
/// still arrive; past it, reading pauses and HTTP/2 flow control holds the
/// client back.
const STDIN_BACKLOG: usize = 4 << 20;

/// After the tool exits, its remaining output drains for as long as the
/// client keeps taking it; only this long without any progress ends the
/// wait, and the client is then told that output was lost.
const DRAIN_STALL: Duration = Duration::from_secs(30);

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The tool exited (and its output was drained, or the client was
    /// told it was not).
    Exited(ExitStatus),
    /// The client went away: it cancelled the call, its connection broke,
    /// or it dropped the replies. The agent's own failures are `Lost`.
    ClientGone,
    /// The agent is shutting down (SIGTERM).
    Shutdown,
    /// The agent's --max-session-age passed.
    Expired,
    /// The client sent a message over the agent's size limit.
    Oversized,
    /// The agent could not watch or reap the tool.
    Lost,
    /// Someone ended it with `kubectl ns sessions kill`.
    Killed { by: String },
}

impl End {
    /// The audit trail's `end` word for a session the tool did not end by
    /// exiting; who ended a killed one is the line's `ended_by`.
    pub fn audit_word(&self) -> Option<&'static str> {
        Some(match self {
            End::Exited(_) => return None,
            End::ClientGone => "ClientGone",
            End::Shutdown => "Shutdown",
            End::Expired => "Expired",
            End::Oversized => "Oversized",
            End::Lost => "Lost",
            End::Killed { .. } => "Killed",
        })
    }
}

/// What a session did, for its log line.
#[derive(Debug)]
pub struct Summary {
    pub end: End,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bytes_err: u64,
}

/// Kills everything of the session, then reaps the tool. Killing first,
/// while the unreaped tool still holds its PID, means the group ID cannot
/// have been reused by then.
async fn kill_and_reap(tool: &mut Tool, exit: &AsyncFd<OwnedFd>) -> Option<ExitStatus> {
    tool.kill_all();
    loop {
        let Ok(mut guard) = exit.readable().await else {
            return None;
        };
        match sys::try_reap_pidfd(exit.get_ref()) {
            Ok(Some(s)) => {
                tool.set_reaped();
                return Some(s);
            }
            Ok(None) => guard.clear_ready(),
            Err(_) => return None,
        }
    }
}

/// Runs the session to its end. `shutdown` turning true ends it with an
/// `Unavailable` status sent to the client; `live`'s kill switch with an
/// `Aborted` one naming who ended it. `tap`: the session's recording, when
/// the policy records it. Its bytes are counted in `live` as they move.
pub async fn run<S>(
    spawned: Spawned,
    inbound: S,
    tx: mpsc::Sender<Reply>,
    shutdown: watch::Receiver<bool>,
    max_age: Option<Duration>,
    tap: Option<Tap>,
    live: Arc<Live>,
) -> Summary
where
    S: Stream<Item = Result<ExecRequest, Status>> + Unpin,
{
    let (summary, tool) = drive(spawned, inbound, tx, shutdown, max_age, tap, live).await;
    // Ending the cgroup waits for its processes to be gone, and a process
    // stuck in the kernel (a hung NFS mount) can make that slow: never on
    // the agent's one async thread, which serves every other session.
    let _ = tokio::task::spawn_blocking(move || drop(tool)).await;
    summary
}

/// Starts the session's I/O, waits for the first event that ends it, and
/// ends it: with the tool's exit status once its output is drained, or
/// with the tool killed and the client told why.
async fn drive<S>(
    spawned: Spawned,
    mut inbound: S,
    tx: mpsc::Sender<Reply>,
    mut shutdown: watch::Receiver<bool>,
    max_age: Option<Duration>,
    tap: Option<Tap>,
    live: Arc<Live>,
) -> (Summary, Tool)
where
    S: Stream<Item = Result<ExecRequest, Status>> + Unpin,
{
    let started = Instant::now();
    let tool = spawned.tool;
    let pid = tool.pid;
    // The session's last message (the exit status, or why it ended) has
    // its place in the channel kept from the start: sending it never waits
    // on a client that stopped reading, so the session still ends, frees
    // its slot and is recorded. None when the client has already gone.
    let last = tx.clone().reserve_owned().await.ok();
    let progress = Arc::new(AtomicU64::new(0));
    let out = pump(
        spawned.stdout,
        tx.clone(),
        Out::Stdout,
        progress.clone(),
        tap.clone(),
        live.clone(),
    );
    let err = spawned.stderr.map(|fd| {
        let tap = tap.as_ref().map(Tap::for_stderr);
        pump(fd, tx.clone(), Out::Stderr, progress.clone(), tap, live.clone())
    });
    let (mut stdin, stdin_task) = match spawned.stdin {
        Some(fd) => {
            let (t, task) = feed(fd, tap.clone());
            (Some(t), Some(task))
        }
        None => (None, None),
    };
    let output = Output {
        out,
        err,
        progress,
        last,
        stdin_task,
    };
    let exit = match sys::async_fd(spawned.pidfd) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot watch the tool's pidfd");
            tool.kill_all();
            if let (Some(status), Some(p)) = (farewell(&End::Lost, max_age), output.last) {
                p.send(Err(status));
            }
            return (summary(End::Lost, started, 0, (0, 0)), tool);
        }
    };
    let mut session = Session {
        tool,
        pid,
        pty: spawned.pty,
        backlog: Backlog::default(),
        close_stdin: false,
        requests_open: true,
        tap,
        live,
    };
    let clock = Clock { started, max_age };
    let end = session
        .until_end(&mut stdin, &exit, &mut inbound, &tx, &mut shutdown, clock)
        .await;
    drop(stdin);
    match end {
        End::Exited(s) => output.exited(s, session, started).await,
        end => output.ended_early(end, session, &exit, clock).await,
    }
}

/// When the session started, and how long it may last.
#[derive(Clone, Copy)]
struct Clock {
    started: Instant,
    max_age: Option<Duration>,
}

fn summary(end: End, started: Instant, bytes_in: u64, (bytes_out, bytes_err): (u64, u64)) -> Summary {
    Summary {
        end,
        duration: started.elapsed(),
        bytes_in,
        bytes_out,
        bytes_err,
    }
}

/// Client stdin the tool has not taken yet.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Bytes>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, data: Bytes) {
        self.bytes += data.len();
        self.queue.push_back(data);
    }

    /// Hands the oldest chunk to the feeder.
    fn send_next(&mut self, permit: mpsc::Permit<'_, Bytes>) {
        let data = self.queue.pop_front().expect("backlog is not empty");
        self.bytes -= data.len();
        permit.send(data);
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// What the session's events change: the tool, stdin on its way in, and
/// what the client's side of the call still does.
struct Session {
    tool: Tool,
    pid: i32,
    /// The PTY master, for resizing.
    pty: Option<OwnedFd>,
    backlog: Backlog,
    /// Close stdin once what is held has gone in.
    close_stdin: bool,
    /// Until the client half-closes its side of the call.
    requests_open: bool,
    /// The session's recording, for resizes.
    tap: Option<Tap>,
    /// Its byte counts and kill switch.
    live: Arc<Live>,
}

impl Session {
    /// Handles events until one ends the session: stdin the tool can take,
    /// the agent shutting down, a kill, the age limit, the tool's exit, a request
    /// from the client, or the client gone. `stdin` is the feeder's
    /// sender, `None` once stdin is closed (or when it is not forwarded).
    async fn until_end<S>(
        &mut self,
        stdin: &mut Option<mpsc::Sender<Bytes>>,
        exit: &AsyncFd<OwnedFd>,
        inbound: &mut S,
        tx: &mpsc::Sender<Reply>,
        shutdown: &mut watch::Receiver<bool>,
        clock: Clock,
    ) -> End
    where
        S: Stream<Item = Result<ExecRequest, Status>> + Unpin,
    {
        loop {
            tokio::select! {
                permit = async { stdin.as_ref()?.reserve().await.ok() }, if !self.backlog.is_empty() => {
                    match permit {
                        Some(p) => self.backlog.send_next(p),
                        // The tool closed its stdin: the rest is discarded.
                        None => self.backlog.clear(),
                    }
                }
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return End::Shutdown,
                by = self.live.killed() => return End::Killed { by },
                _ = async {
                    match clock.max_age {
                        Some(age) => tokio::time::sleep_until((clock.started + age).into()).await,
                        None => std::future::pending().await,
                    }
                } => return End::Expired,
                guard = exit.readable() => {
                    if let Some(end) = self.on_exit_ready(guard, exit) {
                        return end;
                    }
                }
                msg = inbound.next(), if self.requests_open && self.backlog.bytes < STDIN_BACKLOG => {
                    if let Some(end) = self.on_request(msg, stdin.is_some()) {
                        return end;
                    }
                }
                _ = tx.closed() => return End::ClientGone,
            }
            if self.close_stdin && self.backlog.is_empty() {
                *stdin = None;
            }
        }
    }

    /// The tool's pidfd is readable: reap it if it exited.
    fn on_exit_ready(
        &mut self,
        guard: io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>>,
        exit: &AsyncFd<OwnedFd>,
    ) -> Option<End> {
        let Ok(mut guard) = guard else {
            return Some(End::Lost);
        };
        // The tool is a zombie now: kill what it left in its group before
        // reaping, then reap.
        if matches!(sys::try_reap_pidfd_peek(exit.get_ref()), Ok(true)) {
            self.tool.kill_all();
        }
        match sys::try_reap_pidfd(exit.get_ref()) {
            Ok(Some(s)) => {
                self.tool.set_reaped();
                Some(End::Exited(s))
            }
            Ok(None) => {
                guard.clear_ready();
                None
            }
            Err(e) => {
                tracing::error!(pid = self.pid, error = %e, "cannot reap the tool");
                Some(End::Lost)
            }
        }
    }

    /// The next request from the client, or the end of its side of the
    /// call.
    fn on_request(&mut self, msg: Option<Result<ExecRequest, Status>>, stdin_open: bool) -> Option<End> {
        match msg {
            Some(Ok(ExecRequest { msg: Some(m) })) => self.on_message(m, stdin_open),
            Some(Ok(ExecRequest { msg: None })) => {}
            // A half-close: the client has nothing more to send (grpcurl
            // and most generated clients end their side after the last
            // message) but still reads the output. It ends stdin as
            // stdin_close does; a terminal stays open, as ssh(1) keeps the
            // pty, since typing an EOF character would be a keystroke to a
            // tool in raw mode. Whether the client is still there is now
            // told by the replies alone.
            None => {
                self.requests_open = false;
                self.close_stdin = true;
            }
            Some(Err(s)) if s.code() == tonic::Code::OutOfRange => return Some(End::Oversized),
            // The call was cancelled or its connection broke.
            Some(Err(_)) => return Some(End::ClientGone),
        }
        None
    }

    fn on_message(&mut self, m: In, stdin_open: bool) {
        let pid = self.pid;
        match m {
            In::Stdin(data) => {
                self.live.add_in(data.len() as u64);
                if stdin_open {
                    self.backlog.push(data);
                }
            }
            // Closed once what is held has gone in.
            In::StdinClose(_) => self.close_stdin = true,
            In::Resize(w) => {
                if let Some(m) = &self.pty {
                    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                    let _ = pty::resize(m, clamp(w.rows), clamp(w.cols));
                    if let Some(t) = &self.tap {
                        t.resize(clamp(w.cols), clamp(w.rows));
                    }
                }
            }
            In::Signal(n) => match Signal::try_from(n) {
                Ok(sig) => self.tool.signal_group(sig),
                Err(_) => tracing::warn!(pid, signal = n, "ignoring unknown signal number"),
            },
            In::Start(_) => tracing::warn!(pid, "ignoring a second start message"),
        }
    }
}

/// How draining a session's output after its tool exited ended.
enum Drained {
    /// Every byte went out: stdout's and stderr's counts.
    All((u64, u64)),
    /// The client took nothing for DRAIN_STALL.
    Stalled,
    /// Someone killed the session meanwhile.
    Killed(String),
}

/// The reply side of a session: the output pumps, how far the client has
/// taken their messages, and the place kept for the last message.
struct Output {
    out: JoinHandle<u64>,
    err: Option<JoinHandle<u64>>,
    progress: Arc<AtomicU64>,
    last: Option<mpsc::OwnedPermit<Reply>>,
    stdin_task: Option<JoinHandle<()>>,
}

impl Output {
    /// The tool exited: its output still in the pipes goes before the exit
    /// status, for as long as the client keeps taking it.
    /// A kill while the output drains ends the draining (the tool is gone
    /// already): the client is told who ended the session, not its status.
    async fn exited(mut self, s: ExitStatus, session: Session, started: Instant) -> (Summary, Tool) {
        let (end, bytes, reply) = match self.drain(&session.live).await {
            Drained::All(bytes) => {
                let status = match s {
                    ExitStatus::Code(c) => exited::Status::Code(c),
                    ExitStatus::Signal(n) => exited::Status::Signal(n),
                };
                let exited = ExecResponse {
                    msg: Some(Out::Exited(Exited {
                        status: Some(status),
                        error: String::new(),
                        note: session.tool.oom_note().unwrap_or_default(),
                    })),
                };
                (End::Exited(s), bytes, Ok(exited))
            }
            // Never an exit status after a cut stream: the client must not
            // take a truncated output for a complete one.
            Drained::Stalled => {
                self.stop_pumps();
                let e = AgentError::OutputDropped {
                    exit: format!("{s:?}"),
                    stalled: DRAIN_STALL.as_secs(),
                };
                (End::Exited(s), (0, 0), Err(e.into()))
            }
            Drained::Killed(by) => {
                self.stop_pumps();
                let e = AgentError::Killed { by: by.clone() };
                (End::Killed { by }, (0, 0), Err(e.into()))
            }
        };
        if let Some(p) = self.last {
            p.send(reply);
        }
        if let Some(t) = self.stdin_task {
            t.abort();
        }
        (
            summary(end, started, session.live.bytes_in(), bytes),
            session.tool,
        )
    }

    fn stop_pumps(&self) {
        self.out.abort();
        if let Some(e) = &self.err {
            e.abort();
        }
    }

    /// Waits for both pumps to reach end of file, unless the client took
    /// nothing for DRAIN_STALL or the session is killed meanwhile.
    async fn drain(&mut self, live: &Live) -> Drained {
        let (out, err) = (&mut self.out, &mut self.err);
        let mut drain = std::pin::pin!(async {
            let o = out.await.unwrap_or(0);
            let e = match err {
                Some(e) => e.await.unwrap_or(0),
                None => 0,
            };
            (o, e)
        });
        let mut seen = self.progress.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                d = &mut drain => return Drained::All(d),
                by = live.killed() => return Drained::Killed(by),
                _ = tokio::time::sleep(DRAIN_STALL) => {
                    let now = self.progress.load(Ordering::Relaxed);
                    if now == seen {
                        return Drained::Stalled;
                    }
                    seen = now;
                }
            }
        }
    }

    /// The session ended before the tool: kill everything of it, stop the
    /// I/O, and tell the client why.
    async fn ended_early(
        self,
        end: End,
        mut session: Session,
        exit: &AsyncFd<OwnedFd>,
        clock: Clock,
    ) -> (Summary, Tool) {
        kill_and_reap(&mut session.tool, exit).await;
        self.out.abort();
        if let Some(e) = self.err {
            e.abort();
        }
        if let Some(t) = self.stdin_task {
            t.abort();
        }
        if let (Some(status), Some(p)) = (farewell(&end, clock.max_age), self.last) {
            p.send(Err(status));
        }
        (
            summary(end, clock.started, session.live.bytes_in(), (0, 0)),
            session.tool,
        )
    }
}

/// What the client is told when the session ends before the tool does;
/// `None` when nobody is left to tell.
fn farewell(end: &End, max_age: Option<Duration>) -> Option<Status> {
    let why = match end {
        End::Shutdown => AgentError::Shutdown,
        End::Expired => AgentError::Expired(max_age.unwrap_or_default().as_secs()),
        End::Oversized => AgentError::Oversized,
        End::Lost => AgentError::Lost,
        End::Killed { by } => AgentError::Killed { by: by.clone() },
        End::ClientGone | End::Exited(_) => return None,
    };
    Some(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(out: JoinHandle<u64>) -> Output {
        Output {
            out,
            err: None,
            progress: Arc::new(AtomicU64::new(0)),
            last: None,
            stdin_task: None,
        }
    }

    #[tokio::test]
    async fn a_kill_ends_the_drain_of_an_exited_tools_output() {
        // Output a client never takes: only the kill can end the wait
        // before DRAIN_STALL.
        let mut stuck = output(tokio::spawn(std::future::pending::<u64>()));
        let live = Live::default();
        live.kill("carol");
        let drained = tokio::time::timeout(Duration::from_secs(5), stuck.drain(&live))
            .await
            .expect("the kill ended the drain");
        assert!(matches!(&drained, Drained::Killed(by) if by == "carol"));
        stuck.stop_pumps();
        // Not killed, the drain ends with the output.
        let mut done = output(tokio::spawn(async { 7 }));
        assert!(matches!(done.drain(&Live::default()).await, Drained::All((7, 0))));
    }
}
