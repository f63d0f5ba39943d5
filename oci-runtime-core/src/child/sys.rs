//! Raw system-call helpers that are safe to use in the fragile child (see docs/DESIGN.md):
//! no allocation, no locks, no panics. Errors are plain errno values.

use std::ffi::CStr;
use std::os::fd::RawFd;

/// The calling thread's errno.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `Ok(())` if a syscall's return value is not negative, else the errno.
pub(crate) fn check(r: libc::c_int) -> Result<(), i32> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
    Ok(())
}

/// One `read(2)` into `buf`, retrying on EINTR. Returns the byte count (0 at EOF).
pub(crate) fn read_once(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: buf is a valid, writable slice for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Formats `n` in decimal into `buf`, returning the digits.
pub(crate) fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A NUL-terminated path built in a fixed stack buffer.
pub(crate) struct PathBuf4k {
    buf: [u8; 4096],
    len: usize,
}

impl PathBuf4k {
    pub(crate) const fn new() -> Self {
        PathBuf4k {
            buf: [0; 4096],
            len: 0,
        }
    }

    /// Appends bytes; `Err(ENAMETOOLONG)` if they (plus the final NUL) don't fit.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let end = self.len + bytes.len();
        if end >= self.buf.len() {
            return Err(libc::ENAMETOOLONG);
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        self.buf[end] = 0;
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.buf[0] = 0;
    }

    pub(crate) fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A raw `clone(2)` with fork semantics (no new stack): returns 0 in the child, the child's
/// pid in the parent.
///
/// # Safety
/// The child must only run fragile-child-safe code (see docs/DESIGN.md) until it execs or
/// `_exit`s, because it is a copy of one thread of a possibly multi-threaded process.
pub(crate) unsafe fn raw_clone(flags: libc::c_ulong) -> Result<libc::pid_t, i32> {
    // SAFETY: clone without CLONE_VM and with a NULL stack behaves like fork(2); the caller
    // guarantees the child's code respects the fragile-child rules.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// Closes every fd from `from` up except those in `keep` (at most 8 are honoured; negative
/// entries are ignored), with `close_range(2)` over the gaps. Allocation-free.
pub(crate) fn close_fds_except(from: RawFd, keep: &[RawFd]) -> Result<(), i32> {
    let mut k = [-1 as RawFd; 8];
    let mut n = 0;
    for &fd in keep {
        if fd >= from && n < k.len() {
            k[n] = fd;
            n += 1;
        }
    }
    k[..n].sort_unstable();
    let mut lo = from as libc::c_uint;
    let range = |lo: libc::c_uint, hi: libc::c_uint| {
        // SAFETY: close_range only closes descriptors; none of them is used afterwards.
        if unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0 as libc::c_uint) } < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    };
    for &fd in &k[..n] {
        let fd = fd as libc::c_uint;
        if fd > lo {
            range(lo, fd - 1)?;
        }
        lo = lo.max(fd + 1);
    }
    range(lo, libc::c_uint::MAX)
}

/// Marks every fd from `from` up close-on-exec. `close_range(CLOSE_RANGE_CLOEXEC)` (5.11+)
/// where it works; where it is missing (ENOSYS, EINVAL before 5.11) or a seccomp filter
/// denies it, each fd listed in `/proc/self/fd` (read with getdents64 into a stack buffer),
/// and without a procfs `fcntl` on every number below [`FALLBACK_FD_LIMIT`]. Allocation-free.
pub(crate) fn cloexec_from(from: RawFd) -> Result<(), i32> {
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let set = |fd: RawFd| {
        // SAFETY: fcntl on an fd number with integer arguments; EBADF (not open) is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    };
    if cloexec_listed(from, set).is_ok() {
        return Ok(());
    }
    // No procfs here: the callers closed every fd they inherited (close_range without
    // flags, 5.9+), so what is left are their own few, low-numbered ones.
    (from.max(0)..FALLBACK_FD_LIMIT).for_each(set);
    Ok(())
}

/// How far [`cloexec_from`] looks without close_range and procfs.
const FALLBACK_FD_LIMIT: RawFd = 1 << 16;

/// Calls `f` on every open fd from `from` up, as `/proc/self/fd` lists them.
fn cloexec_listed(from: RawFd, f: impl Fn(RawFd)) -> Result<(), i32> {
    let dir = open(
        c"/proc/self/fd",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    let mut buf = [0u8; 4096];
    let result = loop {
        // SAFETY: getdents64 fills at most buf.len() bytes of our stack buffer.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            break Err(errno());
        }
        if n == 0 {
            break Ok(());
        }
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
        let mut off = 0usize;
        while let Some(rec) = buf.get(off..n as usize) {
            let Some(len) = rec
                .get(16..18)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
            else {
                break;
            };
            if len == 0 {
                break;
            }
            let name = rec.get(19..len.min(rec.len())).unwrap_or(&[]);
            let mut fd: RawFd = 0;
            let mut digits = 0;
            for &c in name.iter().take_while(|c| **c != 0) {
                if !c.is_ascii_digit() {
                    digits = 0;
                    break;
                }
                fd = fd.saturating_mul(10).saturating_add((c - b'0') as RawFd);
                digits += 1;
            }
            if digits > 0 && fd >= from && fd != dir {
                f(fd);
            }
            off += len;
        }
    };
    close(dir);
    result
}

/// setresgid(gid) then setresuid(uid) with the raw syscalls. glibc's wrappers broadcast the
/// change to every thread glibc believes the process has; in a raw clone of a multi-threaded
/// parent those threads don't exist and the broadcast waits forever. `Err((is_uid, errno))`.
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (bool, i32)> {
    // SAFETY: plain syscalls with integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } < 0 {
        return Err((false, errno()));
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } < 0 {
        return Err((true, errno()));
    }
    Ok(())
}

/// `clone3(2)` with fork semantics (no new stack) and `CLONE_INTO_CGROUP`: the child starts
/// inside the cgroup2 directory `cgroup_fd`, before it runs an instruction. `flags` are the
/// `CLONE_*` flags without the exit signal, which is SIGCHLD. Returns 0 in the child.
///
/// # Safety
/// As for [`raw_clone`].
pub(crate) unsafe fn raw_clone_into_cgroup(
    flags: libc::c_ulong,
    cgroup_fd: RawFd,
) -> Result<libc::pid_t, i32> {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_fd as u64,
    };
    // SAFETY: args is a valid clone_args of the size passed; with no stack the child is a
    // fork-like copy, and the caller guarantees it only runs fragile-child-safe code.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// A fork-like clone with exit signal SIGCHLD that starts the child inside the cgroup2
/// directory `into` when one is given (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+). Where
/// the kernel has no `clone3` (ENOSYS) or one too old for `CLONE_INTO_CGROUP` (E2BIG), it
/// falls back to a plain [`raw_clone`] and the caller moves the child itself. `flags` are the
/// `CLONE_*` flags without the exit signal. Returns the pid (0 in the child) and whether the
/// child started in `into`.
///
/// # Safety
/// As for [`raw_clone`]: the child must only run fragile-child-safe code until it execs or
/// `_exit`s.
pub(crate) unsafe fn clone_maybe_into_cgroup(
    flags: libc::c_ulong,
    into: Option<RawFd>,
) -> Result<(libc::pid_t, bool), i32> {
    let plain = || {
        // SAFETY: the caller's contract is the one raw_clone needs.
        unsafe { raw_clone(flags | libc::SIGCHLD as libc::c_ulong) }.map(|pid| (pid, false))
    };
    match into {
        // SAFETY: the caller's contract is the one raw_clone_into_cgroup needs.
        Some(fd) => match unsafe { raw_clone_into_cgroup(flags, fd) } {
            Ok(pid) => Ok((pid, true)),
            Err(libc::ENOSYS | libc::E2BIG) => plain(),
            Err(e) => Err(e),
        },
        None => plain(),
    }
}

/// Sets the signal this process gets when its parent dies (0: none), `PR_SET_PDEATHSIG`.
pub(crate) fn set_pdeathsig(sig: libc::c_int) {
    // SAFETY: PR_SET_PDEATHSIG with an integer argument; it can only fail for an invalid
    // signal number, which the callers never pass.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
}

/// Ends the calling (child) process at once, without running atexit handlers or destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// `open(2)` with a C path.
pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<RawFd, i32> {
    // SAFETY: path is a valid NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 { Err(errno()) } else { Ok(fd) }
}

/// Closes an fd, ignoring errors (used on cleanup paths).
pub(crate) fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing an fd we own; errors are irrelevant on these paths.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child under a filter that fails close_range with EPERM (as a profile may,
    /// on kernels before 5.11 it is ENOSYS): the /proc/self/fd fallback still marks the fds.
    #[test]
    fn cloexec_from_falls_back_where_close_range_is_denied() {
        // SAFETY: fork in a test; the child makes only system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let ret_errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
            let filter = [
                // A = seccomp_data.nr
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                // if A == close_range: return ERRNO(EPERM), else ALLOW
                libc::sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: libc::SYS_close_range as u32,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: ret_errno,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
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
            exit_now(code);
        }
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        assert_eq!(
            libc::WEXITSTATUS(st),
            0,
            "10: no filter, 11: not denied, 12: not marked"
        );
    }

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(1234567, &mut b), b"1234567");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn closes_all_but_the_kept_fds() {
        use std::os::fd::AsRawFd;
        // In a forked child, so the test process' own fds are untouched.
        let files: Vec<_> = (0..4)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let (lo, keep) = (fds[0], [fds[1], fds[3]]);
        // SAFETY: the child only makes syscalls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = close_fds_except(lo, &keep).is_ok();
            // SAFETY: fcntl(F_GETFD) with integer arguments.
            let open = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            let want = ok && !open(fds[0]) && open(fds[1]) && !open(fds[2]) && open(fds[3]);
            exit_now(if want { 0 } else { 1 });
        }
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "status {st}"
        );
    }

    #[test]
    fn path_buffer_bounds() {
        let mut p = PathBuf4k::new();
        p.push(b"/proc/self/fd/").unwrap();
        p.push(b"42").unwrap();
        assert_eq!(p.as_bytes(), b"/proc/self/fd/42");
        assert_eq!(p.push(&[b'a'; 5000]), Err(libc::ENAMETOOLONG));
    }
}
