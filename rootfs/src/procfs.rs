//! Child side: writing procfs files (sysctls, LSM attributes) through a
//! verified procfs root.
//!
//! Nothing in this module allocates, locks, touches `std::io` or panics.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::{
    self, Fd, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV,
};

/// `PROC_SUPER_MAGIC` from `<linux/magic.h>`.
pub(crate) const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// `PROC_ROOT_INO`: the inode number of every procfs root.
const PROC_ROOT_INO: libc::ino_t = 1;

/// Which part of a [`ProcRoot`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStage {
    /// `openat2(2)` of the procfs root or of the file under it failed (a path that leaves the
    /// root, crosses a mount point or meets a refused link fails here).
    Open,
    /// The opened directory is not the root of a procfs mount, or the opened file is not on
    /// procfs (errno `EXDEV`), or `fstat`/`fstatfs` of it failed.
    Check,
    /// `write(2)` of the value failed.
    Write,
}

/// A failed [`ProcRoot`] operation: the stage and the raw errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcError {
    /// What failed.
    pub stage: ProcStage,
    /// The raw `errno`.
    pub errno: i32,
}

impl ProcError {
    fn at(stage: ProcStage) -> impl Fn(i32) -> ProcError {
        move |errno| ProcError { stage, errno }
    }
}

/// An `O_PATH` descriptor of a directory checked to be the root of a procfs mount
/// (`PROC_SUPER_MAGIC`, inode 1), not a bind of some other procfs directory nor a file
/// system made to look like one. Closed on drop.
///
/// Files are written through it with [`ProcRoot::write`], which refuses to leave the root,
/// to follow magic links or to cross a mount point, so a file or directory mounted over the
/// target (even from procfs) cannot redirect the write (CVE-2025-52881).
///
/// # Fragile child
/// Everything here is raw system calls on data the caller passes: no allocation, no locks,
/// no panics. Safe to call between `clone` and `execve`.
///
/// ```no_run
/// use berth_rootfs::{ProcRoot, ProcStage};
///
/// // After pivot_root, with the container's /proc mounted:
/// let proc = ProcRoot::open(libc::AT_FDCWD, c"/proc", 0)?;
/// proc.write(c"sys/kernel/shmmax", b"65536", libc::RESOLVE_NO_SYMLINKS)?;
/// // /proc/thread-self is a symlink: follow it (it stays on the same mount).
/// match proc.write(c"thread-self/attr/exec", b"exec unconfined", 0) {
///     Err(e) if e.stage == ProcStage::Open && e.errno == libc::ENOENT => {}
///     r => r?,
/// }
/// # Ok::<(), berth_rootfs::ProcError>(())
/// ```
#[derive(Debug)]
pub struct ProcRoot(Fd);

impl ProcRoot {
    /// Opens `path` (relative to `dirfd`, or absolute; `libc::AT_FDCWD` for the current
    /// directory) as an `O_PATH` directory without following a symlink anywhere in it, and
    /// checks that it is the root of a procfs mount.
    ///
    /// `resolve` is ORed into the `openat2(2)` resolve flags, which always hold
    /// `RESOLVE_NO_SYMLINKS` (pass e.g. `RESOLVE_IN_ROOT` to stay inside a root `dirfd`).
    ///
    /// Errors: [`ProcStage::Open`] when the open fails, [`ProcStage::Check`] when `fstatfs` or
    /// `fstat` fails or the directory is not a procfs root (`EXDEV`).
    pub fn open(dirfd: RawFd, path: &CStr, resolve: u64) -> Result<ProcRoot, ProcError> {
        let fd = sys::openat2(
            dirfd,
            path,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            resolve | RESOLVE_NO_SYMLINKS,
        )
        .map_err(ProcError::at(ProcStage::Open))?;
        let fs = sys::fstatfs(fd.raw()).map_err(ProcError::at(ProcStage::Check))?;
        let st = sys::fstat(fd.raw()).map_err(ProcError::at(ProcStage::Check))?;
        if fs.fs_type != PROC_SUPER_MAGIC || st.st_ino != PROC_ROOT_INO {
            return Err(ProcError::at(ProcStage::Check)(libc::EXDEV));
        }
        Ok(ProcRoot(fd))
    }

    /// Writes `value` to the file `rel` under this procfs root (`write(2)`, retried on
    /// `EINTR` and short writes).
    ///
    /// `rel` is resolved with `openat2(O_WRONLY | O_NOFOLLOW)` and the resolve flags
    /// `RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS`, ORed with `resolve`:
    /// pass `RESOLVE_NO_SYMLINKS` unless the path goes through one of procfs's own symlinks
    /// (`thread-self`, `self`), which the other flags keep on this mount. The opened file
    /// must be on procfs too.
    ///
    /// Errors: [`ProcStage::Open`] when the open fails (`EXDEV` for a mount point on the
    /// way), [`ProcStage::Check`] when the file is not on procfs (`EXDEV`) or `fstatfs`
    /// fails, [`ProcStage::Write`] when the write fails.
    pub fn write(&self, rel: &CStr, value: &[u8], resolve: u64) -> Result<(), ProcError> {
        let f = sys::openat2(
            self.0.raw(),
            rel,
            libc::O_WRONLY | libc::O_NOFOLLOW,
            resolve | RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
        )
        .map_err(ProcError::at(ProcStage::Open))?;
        let fs = sys::fstatfs(f.raw()).map_err(ProcError::at(ProcStage::Check))?;
        if fs.fs_type != PROC_SUPER_MAGIC {
            return Err(ProcError::at(ProcStage::Check)(libc::EXDEV));
        }
        sys::write_all(f.raw(), value).map_err(ProcError::at(ProcStage::Write))
    }
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

    fn err(stage: ProcStage, errno: i32) -> ProcError {
        ProcError { stage, errno }
    }

    #[test]
    fn root_must_be_the_root_of_a_procfs() {
        ProcRoot::open(libc::AT_FDCWD, c"/proc", 0).expect("/proc is procfs");
        let open = |p: &CStr| ProcRoot::open(libc::AT_FDCWD, p, 0).map(drop);
        assert_eq!(open(c"/tmp"), Err(err(ProcStage::Check, libc::EXDEV)));
        // A directory inside procfs is not its root, and no symlink is followed.
        assert_eq!(open(c"/proc/1"), Err(err(ProcStage::Check, libc::EXDEV)));
        // (Followed, /proc/self would be /proc/<pid>: Check, EXDEV.)
        assert_eq!(
            open(c"/proc/self"),
            Err(err(ProcStage::Open, libc::ENOTDIR))
        );
    }

    #[test]
    fn write_stays_beneath_the_root_and_off_magic_links() {
        let proc = ProcRoot::open(libc::AT_FDCWD, c"/proc", 0).expect("/proc is procfs");
        // Whatever the caller passes: never above the root, never through a magic link.
        assert_eq!(
            proc.write(c"../tmp/x", b"", 0),
            Err(err(ProcStage::Open, libc::EXDEV))
        );
        assert_eq!(
            proc.write(c"thread-self/fd/0", b"", 0),
            Err(err(ProcStage::Open, libc::ELOOP))
        );
        // RESOLVE_NO_SYMLINKS from the caller refuses procfs's own symlinks too.
        assert_eq!(
            proc.write(c"thread-self/comm", b"x", RESOLVE_NO_SYMLINKS),
            Err(err(ProcStage::Open, libc::ELOOP))
        );
    }
}
