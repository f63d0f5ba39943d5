//! Reaping: the child-subreaper flag, collecting every exited child, exit statuses.
//!
//! A supervisor is the only waiter for its children: [`reap_exited`] collects every exited
//! child with `waitid(P_ALL)` and hands each exit to the caller, who keeps what it needs (the
//! foreground keeps its process' status; a shim keeps all of them, also for pids it has not
//! been told about yet). Nothing else in the process should call `wait` on those pids.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

use crate::error::{Error, Result};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It called `exit` with this code (0..=255).
    Exited(i32),
    /// It was killed by this signal number (`core`: it dumped core).
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether a core dump was written.
        core: bool,
    },
}

impl ExitStatus {
    /// The status as a shell reports it: the exit code, or 128 + N when killed by signal N.
    ///
    /// ```
    /// use berth_shim_core::reap::ExitStatus;
    /// assert_eq!(ExitStatus::Exited(3).code(), 3);
    /// assert_eq!(ExitStatus::Signaled { signal: 15, core: false }.code(), 143);
    /// ```
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
        }
    }
}

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exit {
    /// Its pid (free for reuse from now on).
    pub pid: i32,
    /// How it ended.
    pub status: ExitStatus,
}

/// Makes this process the child subreaper of its descendants (`PR_SET_CHILD_SUBREAPER`):
/// orphans are re-parented to it instead of to pid 1, and must be reaped by it.
///
/// ```no_run
/// berth_shim_core::reap::set_child_subreaper()?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn set_child_subreaper() -> Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    Errno::result(r).map_err(|e| Error::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))?;
    Ok(())
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`).
///
/// ```no_run
/// assert!(!berth_shim_core::reap::is_child_subreaper()?);
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn is_child_subreaper() -> Result<bool> {
    let mut flag: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer, which points to a
    // live local of that type.
    let r = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut libc::c_int) };
    Errno::result(r).map_err(|e| Error::sys("prctl(PR_GET_CHILD_SUBREAPER)", e))?;
    Ok(flag != 0)
}

/// Reaps every child that has exited (never blocks) and calls `on_exit` for each. Returns
/// `Ok(false)` when this process has no child left at all (`ECHILD`), `Ok(true)` otherwise.
///
/// Children of any kind are collected (`__WALL`: also those cloned with another exit signal
/// than `SIGCHLD`).
///
/// ```no_run
/// use berth_shim_core::reap::reap_exited;
/// let mut exits = Vec::new();
/// let children_left = reap_exited(|exit| exits.push(exit))?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn reap_exited(mut on_exit: impl FnMut(Exit)) -> Result<bool> {
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        let (pid, status) = match waitid(Id::All, flags) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, core)) => (
                pid,
                ExitStatus::Signaled {
                    signal: sig as i32,
                    core,
                },
            ),
            // StillAlive: children left, none exited. Stops and continues are not asked for.
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(false),
            Err(e) => return Err(Error::sys("waitid(P_ALL, WEXITED|WNOHANG)", e)),
        };
        on_exit(Exit {
            pid: pid.as_raw(),
            status,
        });
    }
}

/// A pidfd (`pidfd_open(2)`, Linux 5.3): readable once the process has exited, whether or not
/// its `SIGCHLD` reached us. It refers to that process only, never to a later one with the same
/// pid.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

impl Pidfd {
    /// Opens a pidfd (close-on-exec) for `pid`.
    ///
    /// ```no_run
    /// let child = std::process::Command::new("/bin/true").spawn()?;
    /// let pidfd = berth_shim_core::reap::Pidfd::open(child.id() as i32)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(pid: i32) -> Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and touches no memory of ours.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let raw = Errno::result(r).map_err(|e| Error::sys("pidfd_open", e))?;
        let raw = i32::try_from(raw).map_err(|_| Error::sys("pidfd_open", Errno::EBADF))?;
        // SAFETY: pidfd_open returned a new descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Pidfd { fd, pid })
    }

    /// The pid it was opened for.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to the process (`pidfd_send_signal`, Linux 5.1): never to another process
    /// that reused the pid.
    ///
    /// ```no_run
    /// # let pidfd = berth_shim_core::reap::Pidfd::open(1)?;
    /// pidfd.send_signal(nix::sys::signal::Signal::SIGTERM)?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn send_signal(&self, sig: Signal) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal with a null siginfo reads no memory of ours; the fd is
        // owned by self and open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Errno::result(r).map_err(|e| Error::sys("pidfd_send_signal", e))?;
        Ok(())
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
