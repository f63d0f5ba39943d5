//! Supervising one process in the foreground until it exits: forwarding signals to it,
//! relaying its console, reaping every other child (orphans re-parented to a subreaper), and
//! collecting its exit status.
//!
//! Everything happens in the calling thread around `poll(2)`: the signals come from a
//! [`Signals`] signalfd, the process' exit also from its pidfd (so it is seen even if a
//! `SIGCHLD` went to another thread), the console from a [`Relay`].

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::reap::{Exit, ExitStatus, Pidfd, reap_exited};
use crate::relay::Relay;
use crate::signals::Signals;

/// What the supervisor did, for the caller's log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A signal is being passed on to the supervised process.
    Forwarding {
        /// The signal.
        signal: Signal,
        /// The supervised pid.
        pid: i32,
    },
    /// `SIGWINCH`: resizing the console failed (the relay goes on).
    ResizeFailed {
        /// Why.
        error: &'a Error,
    },
    /// Another child (an orphan re-parented to this subreaper, or any other child of the
    /// process) was reaped.
    Reaped(Exit),
}

/// Waits for `pid` (a child of this process) to exit and reaps it, meanwhile:
///
/// * every signal of `signals` but `SIGCHLD` is sent on to `pid` (`SIGWINCH` resizes the
///   relay's pty instead, when there is a relay), until its exit is collected;
/// * on `SIGCHLD` (and when `pid`'s pidfd turns readable), every exited child is reaped;
///   exits of children other than `pid` are reported as [`Event::Reaped`];
/// * `relay`, when given, moves the console's bytes; it is drained once `pid` has exited.
///
/// `signals` must have been blocked after `pid` was created (or `pid` must have reset its
/// mask), and no other code may wait for the children of this process meanwhile: the
/// supervisor is their one waiter. Fails with [`Error::NotAChild`] when the process runs out
/// of children before `pid`'s exit is seen (never an invented exit status).
///
/// ```no_run
/// use berth_shim_core::{reap, signals::{FORWARDED, Signals}, supervise::{Event, supervise}};
///
/// reap::set_child_subreaper()?;
/// let child = std::process::Command::new("/bin/sh").args(["-c", "exit 3"]).spawn()?;
/// let signals = Signals::block(&FORWARDED)?;
/// let status = supervise(child.id() as i32, &signals, None, |event| {
///     if let Event::Reaped(exit) = event {
///         eprintln!("reaped orphan {}", exit.pid);
///     }
/// })?;
/// assert_eq!(status.code(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn supervise(
    pid: i32,
    signals: &Signals,
    mut relay: Option<&mut Relay>,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<ExitStatus> {
    // Without a pidfd (no pidfd_open, e.g. a seccomp filter), SIGCHLD alone tells the exit.
    let pidfd = Pidfd::open(pid).ok();
    let mut status = None;
    let reap = |status: &mut Option<ExitStatus>, on_event: &mut dyn FnMut(Event<'_>)| {
        reap_exited(|exit| {
            if exit.pid == pid {
                *status = Some(exit.status);
            } else {
                on_event(Event::Reaped(exit));
            }
        })
    };
    let mut children = reap(&mut status, &mut on_event)?;
    let status = loop {
        if let Some(s) = status {
            break s;
        }
        if !children {
            return Err(Error::NotAChild { pid });
        }
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let pidfd_idx = pidfd.as_ref().map(|p| {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let slots = relay.as_deref().map(|r| r.register(&mut fds));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let revents: Vec<Option<PollFlags>> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        let fired = |i: Option<usize>| {
            i.and_then(|i| revents.get(i).copied().flatten())
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        };
        let signal_ready = fired(Some(0));
        let exit_ready = fired(pidfd_idx);

        if let (Some(r), Some(slots)) = (relay.as_deref_mut(), slots) {
            r.handle(&revents, slots);
        }
        if signal_ready {
            while let Some(sig) = signals.read()? {
                match (sig, relay.as_deref()) {
                    (Signal::SIGCHLD, _) => children = reap(&mut status, &mut on_event)?,
                    (Signal::SIGWINCH, Some(r)) => {
                        // The kernel signals the pty's foreground process group itself.
                        if let Err(error) = r.resize() {
                            on_event(Event::ResizeFailed { error: &error });
                        }
                    }
                    // Once reaped, its pid may belong to another process: forward no more.
                    _ if status.is_some() => {}
                    (sig, _) => {
                        on_event(Event::Forwarding { signal: sig, pid });
                        // ESRCH: it is exiting; its exit will be seen.
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                }
            }
        }
        if exit_ready && status.is_none() {
            children = reap(&mut status, &mut on_event)?;
        }
    };
    if let Some(r) = relay {
        r.drain();
    }
    // Orphans that exited together with it.
    reap(&mut None, &mut on_event)?;
    Ok(status)
}
