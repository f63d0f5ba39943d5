//! Allocation-free resolution of container paths inside a root directory fd,
//! creating missing components one at a time.
//!
//! Every lookup is `openat2(root, prefix, RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: symlinks in the image (absolute or with `..`) are
//! followed *inside* the root, never onto the host. Missing components are
//! created with `mkdirat` on the already-resolved parent; a missing leaf file
//! is created with `O_CREAT|O_EXCL|O_NOFOLLOW`. A dangling symlink met while
//! creating is read with `readlinkat` and its target (again interpreted inside
//! the root) is created instead, like the image's symlink would be followed.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::ffi::CStr;

use libc::c_int;

use crate::sys::{self, Errno, Fd, IN_ROOT};

/// Maximum path length handled (bytes, without the NUL).
const PATH_BUF: usize = 4096;
/// Maximum number of dangling symlinks followed while creating.
const MAX_LINKS: u32 = 40;

/// What to create when components are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Nothing: a missing component is `ENOENT`.
    No,
    /// Directories (mode 0755 before umask).
    Dir,
    /// Directories for the parents, an empty regular file for the leaf.
    File,
}

/// Why resolution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// Looking up a component failed.
    Lookup(Errno),
    /// Creating a missing directory failed.
    Mkdir(Errno),
    /// Creating the missing leaf file failed.
    CreateFile(Errno),
}

impl ResolveError {
    pub(crate) fn errno(self) -> Errno {
        match self {
            ResolveError::Lookup(e) | ResolveError::Mkdir(e) | ResolveError::CreateFile(e) => e,
        }
    }
}

/// A resolved path.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Descriptor opened with the requested flags.
    pub fd: Fd,
    /// The leaf did not exist and was created by this call.
    pub created: bool,
}

fn cstr_at(buf: &[u8], end: usize) -> Result<&CStr, Errno> {
    let bytes = buf.get(..=end).ok_or(libc::ENAMETOOLONG)?;
    CStr::from_bytes_with_nul(bytes).map_err(|_| libc::EINVAL)
}

fn set(buf: &mut [u8], at: usize, v: u8) -> Result<(), Errno> {
    *buf.get_mut(at).ok_or(libc::ENAMETOOLONG)? = v;
    Ok(())
}

/// Open `path` (relative; leading `/` are ignored) inside `root` with
/// `flags`, without creating anything.
///
/// # Fragile child
pub(crate) fn open_in_root(root: c_int, path: &CStr, flags: c_int) -> Result<Fd, Errno> {
    sys::openat2(root, path, flags, IN_ROOT)
}

/// Resolve `path` inside `root`, creating what is missing per `create`; the
/// final component is opened with `flags` (e.g. `O_PATH`).
///
/// # Fragile child
pub(crate) fn resolve(
    root: c_int,
    path: &CStr,
    create: Create,
    flags: c_int,
) -> Result<Resolved, ResolveError> {
    use ResolveError::*;

    let src = path.to_bytes();
    let mut cur = [0u8; PATH_BUF];
    let mut len = src.len();
    if len >= PATH_BUF {
        return Err(Lookup(libc::ENAMETOOLONG));
    }
    cur.get_mut(..len)
        .ok_or(Lookup(libc::ENAMETOOLONG))?
        .copy_from_slice(src);
    let mut links = 0u32;

    'restart: loop {
        // Fast path: everything exists.
        match sys::openat2(root, cstr_at(&cur, len).map_err(Lookup)?, flags, IN_ROOT) {
            Ok(fd) => return Ok(Resolved { fd, created: false }),
            Err(libc::ENOENT) if create != Create::No => {}
            Err(e) => return Err(Lookup(e)),
        }

        // Slow path: walk component by component.
        let mut parent: Option<Fd> = None;
        let mut start = 0usize;
        loop {
            while start < len && cur.get(start) == Some(&b'/') {
                start += 1;
            }
            if start >= len {
                break;
            }
            let mut end = start;
            while end < len && cur.get(end) != Some(&b'/') {
                end += 1;
            }
            let mut rest = end;
            while rest < len && cur.get(rest) == Some(&b'/') {
                rest += 1;
            }
            let is_last = rest >= len;
            let step_flags = if is_last { flags } else { libc::O_PATH };

            // Terminate the prefix (and the component name) at `end`.
            let saved = *cur.get(end).ok_or(Lookup(libc::ENAMETOOLONG))?;
            set(&mut cur, end, 0).map_err(Lookup)?;
            let opened = sys::openat2(
                root,
                cstr_at(&cur, end).map_err(Lookup)?,
                step_flags,
                IN_ROOT,
            );
            let fd = match opened {
                Ok(fd) => fd,
                Err(libc::ENOENT) => {
                    let dirfd = parent.as_ref().map_or(root, Fd::raw);
                    let name = cur.get(start..=end).ok_or(Lookup(libc::ENAMETOOLONG))?;
                    let name = CStr::from_bytes_with_nul(name).map_err(|_| Lookup(libc::EINVAL))?;
                    let make_file = is_last && create == Create::File;
                    let made = if make_file {
                        sys::openat(
                            dirfd,
                            name,
                            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY,
                            0o644,
                        )
                        .map(drop)
                    } else {
                        sys::mkdirat(dirfd, name, 0o755)
                    };
                    match made {
                        Ok(()) => {
                            let fd = sys::openat2(
                                root,
                                cstr_at(&cur, end).map_err(Lookup)?,
                                step_flags,
                                IN_ROOT,
                            )
                            .map_err(Lookup)?;
                            if is_last {
                                return Ok(Resolved { fd, created: true });
                            }
                            fd
                        }
                        Err(libc::EEXIST) => {
                            // Present but not resolvable: a dangling symlink.
                            // Follow it (inside the root) by rewriting the path.
                            let mut link = [0u8; PATH_BUF];
                            let n = match sys::readlinkat(dirfd, name, &mut link) {
                                Ok(n) => n,
                                Err(libc::EINVAL) => {
                                    return Err(if make_file {
                                        CreateFile(libc::EEXIST)
                                    } else {
                                        Mkdir(libc::EEXIST)
                                    });
                                }
                                Err(e) => return Err(Lookup(e)),
                            };
                            links += 1;
                            if links > MAX_LINKS {
                                return Err(Lookup(libc::ELOOP));
                            }
                            set(&mut cur, end, saved).map_err(Lookup)?;
                            let target = link.get(..n).ok_or(Lookup(libc::ENAMETOOLONG))?;
                            len = splice(&mut cur, len, start, end, target).map_err(Lookup)?;
                            continue 'restart;
                        }
                        Err(e) => {
                            return Err(if make_file { CreateFile(e) } else { Mkdir(e) });
                        }
                    }
                }
                Err(e) => return Err(Lookup(e)),
            };
            set(&mut cur, end, saved).map_err(Lookup)?;
            if is_last {
                return Ok(Resolved { fd, created: false });
            }
            parent = Some(fd);
            start = end;
        }
        // Only separators (or empty): the root itself.
        return Err(Lookup(libc::ENOENT));
    }
}

/// Replace component `cur[start..end]` by a symlink target: an absolute
/// target replaces everything up to `end`, a relative one only the component.
/// Returns the new length; the buffer stays NUL-terminated.
fn splice(
    cur: &mut [u8; PATH_BUF],
    len: usize,
    start: usize,
    end: usize,
    target: &[u8],
) -> Result<usize, Errno> {
    let mut next = [0u8; PATH_BUF];
    let mut n = 0usize;
    let mut push = |bytes: &[u8], n: &mut usize| -> Result<(), Errno> {
        let new_len = n.checked_add(bytes.len()).ok_or(libc::ENAMETOOLONG)?;
        if new_len >= PATH_BUF {
            return Err(libc::ENAMETOOLONG);
        }
        next.get_mut(*n..new_len)
            .ok_or(libc::ENAMETOOLONG)?
            .copy_from_slice(bytes);
        *n = new_len;
        Ok(())
    };
    if !target.starts_with(b"/") {
        push(cur.get(..start).ok_or(libc::ENAMETOOLONG)?, &mut n)?;
    }
    push(target, &mut n)?;
    push(cur.get(end..len).ok_or(libc::ENAMETOOLONG)?, &mut n)?;
    cur.get_mut(..n)
        .ok_or(libc::ENAMETOOLONG)?
        .copy_from_slice(next.get(..n).ok_or(libc::ENAMETOOLONG)?);
    if let Some(rest) = cur.get_mut(n..) {
        rest.fill(0);
    }
    Ok(n)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;

    fn spliced(path: &str, start: usize, end: usize, target: &str) -> String {
        let mut cur = [0u8; PATH_BUF];
        cur[..path.len()].copy_from_slice(path.as_bytes());
        let n = splice(&mut cur, path.len(), start, end, target.as_bytes()).unwrap();
        assert_eq!(cur[n], 0);
        String::from_utf8(cur[..n].to_vec()).unwrap()
    }

    #[test]
    fn splice_relative_and_absolute() {
        assert_eq!(spliced("a/b/c", 2, 3, "x/y"), "a/x/y/c");
        assert_eq!(spliced("a/b/c", 2, 3, "../.."), "a/../../c");
        assert_eq!(spliced("a/b/c", 2, 3, "/tmp/t"), "/tmp/t/c");
        assert_eq!(spliced("mnt", 0, 3, "/tmp/host"), "/tmp/host");
        assert_eq!(spliced("a/b", 2, 3, "z"), "a/z");
    }

    #[test]
    fn splice_overflow() {
        let mut cur = [0u8; PATH_BUF];
        cur[..3].copy_from_slice(b"a/b");
        let long = vec![b'x'; PATH_BUF];
        assert_eq!(splice(&mut cur, 3, 2, 3, &long), Err(libc::ENAMETOOLONG));
    }
}
