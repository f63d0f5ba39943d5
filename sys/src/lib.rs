//! Raw, allocation-free system calls for berth's fragile children.
//!
//! Code that runs between `clone(2)` and `execve(2)` in a copy of a possibly multi-threaded
//! process must not allocate, take a lock, touch Rust's stdio or panic (see berth's
//! `docs/DESIGN.md`). This crate is the one place where berth's crates (the runtime, rootfs
//! and namespaces) make such calls: thin wrappers over `libc` that take `&CStr` paths and
//! fixed-size buffers and return the raw `errno` as their error ([`Errno`], [`SysResult`]).
//!
//! * [`errno`](mod@errno): the calling thread's errno and return-value checks.
//! * [`fd`]: an owned [`Fd`], `open`/`openat`, `read`/`write_all`, `getdents64`, closing
//!   or sealing (close-on-exec) every inherited fd with `close_range(2)`.
//! * [`resolve`]: `openat2(2)` and its `RESOLVE_*` flags.
//! * [`path`]: [`StackPath`], a NUL-terminated path built in a fixed stack buffer, and
//!   decimal formatting without allocation.
//! * [`fs`]: `*at` file operations, `fstat`, `fstatfs` with the mount flags, `chroot`.
//! * [`mount`](mod@mount): `mount(2)`, `umount2`, `pivot_root` and the new mount API (`open_tree`,
//!   `move_mount`, `fsopen`/`fsmount`, `mount_setattr`).
//! * [`process`]: fork-like `clone(2)` and `clone3(CLONE_INTO_CGROUP)`, raw credential
//!   changes, `PR_SET_PDEATHSIG`, `_exit`.
//! * [`scm`]: passing one fd over a unix socket with `SCM_RIGHTS`, allocation-free for the
//!   child and with an [`OwnedFd`](std::os::fd::OwnedFd) for the parent.
//!
//! Everything is re-exported at the crate root.
//!
//! ```
//! use berth_sys::{PathBuf4k, errno, open};
//!
//! let mut p = PathBuf4k::new();
//! p.push(b"/proc/self/")?;
//! p.push(b"status")?;
//! let fd = open(p.as_cstr(), libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
//! berth_sys::close(fd);
//! assert_eq!(open(c"/nonexistent", libc::O_RDONLY, 0), Err(libc::ENOENT));
//! # let _ = errno();
//! # Ok::<(), i32>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod errno;
pub mod fd;
pub mod fs;
pub mod mount;
pub mod path;
pub mod process;
pub mod resolve;
pub mod scm;

pub use errno::{Errno, SysResult, check, check_fd, check_long, errno};
pub use fd::{
    Fd, cloexec_from, close, close_fds_except, for_each_open_fd, getdents64, open, openat, read,
    write_all,
};
#[cfg(target_pointer_width = "64")]
pub use fs::{FsInfo, fstatfs};
pub use fs::{
    chdir, chroot, copy_file_range, fchdir, fchmod, fchmodat, fchown, fchownat, fstat, lstatat,
    mkdirat, mknodat, readlinkat, symlinkat, umask, unlinkat,
};
pub use mount::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME, fsmount_new, has_mount_setattr, mount,
    mount_setattr, move_mount_fd, open_tree_clone, pivot_root, umount2,
};
pub use path::{PathBuf4k, StackPath, fmt_u64, proc_fd_path};
pub use process::{
    clone_maybe_into_cgroup, exit_now, raw_clone, raw_clone_into_cgroup, set_ids, set_pdeathsig,
};
pub use resolve::{
    RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV,
    openat2,
};
pub use scm::{recv_fd, recv_fd_owned, send_fd};

/// Held by the tests that fork without exec, and by those that need every copy of an fd gone
/// once they close theirs: a forked child holds a copy of every fd of the test process (of
/// every test thread) until it exits.
#[cfg(test)]
pub(crate) static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
