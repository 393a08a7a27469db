//! Taking a client's fd passed over a unix socket (SCM_RIGHTS).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// The kernel's limit of fds in one message (SCM_MAX_FD): with room for
/// all of them the control data is never truncated, so none is installed
/// without being seen (and closed).
const MAX_FDS: usize = 253;

/// Receives one message without waiting (`WouldBlock` when none is
/// there): `Some` when it carried exactly one fd, which is close-on-exec.
/// Any other fds it carried are closed.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel installed these fds in this process for
            // this message just now; nothing else knows or owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(if fds.len() == 1 { fds.pop() } else { None })
}
