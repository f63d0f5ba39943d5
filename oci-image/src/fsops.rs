//! Thin wrappers over the `*at` system calls used to build a root filesystem without ever
//! following a symlink out of it. Every function takes NUL-terminated names and returns
//! the raw errno; the callers attach the entry name.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

pub(crate) type SysResult<T> = std::result::Result<T, Errno>;

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn retry<F: FnMut() -> libc::c_int>(mut f: F) -> SysResult<libc::c_int> {
    loop {
        match check(f()) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `path` is resolved
/// as if `dirfd` were `/`, so neither `..` nor a symlink (absolute or relative) can leave it.
pub(crate) fn open_in_root(root: RawFd, path: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: path is NUL-terminated, how points to a live open_how of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            match Errno::last() {
                // The kernel asks for a retry when a rename raced with the lookup.
                Errno::EINTR | Errno::EAGAIN => continue,
                e => return Err(e),
            }
        }
        let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
        // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// `openat(dirfd, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> SysResult<OwnedFd> {
    // SAFETY: name is NUL-terminated; the result is checked.
    let fd = retry(|| unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn mkdirat(dir: RawFd, name: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub(crate) fn unlinkat(dir: RawFd, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

pub(crate) fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

pub(crate) fn linkat(odir: RawFd, oname: &CStr, ndir: RawFd, nname: &CStr) -> SysResult<()> {
    // SAFETY: both names are NUL-terminated; flags 0: a symlink target is linked itself.
    check(unsafe { libc::linkat(odir, oname.as_ptr(), ndir, nname.as_ptr(), 0) }).map(drop)
}

pub(crate) fn mknodat(dir: RawFd, name: &CStr, mode: u32, dev: u64) -> SysResult<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::mknodat(dir, name.as_ptr(), mode as libc::mode_t, dev as libc::dev_t) })
        .map(drop)
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`; an empty name means `dir` itself.
pub(crate) fn lchownat(dir: RawFd, name: &CStr, uid: u32, gid: u32) -> SysResult<()> {
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, flags) }).map(drop)
}

pub(crate) fn fchown(fd: RawFd, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

pub(crate) fn fchmod(fd: RawFd, mode: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

/// chmod of `name` in `dir` without following a symlink there: `fchmodat2(...,
/// AT_SYMLINK_NOFOLLOW)` (Linux 6.6), else `fchmodat` after checking it is not a symlink.
pub(crate) fn lchmodat(dir: RawFd, name: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: name is NUL-terminated; the syscall takes (int, const char *, mode_t, int).
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir,
            name.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match Errno::last() {
        Errno::ENOSYS | Errno::EINVAL => {
            let st = lstatat(dir, name)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                return Ok(());
            }
            // SAFETY: name is NUL-terminated.
            check(unsafe { libc::fchmodat(dir, name.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
        }
        e => Err(e),
    }
}

fn timespecs(mtime: (i64, u32), atime: (i64, u32)) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as libc::c_long,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as libc::c_long,
        },
    ]
}

/// Sets atime and mtime of `name` in `dir` (of `dir` itself if `name` is empty), not
/// following a symlink.
pub(crate) fn lutimesat(
    dir: RawFd,
    name: &CStr,
    mtime: (i64, u32),
    atime: (i64, u32),
) -> SysResult<()> {
    let ts = timespecs(mtime, atime);
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: name is NUL-terminated, ts is an array of two timespecs.
    check(unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), flags) }).map(drop)
}

pub(crate) fn futimens(fd: RawFd, mtime: (i64, u32), atime: (i64, u32)) -> SysResult<()> {
    let ts = timespecs(mtime, atime);
    // SAFETY: ts is an array of two timespecs; fd is ours.
    check(unsafe { libc::futimens(fd, ts.as_ptr()) }).map(drop)
}

pub(crate) fn fsetxattr(fd: RawFd, name: &CStr, value: &[u8]) -> SysResult<()> {
    // SAFETY: name is NUL-terminated; value is a live slice of the given length.
    check(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(drop)
}

/// Sets an xattr on `name` in `dir` without following a final symlink: through
/// `/proc/self/fd/<dir>/<name>` (the directory is reached by its descriptor, so no path
/// component can be swapped) with `lsetxattr`.
pub(crate) fn lsetxattrat(dir: RawFd, name: &CStr, attr: &CStr, value: &[u8]) -> SysResult<()> {
    let mut path = format!("/proc/self/fd/{dir}/").into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated; value is a live slice.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            attr.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

pub(crate) fn lstatat(dir: RawFd, name: &CStr) -> SysResult<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: st is a valid out-pointer; name is NUL-terminated.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn readlinkat(dir: RawFd, name: &CStr) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Errno::last());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Writes all of `data`.
pub(crate) fn write_all(fd: RawFd, mut data: &[u8]) -> SysResult<()> {
    while !data.is_empty() {
        // SAFETY: data is a live slice; fd is ours.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        if n == 0 {
            return Err(Errno::EIO);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: RawFd) -> SysResult<Vec<CString>> {
    let fd = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Removes `name` in `dir`, recursively if it is a directory. Never follows a symlink: a
/// symlink is removed, not what it points to. A missing name is not an error.
pub(crate) fn remove_at(dir: RawFd, name: &CStr) -> SysResult<()> {
    match unlinkat(dir, name, 0) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {
            match openat(
                dir,
                name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(sub) => {
                    for child in list_dir(sub.as_raw_fd())? {
                        remove_at(sub.as_raw_fd(), &child)?;
                    }
                    match unlinkat(dir, name, libc::AT_REMOVEDIR) {
                        Ok(()) | Err(Errno::ENOENT) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(Errno::ENOTDIR) => Err(Errno::EPERM),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// `makedev(3)`.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}
