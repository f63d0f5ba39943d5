//! Process supervision for berth: what sits between a container's processes and whoever
//! started them.
//!
//! Two users build on it: the foreground of `berth run` and `berth exec` (signal
//! forwarding, reaping, the exit status, the console relay), and shims such as
//! `containerd-shim-berth-v2`, which stay the parent of many containers' processes, created in
//! their own process by berth's runtime, and outlive the manager that asked for them.
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
//! * [`stdio`]: a process' stdio from a manager's fifos or files, with the read sides held,
//!   or a CRI log file the shim writes itself.
//! * [`crilog`]: a process' stdout and stderr written in the CRI log format, reopened on
//!   request, drained before its exit is told.
//! * [`mounts`]: a container's rootfs mounts as a manager hands them over.
//! * [`task`]: the containers of a shim and their processes: create, start, exec, kill,
//!   wait, delete, pause, update, stats, with every exit saved and reported in order.
//! * [`footprint`]: an idle supervisor gives back the mappings of the code it ran.
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
//!
//! A minimal container supervisor: the containers of the OCI bundles named on its command
//! line, run by berth's runtime in this process, each exit printed as it happens (the events
//! a manager would be sent), the supervisor's status the last container's:
//!
//! ```no_run
//! use berth_runtime_core::Runtime;
//! use berth_shim_core::monitor::Monitor;
//! use berth_shim_core::task::{CreateTask, Event, Tasks};
//!
//! // First, before any other thread: the monitor blocks SIGCHLD in every thread to come.
//! let monitor = Monitor::start()?;
//! let tasks = Tasks::new(Runtime::new("/run/mini-shim"), monitor, |event| {
//!     if let Event::Exit { id, exit, .. } = event {
//!         eprintln!("{id} exited with {}", exit.status);
//!     }
//! });
//! let ids: Vec<String> = std::env::args().skip(1).collect();
//! for (n, bundle) in ids.iter().enumerate() {
//!     let id = format!("c{n}");
//!     tasks.create(CreateTask::new(&id, bundle))?; // stdio /dev/null: no fifo or file named
//!     tasks.start(&id, None)?;
//! }
//! let mut status = 0;
//! for n in 0..ids.len() {
//!     let id = format!("c{n}");
//!     status = tasks.wait(&id, None)?.status;
//!     tasks.delete(&id, None)?; // the runtime's state, cgroup and mounts go
//! }
//! std::process::exit(status as i32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod console;
pub mod crilog;
mod error;
pub mod footprint;
pub mod monitor;
pub mod mounts;
mod oom;
pub mod reap;
pub mod relay;
pub mod signals;
pub mod stdio;
pub mod supervise;
pub mod task;

pub use error::{Error, Result};
