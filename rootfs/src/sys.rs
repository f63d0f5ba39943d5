//! Thin, allocation-free wrappers around the raw system calls used by the
//! fragile child.
//!
//! Every function here returns `Result<_, i32>` where the error is the raw
//! `errno`. Nothing in this module allocates, locks or panics; all `unsafe` of
//! the crate's child side lives here.

use std::ffi::CStr;

use libc::{c_int, c_uint, c_ulong, c_void};

/// Raw errno value.
pub(crate) type Errno = i32;
/// Result of a raw system call.
pub(crate) type SysResult<T> = Result<T, Errno>;

/// `RESOLVE_NO_MAGICLINKS` from `<linux/openat2.h>`.
pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS` from `<linux/openat2.h>`.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_IN_ROOT` from `<linux/openat2.h>`.
pub(crate) const RESOLVE_IN_ROOT: u64 = 0x10;
/// `RESOLVE_NO_XDEV` from `<linux/openat2.h>`: fail on crossing a mount point.
pub(crate) const RESOLVE_NO_XDEV: u64 = 0x01;
/// `RESOLVE_BENEATH` from `<linux/openat2.h>`.
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;

/// The resolve flags used for every path inside the container root.
pub(crate) const IN_ROOT: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

/// `MOUNT_ATTR_*` values from `<linux/mount.h>`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// An owned file descriptor that is closed on drop (allocation-free).
#[derive(Debug)]
pub(crate) struct Fd(c_int);

impl Fd {
    /// Takes ownership of `fd` (-1 for none).
    pub(crate) fn new(fd: c_int) -> Self {
        Fd(fd)
    }

    /// The raw descriptor number.
    pub(crate) fn raw(&self) -> c_int {
        self.0
    }

    /// Give up ownership without closing.
    pub(crate) fn into_raw(self) -> c_int {
        let fd = self.0;
        std::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// Current thread's errno.
pub(crate) fn errno() -> Errno {
    // SAFETY: __errno_location always returns a valid pointer to the calling
    // thread's errno.
    unsafe { *libc::__errno_location() }
}

fn check(ret: c_int) -> SysResult<c_int> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    match s {
        Some(s) => s.as_ptr(),
        None => std::ptr::null(),
    }
}

/// `close(2)`, errors ignored.
pub(crate) fn close(fd: c_int) {
    if fd >= 0 {
        // SAFETY: closing a descriptor number has no memory-safety impact.
        unsafe {
            libc::close(fd);
        }
    }
}

/// `openat2(2)` with the given `O_*` flags and `RESOLVE_*` flags.
/// `O_CLOEXEC` is always added.
pub(crate) fn openat2(dirfd: c_int, path: &CStr, flags: c_int, resolve: u64) -> SysResult<Fd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: `path` is NUL-terminated, `how` is a valid open_how of the
        // size passed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check_long(ret) {
            Ok(fd) => return Ok(Fd(fd as c_int)),
            // openat2 may ask to retry when a rename raced with the lookup.
            Err(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `openat(2)`; `O_CLOEXEC` is always added.
pub(crate) fn openat(dirfd: c_int, path: &CStr, flags: c_int, mode: libc::mode_t) -> SysResult<Fd> {
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    check(ret).map(Fd)
}

/// `mount(2)`.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: all pointers are NUL-terminated strings or NULL.
    let ret = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data) as *const c_void,
        )
    };
    check(ret).map(drop)
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: c_int) -> SysResult<()> {
    // SAFETY: `target` is NUL-terminated.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `mount_setattr(2)` on `fd` itself (`AT_EMPTY_PATH`), optionally recursive.
pub(crate) fn mount_setattr(fd: c_int, recursive: bool, set: u64, clr: u64) -> SysResult<()> {
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
    // SAFETY: the path is an empty NUL-terminated string, `attr` is a valid
    // mount_attr of the size passed.
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

/// Whether the kernel has `mount_setattr(2)` (Linux 5.12): asked with a descriptor that
/// can't be valid, which the kernel refuses with `EBADF` where the call exists and `ENOSYS`
/// where it doesn't. Not cached: a seccomp filter may differ per thread.
pub(crate) fn has_mount_setattr() -> bool {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: an empty NUL-terminated path and a valid mount_attr of the size passed; with
    // fd -1 nothing is changed.
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

/// `OPEN_TREE_CLONE` from `<linux/mount.h>`.
const OPEN_TREE_CLONE: c_uint = 1;
/// `MOVE_MOUNT_F_EMPTY_PATH` / `MOVE_MOUNT_T_EMPTY_PATH` from `<linux/mount.h>`.
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
/// `FSOPEN_CLOEXEC`, `FSMOUNT_CLOEXEC`, `FSCONFIG_CMD_CREATE` from `<linux/mount.h>`.
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_CMD_CREATE: c_uint = 6;

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount at
/// `path` (relative to `dirfd`; empty path = `dirfd` itself).
pub(crate) fn open_tree_clone(dirfd: c_int, path: &CStr, recursive: bool) -> SysResult<Fd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as c_uint;
    }
    if recursive {
        flags |= libc::AT_RECURSIVE as c_uint;
    }
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    check_long(ret).map(|fd| Fd(fd as c_int))
}

/// `move_mount(2)` of the detached mount `from` onto the location `to_fd`.
pub(crate) fn move_mount_fd(from: c_int, to_fd: c_int) -> SysResult<()> {
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

/// A detached, freshly created mount of `fstype` (no options) with the
/// `MOUNT_ATTR_*` flags `attrs` (`fsopen` + `fsconfig(CREATE)` + `fsmount`).
pub(crate) fn fsmount_new(fstype: &CStr, attrs: u64) -> SysResult<Fd> {
    // SAFETY: `fstype` is NUL-terminated.
    let fs =
        check_long(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
            .map(|fd| Fd(fd as c_int))?;
    // SAFETY: key/value may be NULL for FSCONFIG_CMD_CREATE.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.raw(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<c_void>(),
            0,
        )
    };
    check_long(ret)?;
    // SAFETY: plain syscall on a descriptor number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.raw(),
            FSMOUNT_CLOEXEC,
            attrs as c_uint,
        )
    };
    check_long(ret).map(|fd| Fd(fd as c_int))
}

/// `mkdirat(2)`.
pub(crate) fn mkdirat(dirfd: c_int, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }).map(drop)
}

/// `mknodat(2)`.
pub(crate) fn mknodat(
    dirfd: c_int,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) }).map(drop)
}

/// `fchownat(2)`.
pub(crate) fn fchownat(
    dirfd: c_int,
    name: &CStr,
    uid: u32,
    gid: u32,
    flags: c_int,
) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, flags) }).map(drop)
}

/// `fchmodat(2)` (flags 0: the kernel does not support AT_SYMLINK_NOFOLLOW).
pub(crate) fn fchmodat(dirfd: c_int, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::fchmodat(dirfd, name.as_ptr(), mode, 0) }).map(drop)
}

/// `fchmod(2)`.
pub(crate) fn fchmod(fd: c_int, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchmod(fd, mode) }).map(drop)
}

/// `fchown(2)`.
pub(crate) fn fchown(fd: c_int, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: c_int) -> SysResult<libc::stat> {
    // SAFETY: an all-zero `struct stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable struct stat.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW`.
pub(crate) fn lstatat(dirfd: c_int, name: &CStr) -> SysResult<libc::stat> {
    // SAFETY: an all-zero `struct stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` is writable.
    check(unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `struct statfs` as the kernel fills it on 64-bit Linux (libc hides
/// `f_flags`).
#[cfg(target_pointer_width = "64")]
#[repr(C)]
struct KernelStatfs {
    f_type: i64,
    f_bsize: i64,
    f_blocks: u64,
    f_bfree: u64,
    f_bavail: u64,
    f_files: u64,
    f_ffree: u64,
    f_fsid: [i32; 2],
    f_namelen: i64,
    f_frsize: i64,
    f_flags: i64,
    f_spare: [i64; 4],
}

#[cfg(not(target_pointer_width = "64"))]
compile_error!("berth-rootfs supports 64-bit Linux only");

/// What `fstatfs(2)` tells about a filesystem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsInfo {
    /// Filesystem magic (`f_type`).
    pub fs_type: i64,
    /// Mount flags (`f_flags`, `ST_*` = `MS_*` bit values).
    pub flags: u64,
}

/// `fstatfs(2)`.
pub(crate) fn fstatfs(fd: c_int) -> SysResult<FsInfo> {
    let mut st = KernelStatfs {
        f_type: 0,
        f_bsize: 0,
        f_blocks: 0,
        f_bfree: 0,
        f_bavail: 0,
        f_files: 0,
        f_ffree: 0,
        f_fsid: [0; 2],
        f_namelen: 0,
        f_frsize: 0,
        f_flags: 0,
        f_spare: [0; 4],
    };
    // SAFETY: `st` has the layout of the kernel's struct statfs on this
    // (64-bit) target and is writable.
    let ret = unsafe { libc::syscall(libc::SYS_fstatfs, fd, &mut st as *mut KernelStatfs) };
    check_long(ret)?;
    Ok(FsInfo {
        fs_type: st.f_type,
        flags: st.f_flags as u64,
    })
}

/// `unlinkat(2)`.
pub(crate) fn unlinkat(dirfd: c_int, name: &CStr, flags: c_int) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) }).map(drop)
}

/// `symlinkat(2)`.
pub(crate) fn symlinkat(target: &CStr, dirfd: c_int, name: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) }).map(drop)
}

/// `readlinkat(2)`: returns the number of bytes written (no NUL added).
pub(crate) fn readlinkat(dirfd: c_int, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `name` is NUL-terminated, `buf` is writable for its length.
    let ret = unsafe {
        libc::readlinkat(
            dirfd,
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// `fchdir(2)`.
pub(crate) fn fchdir(fd: c_int) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchdir(fd) }).map(drop)
}

/// `chdir(2)`.
pub(crate) fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `chroot(2)`.
pub(crate) fn chroot(path: &CStr) -> SysResult<()> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

/// `getdents64(2)` into `buf`; returns the number of bytes filled.
pub(crate) fn getdents64(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its length.
    let ret = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    check_long(ret).map(|n| n as usize)
}

/// `read(2)`, retrying on EINTR.
pub(crate) fn read(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let ret = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// `write(2)` of the whole buffer, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: c_int, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for its length.
        let ret = unsafe { libc::write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if ret < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Err(libc::EIO);
        }
        buf = buf.get(ret as usize..).unwrap_or(&[]);
    }
    Ok(())
}

/// `copy_file_range(2)` from the current offsets; returns bytes copied.
pub(crate) fn copy_file_range(fd_in: c_int, fd_out: c_int, len: usize) -> SysResult<usize> {
    // SAFETY: NULL offsets mean "use and update the file offsets".
    let ret = unsafe {
        libc::copy_file_range(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// `umask(2)`; returns the previous mask.
pub(crate) fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// A fixed-size, NUL-terminated path built on the stack.
pub(crate) struct StackPath<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackPath<N> {
    /// An empty path.
    pub(crate) fn new() -> Self {
        StackPath {
            buf: [0; N],
            len: 0,
        }
    }

    /// Append bytes; `ENAMETOOLONG` if they (plus the NUL) do not fit, and
    /// `EINVAL` for an embedded NUL.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> SysResult<()> {
        if bytes.contains(&0) {
            return Err(libc::EINVAL);
        }
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(libc::ENAMETOOLONG)?;
        if end >= N {
            return Err(libc::ENAMETOOLONG);
        }
        let dst = self.buf.get_mut(self.len..end).ok_or(libc::ENAMETOOLONG)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        if let Some(b) = self.buf.get_mut(end) {
            *b = 0;
        }
        Ok(())
    }

    /// Append a decimal number.
    pub(crate) fn push_num(&mut self, mut n: u64) -> SysResult<()> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.push(digits.get(i..).unwrap_or(&[]))
    }

    /// The path as a C string.
    pub(crate) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(self.buf.get(..=self.len).unwrap_or(b"\0")).unwrap_or(c"")
    }
}

/// `/proc/self/fd/<fd>` formatted on the stack.
pub(crate) fn proc_fd_path(fd: c_int) -> SysResult<StackPath<32>> {
    let mut p = StackPath::<32>::new();
    p.push(b"/proc/self/fd/")?;
    p.push_num(u64::try_from(fd).map_err(|_| libc::EBADF)?)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_path_builds_proc_fd_paths() {
        let p = proc_fd_path(0).unwrap();
        assert_eq!(p.as_cstr(), c"/proc/self/fd/0");
        let p = proc_fd_path(1234).unwrap();
        assert_eq!(p.as_cstr(), c"/proc/self/fd/1234");
        assert_eq!(proc_fd_path(-1).err(), Some(libc::EBADF));
    }

    #[test]
    fn stack_path_overflow_is_an_error() {
        let mut p = StackPath::<8>::new();
        p.push(b"abc").unwrap();
        p.push(b"defg").unwrap();
        assert_eq!(p.as_cstr(), c"abcdefg");
        assert_eq!(p.push(b"h"), Err(libc::ENAMETOOLONG));
        assert_eq!(p.push(b"a\0"), Err(libc::EINVAL));
    }
}
