//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can make supervision fail. Each variant names the system call or the path
/// that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// The system call (and its object when useful), e.g. `signalfd` or
        /// `fcntl(pty master, F_SETFL)`.
        call: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A file-system operation on a path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create directory", "bind console socket", ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The console socket did not deliver exactly one pty master.
    #[error("console socket {}: {reason}", path.display())]
    Console {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: &'static str,
    },
    /// The supervised process is not (or no longer) a child of this process: `waitid` found
    /// no child before its exit was seen. Never reported as an exit status.
    #[error(
        "waitid: process {pid} is not a child of this process (ECHILD) and was not reaped here"
    )]
    NotAChild {
        /// The supervised pid.
        pid: i32,
    },
    /// A stdio path the shim can't open as the process' stdio.
    #[error("stdio {path}: {reason}")]
    Stdio {
        /// The path as given.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A rootfs mount failed.
    #[error("{what}: {source}")]
    Mount {
        /// The mount: `mount -t TYPE SOURCE on TARGET` or `umount TARGET`.
        what: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// [`crate::monitor::Spawning::watch`] of a pid that already has a watcher: exactly one
    /// waiter per pid.
    #[error("process {pid} is already watched: one watcher per pid")]
    AlreadyWatched {
        /// The pid.
        pid: i32,
    },
}

impl Error {
    pub(crate) fn sys(call: &'static str, source: Errno) -> Self {
        Error::Sys { call, source }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
