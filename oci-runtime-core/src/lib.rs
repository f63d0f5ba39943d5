//! # berth-runtime-core
//!
//! The OCI runtime lifecycle as a library: load and validate a bundle, then `create`,
//! `start`, `state`, `kill` and `delete` containers as the
//! [OCI runtime spec](https://github.com/opencontainers/runtime-spec) describes, with hooks,
//! namespaces (via `berth-namespaces`), the root filesystem (via `berth-rootfs`) and the
//! container process (args, env, cwd, user, rlimits, capabilities, no_new_privs, oom score,
//! console, preserved fds), and the container's cgroup (via `berth-cgroups`: `linux.resources`
//! applied at create, [`Runtime::pause`], [`Runtime::resume`], [`Runtime::update`],
//! [`Runtime::ps`], [`Runtime::stats`], [`Runtime::oom_watcher`], `kill --all` through it),
//! and [`Runtime::exec`]: one more process in a running container, in all its namespaces and
//! its cgroup.
//!
//! ```no_run
//! use berth_runtime_core::{CreateOptions, Runtime};
//!
//! let rt = Runtime::new("/run/berth");
//! let c = rt.create("web", &CreateOptions::new("/srv/bundles/web"))?;
//! rt.start("web")?;
//! println!("{}", serde_json::to_string(&rt.state("web")?).unwrap());
//! let exit_code = c.wait()?;
//! rt.delete("web", false)?;
//! # let _ = exit_code;
//! # Ok::<(), berth_runtime_core::Error>(())
//! ```
//!
//! ## Embedding in a multi-threaded program
//!
//! `create` is safe to call from any thread of a multi-threaded process (a tokio daemon, say),
//! from many threads at once. It does not fork a copy of the runtime that then allocates:
//! everything the container init needs (paths, flags, argv/envp, open fds) is prepared as
//! plain data before a raw `clone(2)`, and the child only makes system calls on that data
//! until it `execve`s (see `docs/DESIGN.md`). So a lock held by another thread at the moment of
//! the clone (the allocator's, stdout's) can never deadlock the child.
//!
//! What the embedding program must know:
//! - The init is a child of the process that called `create`: reap it with
//!   [`Container::wait`], or with your own `waitpid` loop. A reaper that calls
//!   `waitpid(-1, ...)` (tokio's `Child` does not; a SIGCHLD handler reaping everything does)
//!   would steal its exit status: reap by pid instead.
//! - Only the descriptors 0, 1, 2 and `preserve_fds` more reach the container; every other fd
//!   of the process is closed at exec (`close_range(CLOSE_RANGE_CLOEXEC)`), whether or not it
//!   was opened with `O_CLOEXEC`.
//! - Signal dispositions and the signal mask are reset to the defaults for the container.
//! - `start`, `state`, `kill` and `delete` may run in any process (they work on the state
//!   directory under the runtime's root); commands on one id are serialised by a lock.

#![warn(missing_docs)]

// The spawn path, in its order: the config (load, validate, the default spec, features), the
// lifecycle operations (create, start, kill, delete, exec), the fragile child (the init, exec's
// child, the sync protocol between them and the parent), and the process set-up they share.
mod child;
mod config;
mod error;
mod intel_rdt;
mod lifecycle;
mod process;
mod seccomp;
mod signal;
mod state;
#[cfg(test)]
mod test_support;

pub use berth_cgroups;
pub use config::{features, spec, validate};
pub use error::Error;
pub use lifecycle::exec::{ExecOptions, ExecProcess};
pub use lifecycle::{Container, CreateOptions, Runtime, Stdio};
pub use oci_spec;
pub use signal::parse_signal;
pub use state::{State, Status};
