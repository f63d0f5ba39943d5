//! The test side of a console socket: receive the pty master a runtime sends, read what the
//! container writes on its terminal.
//!
//! Only std, libc and nix: `examples/tests/common` includes this file too (with `#[path]`).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Receives one fd and the payload with it (the pty's name) from an accepted console socket
/// connection.
pub fn recv_fd(conn: &UnixStream) -> (OwnedFd, Vec<u8>) {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!(std::os::fd::RawFd);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg");
    let n = msg.bytes;
    let mut fd = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed this fd in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                fd.get_or_insert(owned);
            }
        }
    }
    (fd.expect("no fd in the console message"), buf[..n].to_vec())
}

/// Accepts one connection on a console socket and returns the pty master it carries.
pub fn accept_master(listener: &UnixListener) -> OwnedFd {
    let (conn, _) = listener.accept().expect("accept");
    recv_fd(&conn).0
}

/// Reads a pty master until the slave side is gone (EIO); fails if that takes longer than
/// `limit`. Returns the output without the carriage returns the pty adds.
pub fn read_master(master: &OwnedFd, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "console output did not end: {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if r <= 0 {
            continue;
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}
