//! The local end of a session: stdin forwarded from a thread, the
//! command's output written on a thread, and requests queued without
//! blocking the session loop.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use bytes::Bytes;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::{ExecRequest, StdinClose};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Failure, LocalError};

/// Reads stdin on a plain thread (a blocking read cannot be cancelled, and
/// the process exits without waiting for it) and forwards it.
pub(super) fn forward_stdin(tx: mpsc::Sender<ExecRequest>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = ExecRequest {
                        msg: Some(In::Stdin(Bytes::copy_from_slice(&buf[..n]))),
                    };
                    if tx.blocking_send(msg).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(ExecRequest {
            msg: Some(In::StdinClose(StdinClose {})),
        });
    });
}

/// Output chunks between the runtime and the writer thread: enough to keep
/// the terminal busy, bounded so a slow reader slows the agent down.
const OUTPUT_QUEUE: usize = 8;

pub(super) enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// How the writer thread ended.
pub(super) enum WriterEnd {
    /// Every chunk was written and the channel closed.
    Drained,
    /// The local reader went away (`| head`): not an error.
    Closed,
    Failed(std::io::Error),
}

/// Writes the command's output on a thread of its own: a blocking write to a
/// slow terminal or a stopped reader must not stall the single-threaded
/// runtime, which also drives the HTTP/2 connection and signal forwarding.
/// The bounded channel carries backpressure to the agent through the
/// HTTP/2 flow control; one writer keeps stdout and stderr in order.
pub(super) fn spawn_writer() -> Result<(mpsc::Sender<Chunk>, oneshot::Receiver<WriterEnd>), Failure> {
    // Plain files over dups of fds 1 and 2: std's stdout is line-buffered
    // and scans every chunk for newlines, which binary output pays for.
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(LocalError::Stdio)
    };
    let mut stdout = dup(std::io::stdout().as_fd())?;
    let mut stderr = dup(std::io::stderr().as_fd())?;
    let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
    let (end_tx, end_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            let end = loop {
                let written = match rx.blocking_recv() {
                    None => break WriterEnd::Drained,
                    Some(Chunk::Stdout(b)) => stdout.write_all(&b),
                    Some(Chunk::Stderr(b)) => stderr.write_all(&b),
                };
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break WriterEnd::Closed,
                    Err(e) => break WriterEnd::Failed(e),
                }
            };
            let _ = end_tx.send(end);
        })
        .map_err(LocalError::OutputThread)?;
    Ok((tx, end_rx))
}

/// Queues a message for the agent without waiting: the session loop must
/// stay free to handle the next signal while the request stream is full.
pub(super) fn post(tx: &mpsc::Sender<ExecRequest>, msg: In) {
    if let Err(TrySendError::Full(req)) = tx.try_send(ExecRequest { msg: Some(msg) }) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(req).await;
        });
    }
}
