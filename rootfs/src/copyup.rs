//! Allocation-free recursive copy for `tmpcopyup`: directories, regular
//! files, symlinks and special files, with owners and modes.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::ffi::CStr;

use libc::c_int;

use crate::sys::{self, Errno, SysResult};

/// Maximum directory depth copied; deeper trees fail with `ELOOP`.
pub(crate) const MAX_DEPTH: usize = 32;
/// Size of the per-level `getdents64` buffer.
const DENTS_BUF: usize = 2048;
/// Offset of `d_reclen` / `d_name` in `struct linux_dirent64`.
const RECLEN_OFF: usize = 16;
const NAME_OFF: usize = 19;

/// Copy the contents of directory `src` into directory `dst` (both opened
/// `O_RDONLY|O_DIRECTORY`). `buf` is scratch space for file data and
/// symlink targets.
///
/// # Fragile child
pub(crate) fn copy_tree(src: c_int, dst: c_int, buf: &mut [u8]) -> SysResult<()> {
    copy_dir(src, dst, 0, buf)
}

fn copy_dir(src: c_int, dst: c_int, depth: usize, buf: &mut [u8]) -> SysResult<()> {
    if depth > MAX_DEPTH {
        return Err(libc::ELOOP);
    }
    let mut dents = [0u8; DENTS_BUF];
    loop {
        let n = sys::getdents64(src, &mut dents)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0usize;
        while off < n {
            let rl = dents
                .get(off + RECLEN_OFF..off + RECLEN_OFF + 2)
                .ok_or(libc::EIO)?;
            let rl = <[u8; 2]>::try_from(rl).map_err(|_| libc::EIO)?;
            let reclen = usize::from(u16::from_ne_bytes(rl));
            if reclen == 0 {
                return Err(libc::EIO);
            }
            let rec = dents.get(off + NAME_OFF..off + reclen).ok_or(libc::EIO)?;
            let name = CStr::from_bytes_until_nul(rec).map_err(|_| libc::EIO)?;
            off += reclen;
            let b = name.to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            copy_entry(src, dst, name, depth, buf)?;
        }
    }
}

fn copy_entry(src: c_int, dst: c_int, name: &CStr, depth: usize, buf: &mut [u8]) -> SysResult<()> {
    let st = sys::lstatat(src, name)?;
    let perm = st.st_mode & 0o7777;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            sys::mkdirat(dst, name, 0o700)?;
            let s = sys::openat(
                src,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            let d = sys::openat(
                dst,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            copy_dir(s.raw(), d.raw(), depth + 1, buf)?;
            sys::fchown(d.raw(), st.st_uid, st.st_gid)?;
            sys::fchmod(d.raw(), perm)
        }
        libc::S_IFREG => {
            let s = sys::openat(src, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
            let d = sys::openat(
                dst,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )?;
            copy_data(s.raw(), d.raw(), buf)?;
            sys::fchown(d.raw(), st.st_uid, st.st_gid)?;
            sys::fchmod(d.raw(), perm)
        }
        libc::S_IFLNK => {
            let n = sys::readlinkat(src, name, buf)?;
            if n >= buf.len() {
                return Err(libc::ENAMETOOLONG);
            }
            *buf.get_mut(n).ok_or(libc::ENAMETOOLONG)? = 0;
            let target = CStr::from_bytes_with_nul(buf.get(..=n).ok_or(libc::ENAMETOOLONG)?)
                .map_err(|_| libc::EINVAL)?;
            sys::symlinkat(target, dst, name)?;
            sys::fchownat(dst, name, st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW)
        }
        _ => {
            sys::mknodat(dst, name, st.st_mode, st.st_rdev)?;
            sys::fchownat(dst, name, st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW)?;
            // mknod honours the umask; a freshly made node is not a symlink.
            sys::fchmodat(dst, name, perm)
        }
    }
}

/// Copy file data, with `copy_file_range` when the kernel allows it and
/// `read`/`write` through `buf` otherwise.
fn copy_data(src: c_int, dst: c_int, buf: &mut [u8]) -> SysResult<()> {
    let mut first = true;
    loop {
        match sys::copy_file_range(src, dst, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => first = false,
            Err(e) if first && fallback(e) => break,
            Err(e) => return Err(e),
        }
    }
    loop {
        let n = sys::read(src, buf)?;
        if n == 0 {
            return Ok(());
        }
        sys::write_all(dst, buf.get(..n).ok_or(libc::EIO)?)?;
    }
}

fn fallback(e: Errno) -> bool {
    matches!(
        e,
        libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM
    )
}
