//! A kernel without a syscall, for the tests of berth's fallbacks and errors: a seccomp
//! filter on the calling thread only. Shared (by `#[path]`) with oci-runtime-core's tests.

/// Makes `syscall` fail with `ENOSYS` in the calling thread from now on, as on a kernel
/// without it (a seccomp filter: per thread, so only this test's own thread is affected).
pub fn deny_in_this_thread_as_enosys(syscall: libc::c_long) {
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == syscall: return ERRNO(ENOSYS), else ALLOW
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: syscall as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
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
    // SAFETY: prctl with integer arguments and a valid sock_fprog that outlives the call;
    // both apply to the calling thread only.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}
