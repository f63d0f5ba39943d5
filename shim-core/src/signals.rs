//! Signals read from a signalfd instead of handlers.
//!
//! [`Signals::block`] blocks a set of signals (always with `SIGCHLD`) in the calling thread and
//! opens a signalfd for them, so a supervisor's event loop can `poll(2)` for signals like for
//! any other descriptor, and no signal handler is ever installed.
//!
//! The mask is per thread: block before starting other threads (they inherit it), or a
//! process-directed signal such as `SIGCHLD` may be delivered to, and discarded by, a thread
//! that does not block it. A child process inherits the mask too: create the processes to
//! supervise before blocking, or reset the mask in them.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Error, Result};

/// The signals `berth run` and `berth exec` pass on to the process they supervise in the
/// foreground (`SIGWINCH` resizes the console instead when there is one).
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// A set of blocked signals, readable from a non-blocking, close-on-exec signalfd.
///
/// The signals stay blocked when this is dropped: unblocking would deliver a pending `SIGINT`
/// with its default action.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
    set: SigSet,
}

impl Signals {
    /// Blocks `signals` and `SIGCHLD` in the calling thread and opens a signalfd for them.
    ///
    /// ```no_run
    /// use berth_shim_core::signals::{FORWARDED, Signals};
    ///
    /// // After the child to supervise was started (it must not inherit the blocked mask).
    /// let signals = Signals::block(&FORWARDED)?;
    /// while let Some(sig) = signals.read()? {
    ///     println!("pending: {sig}");
    /// }
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn block(signals: &[Signal]) -> Result<Signals> {
        let mut set = SigSet::empty();
        for s in signals {
            set.add(*s);
        }
        set.add(Signal::SIGCHLD);
        set.thread_block()
            .map_err(|e| Error::sys("pthread_sigmask(SIG_BLOCK)", e))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| Error::sys("signalfd", e))?;
        Ok(Signals { fd, set })
    }

    /// Whether `sig` is one of the blocked signals.
    pub fn contains(&self, sig: Signal) -> bool {
        self.set.contains(sig)
    }

    /// The next pending signal, or `None` when none is pending (never blocks).
    ///
    /// ```no_run
    /// # let signals = berth_shim_core::signals::Signals::block(&[])?;
    /// if let Some(nix::sys::signal::Signal::SIGCHLD) = signals.read()? {
    ///     // reap
    /// }
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn read(&self) -> Result<Option<Signal>> {
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    // A number outside nix's list (a real-time signal) cannot be in our set.
                    let Ok(sig) = i32::try_from(info.ssi_signo).map(Signal::try_from) else {
                        continue;
                    };
                    match sig {
                        Ok(sig) => return Ok(Some(sig)),
                        Err(_) => continue,
                    }
                }
                Ok(None) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("read(signalfd)", e)),
            }
        }
    }
}

impl AsFd for Signals {
    /// The signalfd, readable when a signal is pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
