//! The install step, for a fragile child (between `clone` and `execve`, or after `fork` in a
//! multi-threaded program): raw `prctl(2)` and `seccomp(2)` on data prepared in the parent, no
//! allocation, no lock, no panic.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::os::fd::RawFd;

use crate::Program;

pub(crate) use berth_sys::errno;

impl Program {
    /// Installs the filter on the calling thread (and, with `SECCOMP_FILTER_FLAG_TSYNC`, on
    /// every thread of the process).
    ///
    /// # Fragile child
    ///
    /// One raw `seccomp(SECCOMP_SET_MODE_FILTER)` on the prepared program, with the profile's
    /// flags (plus `SECCOMP_FILTER_FLAG_NEW_LISTENER` when [`uses_notify`](Self::uses_notify)).
    /// No allocation. The kernel wants `no_new_privs` ([`set_no_new_privs`]) or
    /// `CAP_SYS_ADMIN` at that moment.
    ///
    /// Returns the listener fd (the kernel opens it `O_CLOEXEC`) when notify is used; it
    /// belongs to the caller, who hands it to the runtime ([`send_to_listener`]).
    ///
    /// # Errors
    ///
    /// The errno of `seccomp(2)`; `ESRCH` when `TSYNC` found a thread it could not
    /// synchronise (nothing was installed then).
    ///
    /// [`send_to_listener`]: crate::send_to_listener
    ///
    /// ```
    /// let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(
    ///     r#"{"defaultAction": "SCMP_ACT_ALLOW",
    ///         "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
    /// )?;
    /// let program = berth_seccomp::compile(&profile)?;
    /// // In a child process only: a filter is for good.
    /// // SAFETY: fork, then only system calls in the child.
    /// match unsafe { libc::fork() } {
    ///     0 => {
    ///         let code = match berth_seccomp::set_no_new_privs().and_then(|()| program.install()) {
    ///             // SAFETY: a plain system call, which the filter makes fail with ENOSYS.
    ///             Ok(_) => match unsafe { libc::syscall(libc::SYS_getppid) } {
    ///                 -1 => std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    ///                 _ => 0,
    ///             },
    ///             Err(errno) => 100 + errno,
    ///         };
    ///         // SAFETY: ends the child, its exit status saying what getppid got.
    ///         unsafe { libc::_exit(code) }
    ///     }
    ///     pid => {
    ///         let mut status = 0;
    ///         // SAFETY: waits for our own child.
    ///         assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    ///         assert_eq!(libc::WEXITSTATUS(status), libc::ENOSYS);
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn install(&self) -> Result<Option<RawFd>, i32> {
        let Ok(len) = u16::try_from(self.insns.len()) else {
            return Err(libc::EINVAL);
        };
        let prog = libc::sock_fprog {
            len,
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `len` initialised instructions that outlive the call; the
        // kernel copies them and keeps no pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(errno());
        }
        if self.uses_notify() {
            // With TSYNC_ESRCH or without TSYNC, the return value is the listener fd.
            RawFd::try_from(r).map(Some).map_err(|_| libc::EBADF)
        } else if r > 0 {
            // TSYNC: the id of a thread that could not be synchronised; nothing was installed.
            Err(libc::ESRCH)
        } else {
            Ok(None)
        }
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: what lets an unprivileged process install a filter.
///
/// # Fragile child
///
/// One raw `prctl(2)`; no allocation.
///
/// # Errors
///
/// The errno of `prctl(2)`.
pub fn set_no_new_privs() -> Result<(), i32> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}
