//! The handoff socket beside each unix listener (`PATH.fd`): a local client
//! passes its stdout pipe there (SCM_RIGHTS) before its Exec call and is
//! given a number that names it in the call's start message. The agent then
//! splices the tool's output into that pipe, with no copy and no reply
//! messages. A pipe is only ever taken by a call from the very process that
//! passed it (same uid and PID, as the kernel reports both connections'
//! peers), and only while its handoff connection stays open.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::sys;

/// Pipes held for calls not made yet: each costs an fd and a task.
const MAX_PENDING: usize = 64;

/// How long a connection may take to pass its pipe.
const PASS_TIMEOUT: Duration = Duration::from_secs(5);

/// The handoff socket of the unix listener at `path`.
pub fn path_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".fd");
    PathBuf::from(p)
}

/// A unix socket peer, as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

/// The pipes passed and not yet taken, by number.
#[derive(Debug, Default)]
pub struct Handoffs {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    last: u64,
    by_id: HashMap<u64, (Peer, OwnedFd)>,
}

impl Handoffs {
    /// The pipe passed as `id`, if `peer` is the process that passed it;
    /// a number tried by any other process is forgotten all the same.
    pub fn take(&self, id: u64, peer: Peer) -> Option<OwnedFd> {
        let (owner, fd) = self.lock().by_id.remove(&id)?;
        (owner == peer).then_some(fd)
    }

    /// Holds a pipe; `None` when too many are held already.
    fn put(&self, peer: Peer, fd: OwnedFd) -> Option<u64> {
        let mut p = self.lock();
        if p.by_id.len() >= MAX_PENDING {
            return None;
        }
        p.last += 1;
        let id = p.last;
        p.by_id.insert(id, (peer, fd));
        Some(id)
    }

    fn forget(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts handoff connections until `shutdown` turns true.
pub(super) async fn serve(ul: UnixListener, handoffs: Arc<Handoffs>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            a = ul.accept() => match a {
                Ok((conn, _)) => {
                    tokio::spawn(hold(conn, handoffs.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "cannot accept on the handoff socket"),
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One connection: takes its pipe, answers its number (0: not taken),
/// and holds the pipe until the connection closes.
async fn hold(mut conn: UnixStream, handoffs: Arc<Handoffs>) {
    let Some(peer) = conn.peer_cred().ok().and_then(|c| {
        Some(Peer {
            uid: c.uid(),
            pid: visible(c.pid())?,
        })
    }) else {
        return;
    };
    let passed = tokio::time::timeout(PASS_TIMEOUT, async {
        loop {
            conn.readable().await?;
            match conn.try_io(Interest::READABLE, || sys::handoff::recv_fd(conn.as_fd())) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                r => return r,
            }
        }
    })
    .await;
    let id = match passed {
        Ok(Ok(Some(fd))) if is_writable_pipe(&fd) => handoffs.put(peer, fd).unwrap_or(0),
        _ => 0,
    };
    if conn.write_all(&id.to_le_bytes()).await.is_ok() && id != 0 {
        // Anything more from the client is not part of this; its end (or
        // the connection breaking) is.
        let mut b = [0u8; 64];
        while matches!(conn.read(&mut b).await, Ok(n) if n > 0) {}
    }
    handoffs.forget(id);
}

/// A peer's PID, when it names one process: a peer outside the agent's
/// PID namespace is reported as 0, which any other such peer shares.
pub fn visible(pid: Option<i32>) -> Option<i32> {
    pid.filter(|p| *p > 0)
}

/// Only a pipe's write end is spliced into: a file or socket keeps the
/// replies.
fn is_writable_pipe(fd: &OwnedFd) -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::stat::{SFlag, fstat};
    let fifo = fstat(fd.as_fd())
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO);
    let mode = fcntl(fd, FcntlArg::F_GETFL).map(|f| OFlag::from_bits_truncate(f) & OFlag::O_ACCMODE);
    fifo && matches!(mode, Ok(m) if m == OFlag::O_WRONLY || m == OFlag::O_RDWR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_goes_only_to_the_process_that_passed_it() {
        let h = Handoffs::default();
        let owner = Peer { uid: 0, pid: 10 };
        let (_r, w) = nix::unistd::pipe().unwrap();
        let id = h.put(owner, w).unwrap();
        // Tried by another process, the number is spent.
        assert!(h.take(id, Peer { uid: 0, pid: 11 }).is_none());
        assert!(h.take(id, owner).is_none());
        let (_r, w) = nix::unistd::pipe().unwrap();
        let id = h.put(owner, w).unwrap();
        assert!(h.take(id, Peer { uid: 1000, pid: 10 }).is_none());
        let (_r, w) = nix::unistd::pipe().unwrap();
        let id = h.put(owner, w).unwrap();
        assert!(h.take(id, owner).is_some());
    }

    #[test]
    fn only_a_pipes_write_end_is_spliced_into() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert!(is_writable_pipe(&w));
        assert!(!is_writable_pipe(&r));
        let f: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert!(!is_writable_pipe(&f));
    }
}
