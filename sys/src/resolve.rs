//! `openat2(2)` and its `RESOLVE_*` flags (`<linux/openat2.h>`, Linux 5.6).

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::errno::{SysResult, check_long};
use crate::fd::Fd;

/// `RESOLVE_NO_XDEV`: fail on crossing a mount point.
pub const RESOLVE_NO_XDEV: u64 = 0x01;
/// `RESOLVE_NO_MAGICLINKS`: refuse procfs magic links (`/proc/self/fd/N`, `/proc/self/exe`).
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS`: refuse every symlink.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_BENEATH`: fail on leaving the directory (`..` above it, absolute symlinks).
pub const RESOLVE_BENEATH: u64 = 0x08;
/// `RESOLVE_IN_ROOT`: treat the directory as `/` (`..` and absolute symlinks stay inside).
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)` of `path` relative to `dirfd` with the `O_*` flags `flags` and the
/// `RESOLVE_*` flags `resolve`; `O_CLOEXEC` is always added, and `EAGAIN` (a rename raced
/// with the lookup) is retried.
///
/// ```
/// use berth_sys::{RESOLVE_BENEATH, RESOLVE_IN_ROOT, openat2};
///
/// let root = openat2(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)?;
/// // Inside the root, `..` of `/` is `/` again.
/// let etc = openat2(root.raw(), c"../../etc", libc::O_PATH, RESOLVE_IN_ROOT)?;
/// assert_eq!(openat2(etc.raw(), c"..", libc::O_PATH, RESOLVE_BENEATH).err(), Some(libc::EXDEV));
/// # Ok::<(), i32>(())
/// ```
pub fn openat2(dirfd: RawFd, path: &CStr, flags: libc::c_int, resolve: u64) -> SysResult<Fd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: path is NUL-terminated, how is a valid open_how of the size passed.
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
            Ok(fd) => return Ok(Fd::new(fd as RawFd)),
            Err(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}
