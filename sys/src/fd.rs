//! File descriptors: an owned [`Fd`], opening, reading and writing, and closing or sealing
//! (close-on-exec) every fd a child inherited.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::errno::{SysResult, check_fd, check_long, errno};

/// An owned file descriptor, closed on drop. Allocation-free; `-1` means none.
///
/// ```
/// let fd = berth_sys::open(c"/dev/null", libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
/// let owned = berth_sys::Fd::new(fd);
/// assert_eq!(owned.raw(), fd);
/// drop(owned); // closes it
/// # Ok::<(), i32>(())
/// ```
#[derive(Debug)]
pub struct Fd(RawFd);

impl Fd {
    /// Takes ownership of `fd` (`-1` for none).
    pub const fn new(fd: RawFd) -> Self {
        Fd(fd)
    }

    /// The raw descriptor number.
    pub const fn raw(&self) -> RawFd {
        self.0
    }

    /// Gives up ownership without closing.
    pub fn into_raw(self) -> RawFd {
        let fd = self.0;
        std::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// `close(2)`, errors ignored (cleanup paths); negative numbers are skipped.
pub fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing a descriptor number has no memory-safety impact; the caller owns it.
        unsafe { libc::close(fd) };
    }
}

/// `open(2)` with exactly the given flags (add `O_CLOEXEC` yourself).
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    // SAFETY: path is a valid NUL-terminated string.
    check_fd(unsafe { libc::open(path.as_ptr(), flags, libc::c_uint::from(mode)) })
}

/// `openat(2)`; `O_CLOEXEC` is always added.
pub fn openat(dirfd: RawFd, path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> SysResult<Fd> {
    // SAFETY: path is NUL-terminated.
    let ret = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    check_fd(ret).map(Fd)
}

/// One `read(2)` into `buf`, retrying on `EINTR`. Returns the byte count (0 at EOF).
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Writes all of `buf`, retrying on `EINTR` and short writes; a write of nothing is `EIO`.
///
/// ```
/// let mut fds = [0; 2];
/// // SAFETY: fds is a writable array of two ints.
/// assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
/// berth_sys::write_all(fds[1], b"hello")?;
/// let mut buf = [0u8; 8];
/// assert_eq!(berth_sys::read(fds[0], &mut buf)?, 5);
/// fds.into_iter().for_each(berth_sys::close);
/// # Ok::<(), i32>(())
/// ```
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: buf is readable for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(_) => {
                let e = errno();
                if e != libc::EINTR {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// `getdents64(2)` into `buf`; returns the number of bytes filled (0 at the end).
pub fn getdents64(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is writable for its length.
    let ret = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    check_long(ret).map(|n| usize::try_from(n).unwrap_or(0))
}

/// `close_range(2)` over `lo..=hi` with `flags`.
fn close_range(lo: libc::c_uint, hi: libc::c_uint, flags: libc::c_uint) -> SysResult<()> {
    // SAFETY: close_range only closes (or, with CLOSE_RANGE_CLOEXEC, flags) descriptors; the
    // callers use none of them afterwards.
    check_long(unsafe { libc::syscall(libc::SYS_close_range, lo, hi, flags) }).map(drop)
}

/// Closes every fd from `from` up except those in `keep` (at most 8 are honoured; entries
/// below `from` are ignored), with `close_range(2)` over the gaps. Allocation-free.
pub fn close_fds_except(from: RawFd, keep: &[RawFd]) -> SysResult<()> {
    let mut k = [0 as libc::c_uint; 8];
    let mut n = 0;
    for (slot, &fd) in k
        .iter_mut()
        .zip(keep.iter().filter(|fd| **fd >= from.max(0)))
    {
        *slot = fd as libc::c_uint;
        n += 1;
    }
    let kept = k.get_mut(..n).unwrap_or(&mut []);
    kept.sort_unstable();
    let mut lo = from.max(0) as libc::c_uint;
    for &fd in kept.iter() {
        if fd > lo {
            close_range(lo, fd - 1, 0)?;
        }
        lo = lo.max(fd.saturating_add(1));
    }
    close_range(lo, libc::c_uint::MAX, 0)
}

/// How far [`cloexec_from`] looks without `close_range` and procfs.
const FALLBACK_FD_LIMIT: RawFd = 1 << 16;

/// Marks every fd from `from` up close-on-exec. `close_range(CLOSE_RANGE_CLOEXEC)` (5.11+)
/// where it works; where it is missing (`ENOSYS`, `EINVAL` before 5.11) or a seccomp filter
/// denies it, each fd that `/proc/self/fd` lists ([`for_each_open_fd`]), and without a
/// procfs `fcntl` on every number below 65536 (for callers that closed what they inherited
/// first, so what is left is a few low-numbered fds). Allocation-free.
pub fn cloexec_from(from: RawFd) -> SysResult<()> {
    if close_range(
        from.max(0) as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    )
    .is_ok()
    {
        return Ok(());
    }
    let set = |fd: RawFd| {
        // SAFETY: fcntl on an fd number with integer arguments; EBADF (not open) is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    };
    if for_each_open_fd(from, set).is_ok() {
        return Ok(());
    }
    (from.max(0)..FALLBACK_FD_LIMIT).for_each(set);
    Ok(())
}

/// Offsets in `struct linux_dirent64`: `d_reclen` (u16), then `d_type` (u8), `d_name`.
const RECLEN_OFF: usize = 16;
const NAME_OFF: usize = 19;

/// Calls `f` on every open fd from `from` up, as `/proc/self/fd` lists them (read with
/// `getdents64` into a stack buffer; the directory's own fd is left out). Allocation-free.
///
/// ```
/// let fd = berth_sys::open(c"/dev/null", libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
/// let seen = std::cell::Cell::new(false);
/// berth_sys::for_each_open_fd(fd, |n| if n == fd { seen.set(true) })?;
/// assert!(seen.get());
/// berth_sys::close(fd);
/// # Ok::<(), i32>(())
/// ```
pub fn for_each_open_fd(from: RawFd, f: impl Fn(RawFd)) -> SysResult<()> {
    let dir = open(
        c"/proc/self/fd",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = match getdents64(dir, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let mut off = 0usize;
        while let Some(rec) = buf.get(off..n) {
            let Some(len) = rec
                .get(RECLEN_OFF..RECLEN_OFF + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(|b| usize::from(u16::from_ne_bytes(b)))
            else {
                break;
            };
            if len == 0 {
                break;
            }
            let name = rec.get(NAME_OFF..len.min(rec.len())).unwrap_or(&[]);
            if let Some(fd) = parse_fd(name)
                && fd >= from
                && fd != dir
            {
                f(fd);
            }
            off = off.saturating_add(len);
        }
    };
    close(dir);
    result
}

/// The fd number a NUL-padded `/proc/self/fd` entry names (`None` for `.` and `..`).
fn parse_fd(name: &[u8]) -> Option<RawFd> {
    let mut fd: RawFd = 0;
    let mut digits = 0;
    for &c in name.iter().take_while(|c| **c != 0) {
        if !c.is_ascii_digit() {
            return None;
        }
        fd = fd.saturating_mul(10).saturating_add(RawFd::from(c - b'0'));
        digits += 1;
    }
    (digits > 0).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_ok(pid: libc::pid_t) {
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        assert_eq!(libc::WEXITSTATUS(st), 0, "child's exit status");
    }

    #[test]
    fn parses_fd_names() {
        assert_eq!(parse_fd(b"12\0\0"), Some(12));
        assert_eq!(parse_fd(b"0"), Some(0));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
    }

    #[test]
    fn write_all_then_read() {
        let mut fds = [0; 2];
        // SAFETY: fds is a writable array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (r, w) = (Fd::new(fds[0]), Fd::new(fds[1]));
        write_all(w.raw(), b"abc").unwrap();
        drop(w);
        let mut buf = [0u8; 8];
        assert_eq!(read(r.raw(), &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(read(r.raw(), &mut buf), Ok(0));
        assert_eq!(read(-1, &mut buf), Err(libc::EBADF));
    }

    /// In a forked child under a filter that fails close_range with EPERM (as a profile may;
    /// on kernels before 5.11 it is ENOSYS): the /proc/self/fd fallback still marks the fds.
    #[test]
    fn cloexec_from_falls_back_where_close_range_is_denied() {
        let _forks = crate::FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: fork in a test; the child makes only system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let ret_errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
            let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            let filter = [
                // A = seccomp_data.nr
                insn(0x20, 0, 0, 0),
                // if A == close_range: return ERRNO(EPERM), else ALLOW
                insn(0x15, 0, 1, libc::SYS_close_range as u32),
                insn(0x06, 0, 0, ret_errno),
                insn(0x06, 0, 0, libc::SECCOMP_RET_ALLOW),
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut _,
            };
            // SAFETY: plain syscalls on local values; the child only _exits afterwards.
            let code = unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
                {
                    10
                } else {
                    let fd = libc::dup(0);
                    let denied = libc::syscall(libc::SYS_close_range, fd, fd, 0) < 0
                        && errno() == libc::EPERM;
                    let ok = cloexec_from(fd).is_ok()
                        && libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0;
                    match (denied, ok) {
                        (true, true) => 0,
                        (false, _) => 11,
                        (true, false) => 12,
                    }
                }
            };
            crate::exit_now(code);
        }
        wait_ok(pid);
    }

    #[test]
    fn closes_all_but_the_kept_fds() {
        let _forks = crate::FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        use std::os::fd::AsRawFd;
        // In a forked child, so the test process' own fds are untouched.
        let files: Vec<_> = (0..4)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let (lo, keep) = (fds[0], [fds[3], fds[1], -1]);
        // SAFETY: the child only makes syscalls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = close_fds_except(lo, &keep).is_ok();
            // SAFETY: fcntl(F_GETFD) with integer arguments.
            let open = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            let want = ok && !open(fds[0]) && open(fds[1]) && !open(fds[2]) && open(fds[3]);
            crate::exit_now(if want { 0 } else { 1 });
        }
        wait_ok(pid);
    }
}
