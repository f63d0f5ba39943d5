//! Linux namespace primitives for the berth container runtime.
//!
//! This crate turns the namespace part of an OCI runtime configuration
//! (`linux.namespaces`, `linux.uidMappings`, `linux.gidMappings`,
//! `linux.timeOffsets`) into a [`NamespacePlan`] and offers the small steps the
//! runtime composes around `clone(2)`:
//!
//! * **Parent side** (may allocate): [`NamespacePlan::prepare`] validates the
//!   config, renders the id-map and time-offset texts and opens every namespace to
//!   join (checking its type with `ioctl(NS_GET_NSTYPE)`);
//!   [`NamespacePlan::write_id_mappings`] writes `/proc/<pid>/{uid,gid}_map`;
//!   [`namespace_path`] names `/proc/<pid>/ns/<kind>` for hooks and `exec`.
//! * **Fragile child** (between `clone` and `exec`: no allocation, no locks, no
//!   panics, raw `libc` only): [`NamespacePlan::join_all`],
//!   [`NamespacePlan::unshare_user`], [`NamespacePlan::unshare_rest`],
//!   [`NamespacePlan::write_time_offsets`], [`NamespacePlan::close_fds`],
//!   [`set_hostname`], [`set_domainname`]. They fail with a `Copy` [`ChildError`]
//!   that travels to the parent as 8 bytes and becomes a [`NamespaceError`]
//!   naming the path there ([`ChildError::describe`]).
//! * **Pod namespaces without a process** (as CRI-O's `pinns`): [`pin()`] makes network,
//!   IPC and UTS namespaces on a thread of their own and bind-mounts them under a
//!   directory; [`unpin`] takes them back ([`pin`](mod@pin) module).
//!
//! # The two spawn orders
//!
//! *Fast path* (`!plan.needs_intermediate()`: nothing joined by path, no time
//! namespace): the parent `clone`s with `plan.clone_flags() | SIGCHLD`, writes the id
//! maps if `plan.creates(NamespaceKind::User)`, then lets the child go on.
//!
//! *Slow path* (`plan.needs_intermediate()`): the parent clones a plain child which
//! runs `join_all`, `close_fds`, `unshare_user` (the parent then writes the id maps),
//! `unshare_rest` and `write_time_offsets`, and finally forks the container init with
//! `clone(CLONE_PARENT | SIGCHLD)` so that it lands in the new pid and time
//! namespaces.
//!
//! ```no_run
//! use berth_namespaces::{NamespaceKind, NamespacePlan};
//! # fn linux() -> oci_spec::runtime::Linux { unimplemented!() }
//!
//! let plan = NamespacePlan::prepare(&linux())?;
//! if !plan.needs_intermediate() {
//!     let flags = (plan.clone_flags() | libc::SIGCHLD) as libc::c_ulong;
//!     // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child only runs
//!     // fragile-child code and leaves with _exit or execve.
//!     let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
//!     if pid == 0 {
//!         // Child: wait for the parent's signal, then set_hostname(...), mounts, execve...
//!         // SAFETY: leaves the child without running the parent's destructors.
//!         unsafe { libc::_exit(0) };
//!     }
//!     let pid = pid as libc::pid_t;
//!     if plan.creates(NamespaceKind::User) {
//!         plan.write_id_mappings(pid)?;
//!     }
//!     plan.close_fds();
//!     // ... signal the child to go on.
//! }
//! # Ok::<(), berth_namespaces::NamespaceError>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod child;
mod error;
mod kind;
pub mod pin;
mod plan;

use std::path::PathBuf;

use oci_spec::runtime::Linux;

pub use child::{ChildError, ChildOp, set_domainname, set_hostname};
pub use error::NamespaceError;
pub use kind::NamespaceKind;
pub use pin::{PinnedNamespaces, pin, unpin};
pub use plan::NamespacePlan;

/// Checks the namespace part of a config (`linux.namespaces`, `linux.uidMappings`,
/// `linux.gidMappings`, `linux.timeOffsets`) against every rule
/// [`NamespacePlan::prepare`] enforces that needs nothing but the config: no file is
/// opened and the kernel is not asked. `prepare` runs the same checks first, then
/// looks at the kernel (namespace types it lacks) and opens the paths to join.
///
/// An entry without a path, or with an empty one (`"path": ""`), creates a new
/// namespace, as with runc.
///
/// # Errors
/// The first rule broken, in config order: a duplicate type, a relative path,
/// mappings without a new user namespace (or a new one without both), an empty,
/// overflowing or overlapping mapping (or more than the kernel takes), `timeOffsets`
/// without a new time namespace, an unknown clock or an offset out of range.
/// [`NamespaceError::field`] names the offending config field.
///
/// ```
/// use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
///
/// let pid = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid).build()?;
/// let linux = LinuxBuilder::default().namespaces(vec![pid.clone(), pid]).build()?;
/// let err = berth_namespaces::validate(&linux).unwrap_err();
/// assert_eq!(err.field().as_deref(), Some("linux.namespaces[1].type"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate(linux: &Linux) -> Result<(), NamespaceError> {
    plan::check(linux).map(drop)
}

/// The path of a process's namespace of the given kind: `/proc/<pid>/ns/<name>`
/// (e.g. for `setns` in `exec`, or the namespace paths passed to hooks).
/// Parent side (allocates).
///
/// ```
/// use berth_namespaces::{NamespaceKind, namespace_path};
/// assert_eq!(namespace_path(42, NamespaceKind::Network).to_str(), Some("/proc/42/ns/net"));
/// ```
pub fn namespace_path(pid: libc::pid_t, k: NamespaceKind) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{}", k.proc_name()))
}

/// Whether this process is in the initial user namespace: its `/proc/self/uid_map` maps
/// every id onto itself (`0 0 4294967295`). A map that can't be read counts as the initial
/// one. Root elsewhere (in a user namespace of a rootless engine, say) is what runc's
/// rootless detection looks for. Parent side (reads a file).
///
/// ```
/// if !berth_namespaces::in_initial_user_namespace() {
///     println!("in a user namespace: cgroups may be out of reach");
/// }
/// ```
pub fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().eq(["0", "0", "4294967295"]))
        .unwrap_or(true)
}
