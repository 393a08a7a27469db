//! One exec session: moving a running tool's I/O to and from the client,
//! forwarding signals and resizes, and making sure nothing outlives it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, Exited, exited};
use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::enter::nsenter::{Spawned, Tool};
use crate::sys::pty;
use crate::sys::{self, ExitStatus};

/// Output is read in chunks that start at MIN_CHUNK and double while reads
/// fill them, up to CHUNK: interactive sessions stay small, bulk output
/// (tcpdump, cat) moves in large messages.
const MIN_CHUNK: usize = 64 * 1024;
const CHUNK: usize = 1024 * 1024;
/// Client stdin held for a tool that is not reading it. Up to this much the
/// session keeps taking messages, so the client leaving, resizes and signals
/// still arrive; past it, reading pauses and HTTP/2 flow control holds the
/// client back.
const STDIN_BACKLOG: usize = 4 << 20;
/// After the tool exits, its remaining output drains for as long as the
/// client keeps taking it; only this long without any progress ends the
/// wait, and the client is then told that output was lost.
const DRAIN_STALL: Duration = Duration::from_secs(30);

pub type Reply = Result<ExecResponse, Status>;

/// A session's replies, as tonic sends them. What it is given to hold (the
/// session's slot) is kept until tonic drops the stream: output still
/// queued for a client that stopped reading stays counted against the
/// session limit, which is what bounds the memory all sessions hold, even
/// after the session itself has ended.
///
/// A stream that ends without `exited` or an error status (the session's
/// task gone some way nobody foresaw) gets an error status in its place:
/// gRPC's OK would tell the client the output was complete.
pub struct Replies {
    rx: ReceiverStream<Reply>,
    /// `exited` or an error status has been passed on.
    concluded: bool,
    _held: Arc<dyn Send + Sync>,
}

impl Replies {
    pub fn new(rx: mpsc::Receiver<Reply>, held: Arc<dyn Send + Sync>) -> Replies {
        Replies {
            rx: ReceiverStream::new(rx),
            concluded: false,
            _held: held,
        }
    }
}

impl Stream for Replies {
    type Item = Reply;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Reply>> {
        let next = std::task::ready!(std::pin::Pin::new(&mut self.rx).poll_next(cx));
        let next = match next {
            Some(r) => {
                if matches!(
                    &r,
                    Err(_)
                        | Ok(ExecResponse {
                            msg: Some(Out::Exited(_))
                        })
                ) {
                    self.concluded = true;
                }
                Some(r)
            }
            None if !self.concluded => {
                self.concluded = true;
                tracing::error!("a session's replies ended without an exit status");
                Some(Err(Status::internal(
                    "the agent ended the session without the tool's exit status, so its output may be \
                     incomplete (an agent fault: the agent's log says more); run the command again",
                )))
            }
            None => None,
        };
        std::task::Poll::Ready(next)
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

async fn read_chunk(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.get_ref(), buf).map_err(io::Error::from)) {
            Ok(Ok(n)) => return Ok(n),
            // A PTY master reads EIO once every slave is closed: end of file.
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

/// One non-blocking read: `None` when nothing is there yet.
fn read_now(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match nix::unistd::read(fd.get_ref(), buf) {
        Ok(n) => Ok(Some(n)),
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(nix::errno::Errno::EIO) => Ok(Some(0)),
        Err(e) => Err(e.into()),
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| nix::unistd::write(inner.get_ref().as_fd(), data).map_err(io::Error::from))
        {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Copies an output fd into the reply stream until end of file or until
/// the client is gone; returns the bytes moved. `progress` counts the
/// messages the client has taken.
fn pump(
    fd: OwnedFd,
    tx: mpsc::Sender<Reply>,
    wrap: fn(Bytes) -> Out,
    progress: Arc<AtomicU64>,
) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let Ok(fd) = sys::async_fd(fd) else { return 0 };
        let mut total = 0u64;
        let mut cap = MIN_CHUNK;
        let mut buf = BytesMut::zeroed(cap);
        let mut eof = false;
        while !eof {
            let mut n = match read_chunk(&fd, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Writers such as head(1) write 8 KiB at a time; sending each
            // write as its own message costs more than the copy. Give the
            // writer one scheduling turn and take what else arrived, so bulk
            // output travels in large messages while a lone interactive
            // write still goes out at once.
            while n < cap {
                tokio::task::yield_now().await;
                match read_now(&fd, &mut buf[n..]) {
                    Ok(Some(0)) => {
                        eof = true;
                        break;
                    }
                    Ok(Some(m)) => n += m,
                    Ok(None) | Err(_) => break,
                }
            }
            total += n as u64;
            // Large reads hand their buffer over; small ones are copied so
            // a few bytes do not pin a whole chunk while in flight.
            let chunk = if n >= cap / 4 {
                if n == cap {
                    cap = (cap * 2).min(CHUNK);
                }
                let c = buf.split_to(n).freeze();
                buf = BytesMut::zeroed(cap);
                c
            } else {
                Bytes::copy_from_slice(&buf[..n])
            };
            let msg = ExecResponse {
                msg: Some(wrap(chunk)),
            };
            if tx.send(Ok(msg)).await.is_err() {
                break;
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
        total
    })
}

/// Feeds client stdin to the tool; dropping the sender closes the tool's
/// stdin.
fn feed(fd: OwnedFd) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    // Two messages of at most 1 MiB (the server's limit): with the backlog,
    // a client feeding a tool that never reads holds a bounded few MiB.
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let task = tokio::spawn(async move {
        let Ok(fd) = sys::async_fd(fd) else { return };
        while let Some(data) = rx.recv().await {
            // EPIPE: the tool closed its stdin; the rest is discarded.
            if write_all(&fd, &data).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
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
/// `Unavailable` status sent to the client.
pub async fn run<S>(
    spawned: Spawned,
    inbound: S,
    tx: mpsc::Sender<Reply>,
    shutdown: watch::Receiver<bool>,
    max_age: Option<Duration>,
) -> Summary
where
    S: Stream<Item = Result<ExecRequest, Status>> + Unpin,
{
    let (summary, tool) = drive(spawned, inbound, tx, shutdown, max_age).await;
    // Ending the cgroup waits for its processes to be gone, and a process
    // stuck in the kernel (a hung NFS mount) can make that slow: never on
    // the agent's one async thread, which serves every other session.
    let _ = tokio::task::spawn_blocking(move || drop(tool)).await;
    summary
}

async fn drive<S>(
    spawned: Spawned,
    mut inbound: S,
    tx: mpsc::Sender<Reply>,
    mut shutdown: watch::Receiver<bool>,
    max_age: Option<Duration>,
) -> (Summary, Tool)
where
    S: Stream<Item = Result<ExecRequest, Status>> + Unpin,
{
    let started = Instant::now();
    let mut tool = spawned.tool;
    let pid = tool.pid;
    // The session's last message (the exit status, or why it ended) has
    // its place in the channel kept from the start: sending it never waits
    // on a client that stopped reading, so the session still ends, frees
    // its slot and is recorded. None when the client has already gone.
    let last = tx.clone().reserve_owned().await.ok();
    let progress = Arc::new(AtomicU64::new(0));
    let mut out = pump(spawned.stdout, tx.clone(), Out::Stdout, progress.clone());
    let mut err = spawned
        .stderr
        .map(|fd| pump(fd, tx.clone(), Out::Stderr, progress.clone()));
    let (mut stdin_tx, stdin_task) = match spawned.stdin {
        Some(fd) => {
            let (t, task) = feed(fd);
            (Some(t), Some(task))
        }
        None => (None, None),
    };
    let exit = match sys::async_fd(spawned.pidfd) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot watch the tool's pidfd");
            tool.kill_all();
            if let (Some(status), Some(p)) = (farewell(End::Lost, max_age), last) {
                p.send(Err(status));
            }
            let summary = Summary {
                end: End::Lost,
                duration: started.elapsed(),
                bytes_in: 0,
                bytes_out: 0,
                bytes_err: 0,
            };
            return (summary, tool);
        }
    };
    let mut bytes_in = 0u64;
    let mut backlog: VecDeque<Bytes> = VecDeque::new();
    let mut backlog_bytes = 0usize;
    let mut close_stdin = false;
    // Until the client half-closes its side of the call.
    let mut requests_open = true;

    let end = loop {
        tokio::select! {
            permit = async { stdin_tx.as_ref()?.reserve().await.ok() }, if !backlog.is_empty() => {
                match permit {
                    Some(p) => {
                        let data = backlog.pop_front().expect("backlog is not empty");
                        backlog_bytes -= data.len();
                        p.send(data);
                    }
                    // The tool closed its stdin: the rest is discarded.
                    None => {
                        backlog.clear();
                        backlog_bytes = 0;
                    }
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break End::Shutdown,
            _ = async {
                match max_age {
                    Some(age) => tokio::time::sleep_until((started + age).into()).await,
                    None => std::future::pending().await,
                }
            } => break End::Expired,
            guard = exit.readable() => {
                let Ok(mut guard) = guard else { break End::Lost };
                // The tool is a zombie now: kill what it left in its group
                // before reaping, then reap.
                if matches!(sys::try_reap_pidfd_peek(exit.get_ref()), Ok(true)) {
                    tool.kill_all();
                }
                match sys::try_reap_pidfd(exit.get_ref()) {
                    Ok(Some(s)) => {
                        tool.set_reaped();
                        break End::Exited(s);
                    }
                    Ok(None) => guard.clear_ready(),
                    Err(e) => {
                        tracing::error!(pid, error = %e, "cannot reap the tool");
                        break End::Lost;
                    }
                }
            }
            msg = inbound.next(), if requests_open && backlog_bytes < STDIN_BACKLOG => match msg {
                Some(Ok(ExecRequest { msg: Some(m) })) => match m {
                    In::Stdin(data) => {
                        bytes_in += data.len() as u64;
                        if stdin_tx.is_some() {
                            backlog_bytes += data.len();
                            backlog.push_back(data);
                        }
                    }
                    // Closed once what is held has gone in.
                    In::StdinClose(_) => close_stdin = true,
                    In::Resize(w) => {
                        if let Some(m) = &spawned.pty {
                            let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                            let _ = pty::resize(m, clamp(w.rows), clamp(w.cols));
                        }
                    }
                    In::Signal(n) => match Signal::try_from(n) {
                        Ok(sig) => tool.signal_group(sig),
                        Err(_) => tracing::warn!(pid, signal = n, "ignoring unknown signal number"),
                    },
                    In::Start(_) => tracing::warn!(pid, "ignoring a second start message"),
                },
                Some(Ok(ExecRequest { msg: None })) => {}
                // A half-close: the client has nothing more to send (grpcurl
                // and most generated clients end their side after the last
                // message) but still reads the output. It ends stdin as
                // stdin_close does; a terminal stays open, as ssh(1) keeps
                // the pty, since typing an EOF character would be a
                // keystroke to a tool in raw mode. Whether the client is
                // still there is now told by the replies alone.
                None => {
                    requests_open = false;
                    close_stdin = true;
                }
                Some(Err(s)) if s.code() == tonic::Code::OutOfRange => break End::Oversized,
                // The call was cancelled or its connection broke.
                Some(Err(_)) => break End::ClientGone,
            },
            _ = tx.closed() => break End::ClientGone,
        }
        if close_stdin && backlog.is_empty() {
            stdin_tx = None;
        }
    };
    drop(stdin_tx);

    let end = match end {
        End::Exited(s) => {
            // Output still in the pipes belongs before the exit status.
            let mut drain = std::pin::pin!(async {
                let o = (&mut out).await.unwrap_or(0);
                let e = match &mut err {
                    Some(e) => e.await.unwrap_or(0),
                    None => 0,
                };
                (o, e)
            });
            let mut seen = progress.load(Ordering::Relaxed);
            let drained = loop {
                tokio::select! {
                    d = &mut drain => break Some(d),
                    _ = tokio::time::sleep(DRAIN_STALL) => {
                        let now = progress.load(Ordering::Relaxed);
                        if now == seen {
                            break None;
                        }
                        seen = now;
                    }
                }
            };
            let (bytes_out, bytes_err) = drained.unwrap_or_default();
            let reply = if drained.is_some() {
                let status = match s {
                    ExitStatus::Code(c) => exited::Status::Code(c),
                    ExitStatus::Signal(n) => exited::Status::Signal(n),
                };
                Ok(ExecResponse {
                    msg: Some(Out::Exited(Exited {
                        status: Some(status),
                        error: String::new(),
                        note: tool.oom_note().unwrap_or_default(),
                    })),
                })
            } else {
                out.abort();
                if let Some(e) = &err {
                    e.abort();
                }
                // Never an exit status after a cut stream: the client must
                // not take a truncated output for a complete one.
                Err(Status::data_loss(format!(
                    "the tool exited ({s:?}), but the client took none of its remaining output for {} s; \
                     the rest was dropped",
                    DRAIN_STALL.as_secs()
                )))
            };
            if let Some(p) = last {
                p.send(reply);
            }
            if let Some(t) = stdin_task {
                t.abort();
            }
            let summary = Summary {
                end: End::Exited(s),
                duration: started.elapsed(),
                bytes_in,
                bytes_out,
                bytes_err,
            };
            return (summary, tool);
        }
        other => other,
    };

    kill_and_reap(&mut tool, &exit).await;
    out.abort();
    if let Some(e) = err {
        e.abort();
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    if let (Some(status), Some(p)) = (farewell(end, max_age), last) {
        p.send(Err(status));
    }
    let summary = Summary {
        end,
        duration: started.elapsed(),
        bytes_in,
        bytes_out: 0,
        bytes_err: 0,
    };
    (summary, tool)
}

/// What the client is told when the session ends before the tool does;
/// `None` when nobody is left to tell.
fn farewell(end: End, max_age: Option<Duration>) -> Option<Status> {
    match end {
        End::Shutdown => Some(Status::unavailable(
            "the agent is shutting down (SIGTERM): the session was ended and its processes were killed; run the command again once the agent is back",
        )),
        End::Expired => Some(Status::deadline_exceeded(format!(
            "the session reached the agent's maximum age of {} s (--max-session-age): it was ended and its processes were killed",
            max_age.unwrap_or_default().as_secs()
        ))),
        End::Oversized => Some(Status::out_of_range(format!(
            "the client sent a message over the agent's limit of {} KiB: the session was ended and its processes \
             were killed (kubectl-ns sends stdin in smaller chunks; another client must too)",
            kns_proto::MAX_MESSAGE >> 10
        ))),
        End::Lost => Some(Status::internal(
            "the agent lost track of the tool's process (the agent's log says why): the session was ended and \
             its processes were killed; run the command again",
        )),
        End::ClientGone | End::Exited(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kns_proto::agent::Started;

    fn replies(sent: Vec<Reply>) -> Vec<Reply> {
        let (tx, rx) = mpsc::channel(sent.len().max(1));
        for r in sent {
            tx.try_send(r).expect("room for every reply");
        }
        drop(tx);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(Replies::new(rx, Arc::new(())).collect())
    }

    fn out(msg: Out) -> Reply {
        Ok(ExecResponse { msg: Some(msg) })
    }

    #[test]
    fn replies_end_in_an_error_unless_they_concluded() {
        let got = replies(vec![
            out(Out::Started(Started::default())),
            out(Out::Stdout(Bytes::from_static(b"x"))),
        ]);
        assert_eq!(got.len(), 3, "{got:?}");
        let last = got.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Internal, "{last:?}");
        assert!(
            last.message().contains("without the tool's exit status"),
            "{last:?}"
        );
        assert_eq!(replies(vec![]).len(), 1);
        // An exit status or an error status is the last word.
        let exited = out(Out::Exited(Exited::default()));
        assert_eq!(
            replies(vec![out(Out::Started(Started::default())), exited]).len(),
            2
        );
        let got = replies(vec![Err(Status::unavailable("shutting down"))]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().code(), tonic::Code::Unavailable);
    }
}
