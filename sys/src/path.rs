//! Paths and numbers formatted into fixed stack buffers, for code that must not allocate.

use std::ffi::CStr;

use crate::errno::SysResult;

/// A NUL-terminated path of at most `N - 1` bytes, built in a fixed buffer (on the stack).
///
/// Every push either fits entirely or leaves the path as it was: bytes that (with the final
/// NUL) exceed `N` are `ENAMETOOLONG`, an embedded NUL (which the kernel would take as the
/// end of the path) is `EINVAL`.
///
/// ```
/// use berth_sys::StackPath;
///
/// let mut p = StackPath::<16>::new();
/// p.push(b"/dev/pts/")?;
/// p.push_num(7)?;
/// assert_eq!(p.as_cstr(), c"/dev/pts/7");
/// assert_eq!(p.push(b"/this-is-too-long"), Err(libc::ENAMETOOLONG));
/// assert_eq!(p.push(b"a\0b"), Err(libc::EINVAL));
/// assert_eq!(p.as_bytes(), b"/dev/pts/7");
/// # Ok::<(), i32>(())
/// ```
pub struct StackPath<const N: usize> {
    buf: [u8; N],
    len: usize,
}

/// The path buffer of `PATH_MAX` (4096) bytes, NUL included.
pub type PathBuf4k = StackPath<4096>;

impl<const N: usize> StackPath<N> {
    /// An empty path.
    pub const fn new() -> Self {
        StackPath {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes`; `ENAMETOOLONG` if they and the final NUL don't fit, `EINVAL` if they
    /// contain a NUL. On error the path is unchanged.
    pub fn push(&mut self, bytes: &[u8]) -> SysResult<()> {
        if bytes.contains(&0) {
            return Err(libc::EINVAL);
        }
        let end = self
            .len
            .checked_add(bytes.len())
            .filter(|end| *end < N)
            .ok_or(libc::ENAMETOOLONG)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(libc::ENAMETOOLONG)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        if let Some(b) = self.buf.get_mut(end) {
            *b = 0;
        }
        Ok(())
    }

    /// Appends `n` in decimal.
    pub fn push_num(&mut self, n: u64) -> SysResult<()> {
        let mut digits = [0u8; 20];
        self.push(fmt_u64(n, &mut digits))
    }

    /// Empties the path.
    pub fn clear(&mut self) {
        self.len = 0;
        if let Some(b) = self.buf.first_mut() {
            *b = 0;
        }
    }

    /// The path's length in bytes, without the NUL.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the path is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of the path, without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The path as a C string.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(self.buf.get(..=self.len).unwrap_or(b"\0")).unwrap_or(c"")
    }

    /// A pointer to the NUL-terminated path, for `libc` calls. With `N == 0` (no room for
    /// the NUL) it points to a static empty string.
    pub fn as_ptr(&self) -> *const libc::c_char {
        // The byte at `len` is always the NUL (zeroed by new, written by push) when N > 0.
        if N == 0 {
            c"".as_ptr()
        } else {
            self.buf.as_ptr().cast()
        }
    }
}

impl<const N: usize> Default for StackPath<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats `n` in decimal into `buf`, returning the digits.
///
/// ```
/// let mut b = [0u8; 20];
/// assert_eq!(berth_sys::fmt_u64(42, &mut b), b"42");
/// ```
pub fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for (i, d) in buf.iter_mut().enumerate().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        start = i;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or(&[])
}

/// `/proc/self/fd/<fd>` on the stack (`EBADF` for a negative fd): how a mount or an
/// `execve` reaches a file the caller holds open.
///
/// ```
/// assert_eq!(berth_sys::proc_fd_path(12)?.as_cstr(), c"/proc/self/fd/12");
/// # Ok::<(), i32>(())
/// ```
pub fn proc_fd_path(fd: libc::c_int) -> SysResult<StackPath<32>> {
    let mut p = StackPath::<32>::new();
    p.push(b"/proc/self/fd/")?;
    p.push_num(u64::try_from(fd).map_err(|_| libc::EBADF)?)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(9, &mut b), b"9");
        assert_eq!(fmt_u64(10, &mut b), b"10");
        assert_eq!(fmt_u64(1234567, &mut b), b"1234567");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn builds_proc_fd_paths() {
        assert_eq!(proc_fd_path(0).unwrap().as_cstr(), c"/proc/self/fd/0");
        assert_eq!(proc_fd_path(1234).unwrap().as_cstr(), c"/proc/self/fd/1234");
        assert_eq!(
            proc_fd_path(i32::MAX).unwrap().as_cstr(),
            c"/proc/self/fd/2147483647"
        );
        assert_eq!(proc_fd_path(-1).err(), Some(libc::EBADF));
    }

    #[test]
    fn exactly_full_fits_one_more_byte_does_not() {
        let mut p = StackPath::<8>::new();
        p.push(b"abc").unwrap();
        p.push(b"defg").unwrap();
        assert_eq!(p.as_cstr(), c"abcdefg");
        assert_eq!(p.len(), 7);
        assert_eq!(p.push(b"h"), Err(libc::ENAMETOOLONG));
        assert_eq!(p.push(b""), Ok(()));
        assert_eq!(p.as_cstr(), c"abcdefg");
    }

    #[test]
    fn too_long_leaves_the_path_unchanged() {
        let mut p = PathBuf4k::new();
        p.push(b"/proc/self/fd/").unwrap();
        p.push(b"42").unwrap();
        assert_eq!(p.as_bytes(), b"/proc/self/fd/42");
        assert_eq!(p.push(&[b'a'; 5000]), Err(libc::ENAMETOOLONG));
        assert_eq!(p.push(&[b'a'; 4096 - 16]), Err(libc::ENAMETOOLONG));
        assert_eq!(p.as_bytes(), b"/proc/self/fd/42");
        p.push(&[b'a'; 4096 - 17]).unwrap();
        assert_eq!(p.len(), 4095);
        assert_eq!(p.as_cstr().to_bytes().len(), 4095);
        assert_eq!(p.push_num(1), Err(libc::ENAMETOOLONG));
    }

    #[test]
    fn nul_inside_is_refused() {
        let mut p = StackPath::<16>::new();
        p.push(b"/a").unwrap();
        assert_eq!(p.push(b"b\0c"), Err(libc::EINVAL));
        assert_eq!(p.push(b"\0"), Err(libc::EINVAL));
        assert_eq!(p.push(b"bc\0"), Err(libc::EINVAL));
        assert_eq!(p.as_cstr(), c"/a");
    }

    #[test]
    fn clear_and_empty() {
        let mut p = StackPath::<4>::default();
        assert!(p.is_empty());
        assert_eq!(p.as_cstr(), c"");
        p.push(b"xyz").unwrap();
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.as_cstr(), c"");
        assert_eq!(p.as_bytes(), b"");
        // No room even for the NUL: every non-empty push fails, the C string is "".
        let mut z = StackPath::<0>::new();
        assert_eq!(z.push(b"a"), Err(libc::ENAMETOOLONG));
        assert_eq!(z.push(b""), Err(libc::ENAMETOOLONG));
        assert_eq!(z.as_cstr(), c"");
        z.clear();
    }
}
