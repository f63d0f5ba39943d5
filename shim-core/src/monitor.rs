//! One exit monitor for every child of the process: the subreaper's reaper thread, exits
//! handed to exactly one watcher per pid, none ever lost.
//!
//! A shim starts containers and their processes from many threads and must learn every exit:
//! of the processes it started, of the orphans re-parented to it (it is a child subreaper),
//! and of the helpers the runtime itself spawns and waits for (hooks, an intermediate
//! process). One thread reaps them all with `waitid(P_ALL)`; nothing else may wait.
//!
//! The order that makes this race-free:
//!
//! 1. [`Monitor::start`] blocks `SIGCHLD` (before the process starts any other thread, which
//!    inherit the mask) and starts the reaper thread, which reads it from a signalfd.
//! 2. Around anything that creates a child, take a [`Spawning`] guard ("subscribe before
//!    spawning"). While one is held the reaper reaps nothing: an exit that happens meanwhile
//!    (the process dies before its pid is even known, or a hook the runtime waits for itself)
//!    stays a zombie, so the runtime's own `waitpid` finds it, and an early exit can't be
//!    reaped before its watcher exists.
//! 3. Still holding the guard, [`Spawning::watch`] each new pid with what to do on its exit.
//!    The guard checks that the pid is a child of ours (`ECHILD` is an error, never an exit).
//! 4. The guard dropped, the reaper collects the exits, then calls each watcher once, outside
//!    every lock. An exit of a pid nobody watches (an orphan) is kept for [`Monitor::claim`],
//!    the last [`UNCLAIMED_KEPT`] of them.
//!
//! ```no_run
//! use berth_shim_core::monitor::Monitor;
//!
//! let monitor = Monitor::start()?; // first thing in main, before any thread
//! let (tx, rx) = std::sync::mpsc::channel();
//! {
//!     let spawning = monitor.spawning();
//!     let child = std::process::Command::new("/bin/sh").args(["-c", "exit 3"]).spawn()?;
//!     spawning.watch(child.id() as i32, move |exit| {
//!         let _ = tx.send(exit);
//!     })?;
//! }
//! assert_eq!(rx.recv()?.exit.status.code(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::reap::{self, Exit};
use crate::signals::Signals;

/// How many exits of unwatched pids (orphans) are kept for [`Monitor::claim`].
pub const UNCLAIMED_KEPT: usize = 1024;

/// An exit and when it was reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reaped {
    /// The pid and how it ended.
    pub exit: Exit,
    /// When the reaper collected it.
    pub at: SystemTime,
}

type Watcher = Box<dyn FnOnce(Reaped) + Send>;

#[derive(Default)]
struct Table {
    watched: HashMap<i32, Watcher>,
    unclaimed: VecDeque<Reaped>,
}

struct Inner {
    table: Mutex<Table>,
    /// Spawners hold it shared; the reaper takes it exclusively to reap.
    gate: RwLock<()>,
}

/// The process' exit monitor (see the module). Cheap to clone; one per process.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// Held while creating children: the reaper waits until every guard is gone. Keep it short
/// (the time of a `create`, an `exec`, a spawn) and never hold it while waiting on a watcher.
#[must_use = "the guard protects the spawns made while it is held"]
pub struct Spawning<'a> {
    monitor: &'a Monitor,
    _gate: RwLockReadGuard<'a, ()>,
}

impl std::fmt::Debug for Spawning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawning").finish_non_exhaustive()
    }
}

impl Monitor {
    /// Makes the process a child subreaper, blocks `SIGCHLD` in the calling thread and starts
    /// the reaper thread. Call it before the process starts any other thread: a thread that
    /// does not block `SIGCHLD` may take the signal and discard it. Children the process
    /// spawns must reset their signal mask (`std::process::Command` does; berth's runtime
    /// does for the container's processes).
    pub fn start() -> Result<Monitor> {
        reap::set_child_subreaper()?;
        let signals = Signals::block(&[Signal::SIGCHLD])?;
        let monitor = Monitor {
            inner: Arc::new(Inner {
                table: Mutex::new(Table::default()),
                gate: RwLock::new(()),
            }),
        };
        let reaper = monitor.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            // Its own frames are small and watchers are meant to be short: a small stack (of
            // which only the touched pages cost memory) keeps the shim light.
            .stack_size(256 * 1024)
            .spawn(move || reaper.reap_loop(&signals))
            .map_err(|e| Error::io("spawn reaper thread", "reaper", e))?;
        Ok(monitor)
    }

    /// A guard to hold while creating children whose exits must not be missed.
    pub fn spawning(&self) -> Spawning<'_> {
        Spawning {
            monitor: self,
            _gate: self.inner.gate.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Takes the kept exit of `pid`, a process nobody watched when it was reaped (an orphan,
    /// a process started outside a [`Spawning`] guard).
    pub fn claim(&self, pid: i32) -> Option<Reaped> {
        let mut t = self.table();
        let i = t.unclaimed.iter().position(|r| r.exit.pid == pid)?;
        t.unclaimed.remove(i)
    }

    /// How many pids are watched and not reaped yet.
    pub fn watched(&self) -> usize {
        self.table().watched.len()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reap_loop(&self, signals: &Signals) {
        let mut exits = Vec::new();
        loop {
            let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                // Nothing to recover: a reaper that stops would lose exits, so say why.
                Err(e) => {
                    eprintln!("berth-shim-core reaper: poll(signalfd): {e}");
                    std::process::abort();
                }
            }
            // Drain the signalfd first: an exit after the reap below raises a new SIGCHLD.
            while let Ok(Some(_)) = signals.read() {}
            {
                let _gate = self.inner.gate.write().unwrap_or_else(|p| p.into_inner());
                let at = SystemTime::now();
                let r = reap::reap_exited(|exit| exits.push(Reaped { exit, at }));
                if let Err(e) = r {
                    eprintln!("berth-shim-core reaper: {e}");
                }
            }
            for reaped in exits.drain(..) {
                let watcher = {
                    let mut t = self.table();
                    let w = t.watched.remove(&reaped.exit.pid);
                    if w.is_none() {
                        if t.unclaimed.len() == UNCLAIMED_KEPT {
                            t.unclaimed.pop_front();
                        }
                        t.unclaimed.push_back(reaped);
                    }
                    w
                };
                if let Some(w) = watcher {
                    w(reaped);
                }
            }
        }
    }
}

impl Spawning<'_> {
    /// Watches `pid`, a child of this process created while this guard is held: `on_exit`
    /// runs once, on the reaper thread, when it has been reaped (keep it short; it must not
    /// take a [`Spawning`] guard). Fails if `pid` is not a child of this process
    /// ([`Error::NotAChild`]) or is already watched.
    pub fn watch(&self, pid: i32, on_exit: impl FnOnce(Reaped) + Send + 'static) -> Result<()> {
        // Nobody reaps while we hold the gate: a child of ours is alive or a zombie here.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(Pid::from_raw(pid)), flags | WaitPidFlag::__WALL) {
            Ok(_) => {}
            Err(Errno::ECHILD) => return Err(Error::NotAChild { pid }),
            Err(e) => return Err(Error::sys("waitid(P_PID, WNOWAIT)", e)),
        }
        let mut t = self.monitor.table();
        if t.watched.contains_key(&pid) {
            return Err(Error::AlreadyWatched { pid });
        }
        // A kept exit of this pid is of an earlier process: this one is alive or unreaped.
        t.unclaimed.retain(|r| r.exit.pid != pid);
        t.watched.insert(pid, Box::new(on_exit));
        Ok(())
    }
}
