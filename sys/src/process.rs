//! Fork-like clones, raw credential changes and the end of a child.

use std::os::fd::RawFd;

use crate::errno::{Errno, SysResult, check_long, errno};

/// A raw `clone(2)` with fork semantics (no new stack): returns 0 in the child, the child's
/// pid in the parent. `flags` include the exit signal (`SIGCHLD` for a waitable child).
///
/// # Safety
/// The child must only run fragile-child-safe code (no allocation, no locks, no panics)
/// until it execs or `_exit`s, because it is a copy of one thread of a possibly
/// multi-threaded process.
pub unsafe fn raw_clone(flags: libc::c_ulong) -> SysResult<libc::pid_t> {
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
    check_long(r).map(|pid| pid as libc::pid_t)
}

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
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

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(2)` with fork semantics (no new stack) and `CLONE_INTO_CGROUP`: the child starts
/// inside the cgroup2 directory `cgroup_fd`, before it runs an instruction. `flags` are the
/// `CLONE_*` flags without the exit signal, which is `SIGCHLD`. Returns 0 in the child.
///
/// # Safety
/// As for [`raw_clone`].
pub unsafe fn raw_clone_into_cgroup(
    flags: libc::c_ulong,
    cgroup_fd: RawFd,
) -> SysResult<libc::pid_t> {
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
    check_long(r).map(|pid| pid as libc::pid_t)
}

/// A fork-like clone with exit signal `SIGCHLD` that starts the child inside the cgroup2
/// directory `into` when one is given (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+). Where
/// the kernel has no `clone3` (`ENOSYS`) or one too old for `CLONE_INTO_CGROUP` (`E2BIG`),
/// it falls back to a plain [`raw_clone`] and the caller moves the child itself. `flags` are
/// the `CLONE_*` flags without the exit signal. Returns the pid (0 in the child) and whether
/// the child started in `into`.
///
/// # Safety
/// As for [`raw_clone`]: the child must only run fragile-child-safe code until it execs or
/// `_exit`s.
pub unsafe fn clone_maybe_into_cgroup(
    flags: libc::c_ulong,
    into: Option<RawFd>,
) -> SysResult<(libc::pid_t, bool)> {
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

/// `setresgid(gid)` then `setresuid(uid)` with the raw system calls. glibc's wrappers
/// broadcast the change to every thread glibc believes the process has; in a raw clone of a
/// multi-threaded parent those threads don't exist and the broadcast waits forever.
/// `Err((is_uid, errno))` says which of the two failed.
pub fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (bool, Errno)> {
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

/// Sets the signal this process gets when its parent dies (0: none), `PR_SET_PDEATHSIG`.
pub fn set_pdeathsig(sig: libc::c_int) {
    // SAFETY: PR_SET_PDEATHSIG with an integer argument; it can only fail for an invalid
    // signal number, which changes nothing.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
}

/// Ends the calling (child) process at once, without atexit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_runs_a_child_that_exits() {
        // SAFETY: the child only _exits.
        let (pid, into) = unsafe { clone_maybe_into_cgroup(0, None) }.unwrap();
        if pid == 0 {
            exit_now(7);
        }
        assert!(!into);
        let mut st = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7, "{st:#x}");
    }
}
