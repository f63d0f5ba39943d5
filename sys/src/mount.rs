//! `mount(2)`, `umount2(2)`, `pivot_root(2)` and the new mount API (Linux 5.2+:
//! `open_tree`, `move_mount`, `fsopen`/`fsconfig`/`fsmount`; 5.12: `mount_setattr`).

use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_uint, c_ulong, c_void};

use crate::errno::{SysResult, check, check_long, errno};
use crate::fd::Fd;

/// `MOUNT_ATTR_RDONLY` (`<linux/mount.h>`).
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `MOUNT_ATTR__ATIME`: the mask of the access-time mode.
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
/// `MOUNT_ATTR_RELATIME` (the zero value of the access-time mode).
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
/// `MOUNT_ATTR_NOATIME`.
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
/// `MOUNT_ATTR_STRICTATIME`.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
/// `MOUNT_ATTR_NODIRATIME`.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
/// `MOUNT_ATTR_NOSYMFOLLOW`.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

const OPEN_TREE_CLONE: c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_CMD_CREATE: c_uint = 6;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// `mount(2)`; `None` passes NULL.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: every pointer is a NUL-terminated string or NULL.
    check(unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast::<c_void>(),
        )
    })
}

/// `umount2(2)`.
pub fn umount2(target: &CStr, flags: libc::c_int) -> SysResult<()> {
    // SAFETY: target is NUL-terminated.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

/// `mount_setattr(2)` on the mount `fd` itself (`AT_EMPTY_PATH`), optionally recursive:
/// sets the `MOUNT_ATTR_*` bits `set` and clears `clr`.
pub fn mount_setattr(fd: RawFd, recursive: bool, set: u64, clr: u64) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as c_uint;
    }
    // SAFETY: the path is an empty NUL-terminated string, attr a valid mount_attr of the size
    // passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(ret).map(drop)
}

/// Whether the kernel has `mount_setattr(2)` (Linux 5.12): asked with an fd that can't be
/// valid, which the kernel refuses with `EBADF` where the call exists and `ENOSYS` where it
/// doesn't. Not cached: a seccomp filter may differ per thread.
pub fn has_mount_setattr() -> bool {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: an empty NUL-terminated path and a valid mount_attr of the size passed; with fd
    // -1 nothing is changed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    !(ret < 0 && errno() == libc::ENOSYS)
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount at `path` (relative
/// to `dirfd`; the empty path is `dirfd` itself), with its submounts if `recursive`.
pub fn open_tree_clone(dirfd: RawFd, path: &CStr, recursive: bool) -> SysResult<Fd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as c_uint;
    }
    if recursive {
        flags |= libc::AT_RECURSIVE as c_uint;
    }
    // SAFETY: path is NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    check_long(ret).map(|fd| Fd::new(fd as RawFd))
}

/// `move_mount(2)` of the detached mount `from` onto the location `to_fd`.
pub fn move_mount_fd(from: RawFd, to_fd: RawFd) -> SysResult<()> {
    // SAFETY: both paths are empty NUL-terminated strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to_fd,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check_long(ret).map(drop)
}

/// A detached, new mount of `fstype` (no options) with the `MOUNT_ATTR_*` flags `attrs`
/// (`fsopen` + `fsconfig(FSCONFIG_CMD_CREATE)` + `fsmount`).
pub fn fsmount_new(fstype: &CStr, attrs: u64) -> SysResult<Fd> {
    // SAFETY: fstype is NUL-terminated.
    let fs =
        check_long(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
            .map(|fd| Fd::new(fd as RawFd))?;
    // SAFETY: key and value may be NULL for FSCONFIG_CMD_CREATE.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.raw(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<c_void>(),
            0,
        )
    })?;
    // SAFETY: plain syscall on a descriptor number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.raw(),
            FSMOUNT_CLOEXEC,
            attrs as c_uint,
        )
    };
    check_long(ret).map(|fd| Fd::new(fd as RawFd))
}
