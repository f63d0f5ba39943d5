//! File operations relative to directory fds, and `stat`/`statfs`.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::errno::{SysResult, check, check_long, errno};

/// `mkdirat(2)`.
pub fn mkdirat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) })
}

/// `mknodat(2)`.
pub fn mknodat(dirfd: RawFd, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) })
}

/// `fchownat(2)`.
pub fn fchownat(
    dirfd: RawFd,
    name: &CStr,
    uid: u32,
    gid: u32,
    flags: libc::c_int,
) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, flags) })
}

/// `fchmodat(2)` with flags 0 (the kernel has no `AT_SYMLINK_NOFOLLOW` for it).
pub fn fchmodat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::fchmodat(dirfd, name.as_ptr(), mode, 0) })
}

/// `fchmod(2)`.
pub fn fchmod(fd: RawFd, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchmod(fd, mode) })
}

/// `fchown(2)`.
pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchown(fd, uid, gid) })
}

/// `fstat(2)`.
///
/// ```
/// let fd = berth_sys::open(c"/dev/null", libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
/// let st = berth_sys::fstat(fd)?;
/// assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFCHR);
/// berth_sys::close(fd);
/// # Ok::<(), i32>(())
/// ```
pub fn fstat(fd: RawFd) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable struct stat.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW`.
pub fn lstatat(dirfd: RawFd, name: &CStr) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is NUL-terminated and st is writable.
    check(unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `struct statfs` as the kernel fills it on 64-bit Linux (libc hides `f_flags`).
#[cfg(target_pointer_width = "64")]
#[repr(C)]
#[derive(Default)]
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

/// What `fstatfs(2)` tells about a filesystem.
#[cfg(target_pointer_width = "64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    /// Filesystem magic (`f_type`, e.g. `PROC_SUPER_MAGIC`).
    pub fs_type: i64,
    /// Mount flags (`f_flags`: `ST_*`, the first four equal to their `MS_*`).
    pub flags: u64,
}

/// `fstatfs(2)`: the filesystem type and the mount's flags (64-bit targets).
///
/// ```
/// let fd = berth_sys::open(c"/proc", libc::O_PATH | libc::O_CLOEXEC, 0)?;
/// assert_eq!(berth_sys::fstatfs(fd)?.fs_type, 0x9fa0); // PROC_SUPER_MAGIC
/// berth_sys::close(fd);
/// # Ok::<(), i32>(())
/// ```
#[cfg(target_pointer_width = "64")]
pub fn fstatfs(fd: RawFd) -> SysResult<FsInfo> {
    let mut st = KernelStatfs::default();
    // SAFETY: st has the layout of the kernel's struct statfs on this (64-bit) target and is
    // writable.
    check_long(unsafe { libc::syscall(libc::SYS_fstatfs, fd, &mut st as *mut KernelStatfs) })?;
    Ok(FsInfo {
        fs_type: st.f_type,
        flags: st.f_flags as u64,
    })
}

/// `unlinkat(2)`.
pub fn unlinkat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) })
}

/// `symlinkat(2)`: a symlink `name` in `dirfd` pointing to `target`.
pub fn symlinkat(target: &CStr, dirfd: RawFd, name: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) })
}

/// `readlinkat(2)`: the number of bytes written to `buf` (no NUL added).
pub fn readlinkat(dirfd: RawFd, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: name is NUL-terminated, buf is writable for its length.
    let ret = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(ret).map_err(|_| errno())
}

/// `fchdir(2)`.
pub fn fchdir(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor number.
    check(unsafe { libc::fchdir(fd) })
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

/// `chroot(2)`.
pub fn chroot(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chroot(path.as_ptr()) })
}

/// `copy_file_range(2)` of up to `len` bytes from the current offsets; bytes copied.
pub fn copy_file_range(fd_in: RawFd, fd_out: RawFd, len: usize) -> SysResult<usize> {
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
    usize::try_from(ret).map_err(|_| errno())
}

/// `umask(2)`; returns the previous mask.
pub fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// Reads the whole of a file of a virtual file system (procfs, sysfs, cgroupfs): a
/// parent-side helper, it allocates. Such files report a size of 0, so
/// `std::fs::read_to_string` stats them and then reads in pieces growing from 32 bytes (five
/// reads for a `/proc/<pid>/stat`, eight for a `mountinfo`); this starts with a page-sized
/// buffer: usually one read, and the one that sees the end.
///
/// ```
/// let stat = berth_sys::fs::read_virtual("/proc/self/stat")?;
/// assert!(stat.contains(')'));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_virtual(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let Some(spare) = buf.get_mut(len..) else {
            break;
        };
        match file.read(spare) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod read_virtual_tests {
    use super::read_virtual;

    #[test]
    fn reads_virtual_files_whole_and_reports_missing_ones() {
        let maps = read_virtual("/proc/self/maps").unwrap();
        // More than one page-sized read: the buffer grows.
        let mountinfo = read_virtual("/proc/self/mountinfo").unwrap();
        assert!(maps.lines().count() > 3 && mountinfo.ends_with('\n'));
        assert_eq!(
            read_virtual("/proc/self/no-such-file").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
