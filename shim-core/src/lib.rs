//! Process supervision for berth: what sits between a container's processes and whoever
//! started them.
//!
//! Today it is the foreground of `berth run` and `berth exec` (signal forwarding, reaping,
//! the exit status, the console relay); the containerd shim of issue 12 builds on the same
//! pieces. It knows nothing of containers: it works on pids, pidfds and
//! file descriptors, so the runtime that created the processes stays out of it.
//!
//! * [`signals`]: signals blocked and read from a signalfd, the set the CLI forwards.
//! * [`reap`]: the child-subreaper flag, reaping every exited child, [`reap::ExitStatus`]
//!   (128 + N for signal N), pidfds.
//! * [`console`]: receiving a pty master over a console socket (`SCM_RIGHTS`), raw mode,
//!   window sizes.
//! * [`relay`]: a pty master relayed to and from plain descriptors (stdio, fifos, files).
//! * [`supervise`]: the foreground loop composing them for one process.
//! * [`monitor`]: one exit monitor for all the children of a shim: a watcher per pid,
//!   reaping held off while children are being created, so no exit is ever lost.
//!
//! A minimal supervisor of a plain child:
//!
//! ```no_run
//! use berth_shim_core::{reap, signals::{FORWARDED, Signals}, supervise::supervise};
//!
//! reap::set_child_subreaper()?;
//! let child = std::process::Command::new("/bin/sh").args(["-c", "sleep 1; exit 7"]).spawn()?;
//! // Blocked after the spawn: the child must not inherit the mask.
//! let signals = Signals::block(&FORWARDED)?;
//! let status = supervise(child.id() as i32, &signals, None, |_| {})?;
//! std::process::exit(status.code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod console;
mod error;
pub mod monitor;
pub mod mounts;
pub mod reap;
pub mod relay;
pub mod signals;
pub mod stdio;
pub mod supervise;
pub mod task;

pub use error::{Error, Result};
