//! The kernel floor: the system calls `create` and `exec` need that have no fallback (see
//! `docs/KERNELS.md`). They are asked about before anything is made, so that a kernel older
//! than berth supports gets one error naming what it lacks, instead of an `ENOSYS` from the
//! container's child halfway through its set-up (or a "stopped" container for `exec`).

use crate::error::Error;

/// The kernel berth supports, for the error text.
const SUPPORTED: &str = "berth needs Linux 5.10 or later";

/// Whether the system call `nr`, made with arguments it can only refuse, exists: anything
/// but `ENOSYS` (`EBADF`, `EINVAL`, `EFAULT`, even `EPERM` from a seccomp profile) means
/// the kernel has it.
fn has(nr: libc::c_long, args: [libc::c_long; 4]) -> bool {
    // SAFETY: each caller passes arguments the kernel rejects or that have no effect (no
    // fd, an empty range, a null pointer with a zero size), so no memory is written and no
    // resource is made.
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3]) };
    !(r < 0 && nix::errno::Errno::last() == nix::errno::Errno::ENOSYS)
}

fn missing(syscall: &str, version: &str) -> Error {
    Error::sys(
        format!("{syscall}(2) (Linux {version}) is missing in this kernel; {SUPPORTED}"),
        nix::Error::ENOSYS,
    )
}

/// What every `create` needs: `openat2` (5.6: every path in the rootfs is resolved with
/// `RESOLVE_IN_ROOT`) and `close_range` (5.9: every init drops the fds it inherited).
pub(crate) fn check_create() -> Result<(), Error> {
    // openat2(-1, NULL, NULL, 0): EFAULT or EINVAL where it exists.
    if !has(libc::SYS_openat2, [-1, 0, 0, 0]) {
        return Err(missing("openat2", "5.6"));
    }
    // close_range(~0, ~0, 0): an empty range past every fd, nothing is closed.
    let top = libc::c_uint::MAX as libc::c_long;
    if !has(libc::SYS_close_range, [top, top, 0, 0]) {
        return Err(missing("close_range", "5.9"));
    }
    Ok(())
}

/// What every `exec` needs besides [`check_create`]'s: `pidfd_open` (5.3) to pin the
/// container's init (`setns` on that pidfd, 5.8, names its own version when it fails).
pub(crate) fn check_exec() -> Result<(), Error> {
    check_create()?;
    // pidfd_open(-1, 0): EINVAL where it exists.
    if !has(libc::SYS_pidfd_open, [-1, 0, 0, 0]) {
        return Err(missing("pidfd_open", "5.3"));
    }
    Ok(())
}
