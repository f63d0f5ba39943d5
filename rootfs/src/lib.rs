//! Container root filesystem setup for berth.
//!
//! This crate turns the filesystem part of an OCI runtime configuration
//! (`root`, `mounts`, `linux.devices`, `linux.rootfsPropagation`,
//! `linux.maskedPaths`, `linux.readonlyPaths`, `linux.sysctl`) into a
//! [`RootfsPlan`] and applies it inside a freshly cloned container process.
//!
//! It follows berth's two-phase design (see `docs/DESIGN.md`):
//!
//! * **Prepare (parent).** [`RootfsPlan::prepare`] validates the config,
//!   parses mount options ([`parse_mount_options`]), resolves bind sources
//!   against the bundle, reads `/proc/self/mountinfo` for the host's cgroup
//!   layout and the mount holding the rootfs, and precomputes every path as a
//!   `CString`. Errors are [`RootfsError`]s naming the config field.
//! * **Apply (fragile child).** [`RootfsPlan::mount_all`],
//!   [`RootfsPlan::pivot`], [`RootfsPlan::mount_console_fd`] and
//!   [`RootfsPlan::finish`] use raw system calls only: no allocation, no
//!   locks, no panics. Every path inside the container is resolved with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a directory fd of
//!   the root, missing directories are created one component at a time, and
//!   mounts target the resolved fd through `/proc/self/fd/N`, so a symlink in
//!   the image can never redirect a mount or a `mknod` onto the host.
//!   Sysctls are written through the container's `/proc`, checked to be a
//!   procfs root, without crossing any mount below it ([`ProcRoot`], which
//!   the runtime also uses for the LSM exec labels); masks bind only a
//!   verified null device; the console is bound from the pty slave's fd
//!   ([`RootfsPlan::mount_console_fd`]). A
//!   failure is a 12-byte [`ApplyError`] (`step`, `index`, `errno`) that the
//!   parent turns into a rich error with [`ApplyError::describe`].
//!
//! ```no_run
//! use std::path::Path;
//! use berth_rootfs::{RootfsOptions, RootfsPlan};
//!
//! let mounts = oci_spec::runtime::get_default_mounts();
//! let masked = ["/proc/kcore".to_string()];
//! let readonly = ["/proc/sys".to_string()];
//! let plan = RootfsPlan::prepare(
//!     &RootfsOptions::new(Path::new("/run/bundle/rootfs"), Path::new("/run/bundle"))
//!         .mounts(&mounts)
//!         .masked_paths(&masked)
//!         .readonly_paths(&readonly)
//!         .new_cgroup_ns(true)
//!         .cwd(Some(Path::new("/"))),
//! )?;
//! // ... clone(CLONE_NEWNS | CLONE_NEWPID | ...); in the child:
//! let applied = plan.mount_all().and_then(|()| plan.pivot()).and_then(|()| plan.finish());
//! // ... on error the child sends `e.to_bytes()`; the parent calls
//! // `ApplyError::from_bytes(..)` and `e.describe(&plan)`.
//! # let _ = applied;
//! # Ok::<(), berth_rootfs::RootfsError>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod apply;
mod copyup;
mod error;
mod mountinfo;
mod options;
mod plan;
mod procfs;
mod resolve;
mod sys;
pub mod validate;

pub use error::{ApplyError, IndexKind, RootfsError, Step};
pub use options::{MountOptions, OptionError, SUPPORTED_MOUNT_OPTIONS, parse_mount_options};
pub use plan::{RootfsOptions, RootfsPlan};
pub use procfs::{ProcError, ProcRoot, ProcStage};
