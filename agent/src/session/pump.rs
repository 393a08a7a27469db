//! Moving bytes between the tool's fds and the call: output pumped into
//! replies in growing chunks, client stdin fed to the tool.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use kns_proto::agent::ExecResponse;
use kns_proto::agent::exec_response::Msg as Out;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::record::Tap;
use crate::session::registry::Live;
use crate::session::replies::Reply;
use crate::sys;

/// Output is read in chunks that start at MIN_CHUNK and double while reads
/// fill them, up to CHUNK: interactive sessions stay small, bulk output
/// (tcpdump, cat) moves in large messages.
const MIN_CHUNK: usize = 64 * 1024;

const CHUNK: usize = 1024 * 1024;

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
/// the client is gone, and into the session's recording; returns the bytes
/// moved, which also count in `live` as they go. `progress` counts the
/// messages the client has taken.
pub(super) fn pump(
    fd: OwnedFd,
    tx: mpsc::Sender<Reply>,
    wrap: fn(Bytes) -> Out,
    progress: Arc<AtomicU64>,
    tap: Option<Tap>,
    live: Arc<Live>,
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
            live.add_out(n as u64);
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
            if let Some(t) = &tap {
                t.output(&chunk).await;
            }
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
pub(super) fn feed(fd: OwnedFd, tap: Option<Tap>) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    // Two messages of at most 1 MiB (the server's limit): with the backlog,
    // a client feeding a tool that never reads holds a bounded few MiB.
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let task = tokio::spawn(async move {
        let Ok(fd) = sys::async_fd(fd) else { return };
        while let Some(data) = rx.recv().await {
            if let Some(t) = &tap {
                t.input(&data).await;
            }
            // EPIPE: the tool closed its stdin; the rest is discarded.
            if write_all(&fd, &data).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}
