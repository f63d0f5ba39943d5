//! The raw system calls of the crate's child side: berth-sys's allocation-free wrappers
//! (errors are the raw `errno`), re-exported, plus the one resolve policy of this crate.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub(crate) use berth_sys::{
    Errno, Fd, FsInfo, MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME, RESOLVE_BENEATH,
    RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV, StackPath,
    SysResult, chdir, chroot, close, copy_file_range, fchdir, fchmod, fchmodat, fchown, fchownat,
    fsmount_new, fstat, fstatfs, getdents64, has_mount_setattr, lstatat, mkdirat, mknodat, mount,
    mount_setattr, move_mount_fd, open_tree_clone, openat, openat2, pivot_root, proc_fd_path, read,
    readlinkat, symlinkat, umask, umount2, unlinkat, write_all,
};

/// The resolve flags used for every path inside the container root: `..` and absolute
/// symlinks stay inside it, and procfs magic links are refused.
pub(crate) const IN_ROOT: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("berth-rootfs supports 64-bit Linux only");
