//! Passing this process's stdout pipe to a local agent, on the handoff
//! socket beside its unix socket, so that the agent splices the tool's
//! output straight into it instead of sending it as replies. The exit
//! status still comes as a reply, after the last byte.

use std::io::{IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::{SFlag, fstat};

/// The agent answers at once; a socket that does not is not its.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A pipe the agent holds for this session, until this is dropped.
pub(super) struct Handoff {
    _conn: UnixStream,
    /// Its number, for the start message.
    pub id: u64,
}

/// Offered when the agent is reached on its unix socket (`addr`), without
/// a terminal, and stdout is a pipe; `None` whenever that is not so or the
/// agent does not take it: the output then comes as replies.
pub(super) fn offer(addr: Option<&str>, tty: bool) -> Option<Handoff> {
    let path = addr?.strip_prefix("unix://")?;
    let out = std::io::stdout();
    let st = fstat(out.as_fd()).ok()?;
    if tty || SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return None;
    }
    let mut conn = UnixStream::connect(format!("{path}.fd")).ok()?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    let fds = [out.as_fd().as_raw_fd()];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ok()?;
    let mut id = [0u8; 8];
    conn.read_exact(&mut id).ok()?;
    let id = u64::from_le_bytes(id);
    (id != 0).then_some(Handoff { _conn: conn, id })
}

/// Whether stdout's reader has gone: the agent then stops splicing, as
/// this process stops writing on a broken pipe, and it is no error.
pub(super) fn reader_gone() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let out = std::io::stdout();
    let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLERR))
}
