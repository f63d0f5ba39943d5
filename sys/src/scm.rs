//! Passing one file descriptor over a unix socket with `SCM_RIGHTS`.
//!
//! [`send_fd`] and [`recv_fd`] are allocation-free (a fixed control buffer on the stack) and
//! serve the fragile child and the parent alike; [`recv_fd_owned`] is the parent's form,
//! with the received fd as an [`OwnedFd`] and an [`io::Error`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::errno::{SysResult, errno};
use crate::fd::close;

/// The control buffer: room for a `cmsghdr` and up to 12 fds, aligned as `cmsghdr` needs.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends `fd` over the unix socket `sock` with `SCM_RIGHTS`, `payload` as the data (it must
/// not be empty on a stream socket, where the fd travels with the first byte). Returns how
/// many bytes of `payload` went (all of them on a `SOCK_SEQPACKET` socket). `MSG_NOSIGNAL`:
/// a closed peer is `EPIPE`, not `SIGPIPE`. Allocation-free.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixDatagram;
///
/// let (a, b) = UnixDatagram::pair().unwrap();
/// let file = std::fs::File::open("/dev/null").unwrap();
/// assert_eq!(berth_sys::send_fd(a.as_raw_fd(), file.as_raw_fd(), b"x"), Ok(1));
/// let mut buf = [0u8; 4];
/// let (n, fd) = berth_sys::recv_fd(b.as_raw_fd(), &mut buf).unwrap();
/// assert_eq!((n, &buf[..1]), (1, &b"x"[..]));
/// assert!(fd.is_some_and(|fd| fd != file.as_raw_fd()));
/// berth_sys::close(fd.unwrap());
/// ```
pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> SysResult<usize> {
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call, and
    // CMSG_* compute offsets inside cbuf, which is large and aligned enough for one fd.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(libc::EINVAL);
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        loop {
            let r = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
            if let Ok(n) = usize::try_from(r) {
                return Ok(n);
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(e);
            }
        }
    }
}

/// Receives one message from the unix socket `sock` into `buf`, with the one fd it may carry
/// (`SCM_RIGHTS`, received close-on-exec): the length (0 at EOF) and the fd, if any. Any
/// further fds in the message are closed. Control data the buffer could not hold
/// (`MSG_CTRUNC`: more than 12 fds, or other control messages) fails with `EPROTO`, after
/// closing what did arrive. `EINTR` is retried. Allocation-free.
pub fn recv_fd(sock: RawFd, buf: &mut [u8]) -> SysResult<(usize, Option<RawFd>)> {
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the recvmsg call;
    // CMSG_* only walk the control buffer within the msg_controllen the kernel set, and the
    // fds are read within the cmsg_len of their header.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.0.len() as _;
        let n = loop {
            let r = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if let Ok(n) = usize::try_from(r) {
                break n;
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(e);
            }
        };
        let mut fd = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = (data as usize).saturating_sub(cmsg as usize);
                let len = ((*cmsg).cmsg_len as usize).saturating_sub(header);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let got = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // One fd expected: any other is closed.
                    if fd.is_none() {
                        fd = Some(got);
                    } else {
                        close(got);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            if let Some(fd) = fd {
                close(fd);
            }
            return Err(libc::EPROTO);
        }
        Ok((n, fd))
    }
}

/// [`recv_fd`] for the parent: the fd as an [`OwnedFd`], the errno as an [`io::Error`].
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// use std::os::unix::net::UnixDatagram;
///
/// let (a, b) = UnixDatagram::pair()?;
/// a.send(b"no fd")?;
/// let mut buf = [0u8; 8];
/// let (n, fd) = berth_sys::recv_fd_owned(b.as_fd(), &mut buf)?;
/// assert_eq!((n, fd.is_none()), (5, true));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn recv_fd_owned(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let (n, fd) = recv_fd(sock.as_raw_fd(), buf).map_err(io::Error::from_raw_os_error)?;
    // SAFETY: the kernel just installed this fd in our table for us; nothing else owns it.
    Ok((n, fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    fn same_file(a: RawFd, b: RawFd) -> bool {
        let (sa, sb) = (crate::fstat(a).unwrap(), crate::fstat(b).unwrap());
        (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    }

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds is a writable array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair");
        // SAFETY: socketpair just created both fds; we own them.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn passes_an_fd_as_a_new_fd_to_the_same_file() {
        let (a, b) = seqpacket_pair();
        let file = memfd();
        let sent = send_fd(a.as_raw_fd(), file.as_raw_fd(), b"hello").unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let (n, fd) = recv_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let fd = fd.expect("an fd");
        assert_ne!(fd, file.as_raw_fd(), "a new fd number");
        assert!(same_file(fd, file.as_raw_fd()), "the same file");
        // SAFETY: F_GETFD on our fd.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0, "received close-on-exec");
        // Same open file description: an offset moved through one is seen through the other.
        crate::write_all(fd, b"abc").unwrap();
        // SAFETY: lseek on our fd.
        let offset = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR) };
        assert_eq!(offset, 3);
        close(fd);
    }

    #[test]
    fn parent_side_owns_the_fd() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = memfd();
        assert_eq!(send_fd(a.as_raw_fd(), file.as_raw_fd(), b"b"), Ok(1));
        let mut buf = [0u8; 1];
        let (n, fd) = recv_fd_owned(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, buf[0]), (1, b'b'));
        let fd = fd.expect("an fd");
        assert!(same_file(fd.as_raw_fd(), file.as_raw_fd()));
        drop(a);
        let (n, fd) = recv_fd_owned(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true), "EOF");
    }

    #[test]
    fn message_without_fd() {
        let (a, b) = seqpacket_pair();
        crate::write_all(a.as_raw_fd(), b"G").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv_fd(b.as_raw_fd(), &mut buf), Ok((1, None)));
        assert_eq!(buf[0], b'G');
        drop(a);
        assert_eq!(recv_fd(b.as_raw_fd(), &mut buf), Ok((0, None)), "EOF");
    }

    #[test]
    fn errors_are_errnos() {
        let _forks = crate::FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = [0u8; 4];
        assert_eq!(recv_fd(-1, &mut buf), Err(libc::EBADF));
        let (a, b) = seqpacket_pair();
        drop(b);
        assert_eq!(
            send_fd(a.as_raw_fd(), 0, b"x"),
            Err(libc::EPIPE),
            "no SIGPIPE"
        );
        let e = recv_fd_owned(a.as_fd(), &mut buf).map(|(n, _)| n);
        assert_eq!(e.unwrap(), 0);
    }

    /// Sends `fds` in one SCM_RIGHTS message (more than `send_fd` ever sends).
    fn send_many(sock: RawFd, fds: &[RawFd]) {
        let bytes = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: b"m".as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        // SAFETY: as in send_fd, with a heap control buffer of `space` bytes, 8-aligned.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
            assert_eq!(libc::sendmsg(sock, &msg, 0), 1, "sendmsg");
        }
    }

    /// Counts the fds open in this process. Allocation-free: used in a forked child.
    fn count_fds() -> usize {
        let n = std::cell::Cell::new(0usize);
        crate::for_each_open_fd(0, |_| n.set(n.get() + 1)).unwrap_or(());
        n.get()
    }

    #[test]
    fn extra_fds_are_closed_and_truncated_control_data_is_eproto() {
        let _forks = crate::FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = seqpacket_pair();
        let file = memfd();
        // Three fds: the first is kept, the others closed.
        send_many(a.as_raw_fd(), &[file.as_raw_fd(); 3]);
        // Twenty: more than the control buffer holds (MSG_CTRUNC).
        send_many(a.as_raw_fd(), &[file.as_raw_fd(); 20]);
        // In a forked child, so that no other test's fds change the count.
        // SAFETY: the child only makes system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let mut buf = [0u8; 4];
            let before = count_fds();
            let code = match recv_fd(b.as_raw_fd(), &mut buf) {
                Ok((1, Some(fd))) if count_fds() == before + 1 => {
                    close(fd);
                    match recv_fd(b.as_raw_fd(), &mut buf) {
                        Err(libc::EPROTO) if count_fds() == before => 0,
                        Err(libc::EPROTO) => 4,
                        _ => 3,
                    }
                }
                Ok((1, Some(_))) => 2,
                _ => 1,
            };
            crate::exit_now(code);
        }
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        assert_eq!(
            libc::WEXITSTATUS(st),
            0,
            "1: no fd, 2: extra fds leaked, 3: truncation not refused, 4: truncated fds leaked"
        );
    }

    #[test]
    fn datagram_payload_larger_than_buffer_is_cut() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let file = memfd();
        assert_eq!(send_fd(a.as_raw_fd(), file.as_raw_fd(), b"abcdef"), Ok(6));
        let mut buf = [0u8; 2];
        let (n, fd) = recv_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, &buf), (2, b"ab"));
        close(fd.expect("an fd"));
    }

    /// An anonymous regular file (a memfd).
    fn memfd() -> std::fs::File {
        // SAFETY: memfd_create with a NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"berth-sys-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create");
        // SAFETY: we own the new fd.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }
}
