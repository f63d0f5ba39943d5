//! The calling thread's `errno` and the checks that turn a raw return value into a
//! [`SysResult`].

/// A raw `errno` value (`libc::E*`).
pub type Errno = i32;

/// The result of a raw system call: the value, or the `errno` it failed with.
pub type SysResult<T> = Result<T, Errno>;

/// The calling thread's `errno`. Allocation-free.
///
/// ```
/// // SAFETY: close of an fd number that is not open only fails.
/// assert!(unsafe { libc::close(-1) } < 0);
/// assert_eq!(berth_sys::errno(), libc::EBADF);
/// ```
pub fn errno() -> Errno {
    // SAFETY: __errno_location always returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// `Ok(())` if a system call's return value is not negative, else the errno.
///
/// ```
/// // SAFETY: getpid has no arguments and cannot fail.
/// assert_eq!(berth_sys::check(unsafe { libc::getpid() }), Ok(()));
/// // SAFETY: as above for close of an invalid fd number.
/// assert_eq!(berth_sys::check(unsafe { libc::close(-1) }), Err(libc::EBADF));
/// ```
pub fn check(ret: libc::c_int) -> SysResult<()> {
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// The return value (e.g. a new fd) if it is not negative, else the errno.
pub fn check_fd(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// [`check_fd`] for the `c_long` that `libc::syscall` returns.
pub fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}
