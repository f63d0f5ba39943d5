//! Fragile-child side: the error record and the hostname/domainname setters.
//!
//! Nothing in this module allocates, locks, panics or touches `std::io` on the
//! paths the child runs (see `docs/DESIGN.md`).

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt;
use std::io;

use crate::error::NamespaceError;
use crate::kind::{NamespaceKind, flags_name};
use crate::plan::NamespacePlan;

/// The step of the fragile child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChildOp {
    /// `setns(2)` into a namespace given by path ([`NamespacePlan::join_all`]).
    Setns = 1,
    /// `unshare(2)` ([`NamespacePlan::unshare_user`], [`NamespacePlan::unshare_rest`]).
    Unshare = 2,
    /// Opening or writing `/proc/self/timens_offsets` ([`NamespacePlan::write_time_offsets`]).
    TimeOffsets = 3,
    /// `sethostname(2)` ([`set_hostname`]).
    Hostname = 4,
    /// `setdomainname(2)` ([`set_domainname`]).
    Domainname = 5,
}

impl ChildOp {
    const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(ChildOp::Setns),
            2 => Some(ChildOp::Unshare),
            3 => Some(ChildOp::TimeOffsets),
            4 => Some(ChildOp::Hostname),
            5 => Some(ChildOp::Domainname),
            _ => None,
        }
    }
}

/// A failure of the fragile child: which step, for which namespace type, and the errno.
///
/// It is `Copy` and fits in 8 bytes ([`to_bytes`](Self::to_bytes)) so the child can
/// send it over a pipe without allocating; the parent decodes it with
/// [`from_bytes`](Self::from_bytes) and turns it into a rich [`NamespaceError`]
/// naming the path with [`describe`](Self::describe).
///
/// ```
/// use berth_namespaces::{ChildError, ChildOp, NamespaceKind, NamespacePlan};
///
/// let e = ChildError { op: ChildOp::Unshare, kind: Some(NamespaceKind::User), errno: libc::EPERM };
/// let bytes = e.to_bytes(); // child: write(pipe, &bytes)
/// let back = ChildError::from_bytes(&bytes).unwrap(); // parent
/// assert_eq!(back, e);
/// let err = back.describe(&NamespacePlan::empty());
/// assert_eq!(err.to_string(), "unshare(CLONE_NEWUSER): Operation not permitted (os error 1)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildError {
    /// The step that failed.
    pub op: ChildOp,
    /// The namespace type the step was about, if it was about a single one.
    pub kind: Option<NamespaceKind>,
    /// The `errno` of the failed syscall.
    pub errno: i32,
}

impl ChildError {
    pub(crate) const fn new(op: ChildOp, kind: Option<NamespaceKind>, errno: i32) -> Self {
        ChildError { op, kind, errno }
    }

    /// Encodes the record: byte 0 the op, byte 1 the kind (0 for none), bytes 2-3
    /// zero, bytes 4-7 the errno in native byte order. Allocation-free.
    pub fn to_bytes(&self) -> [u8; 8] {
        let e = self.errno.to_ne_bytes();
        let k = match self.kind {
            Some(k) => k.code(),
            None => 0,
        };
        [self.op as u8, k, 0, 0, e[0], e[1], e[2], e[3]]
    }

    /// Decodes a record made by [`to_bytes`](Self::to_bytes); `None` if the bytes
    /// are not a valid record (unknown op or kind, non-zero padding).
    pub fn from_bytes(b: &[u8; 8]) -> Option<Self> {
        let op = ChildOp::from_u8(b[0])?;
        let kind = match b[1] {
            0 => None,
            c => Some(NamespaceKind::from_code(c)?),
        };
        if b[2] != 0 || b[3] != 0 {
            return None;
        }
        let errno = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        Some(ChildError { op, kind, errno })
    }

    /// Turns the record into an error naming what failed, using the plan the child
    /// ran (for `setns` failures it names the `linux.namespaces[i].path`).
    pub fn describe(&self, plan: &NamespacePlan) -> NamespaceError {
        let source = io::Error::from_raw_os_error(self.errno);
        match (self.op, self.kind) {
            (ChildOp::Setns, Some(kind)) => match plan.join_entry(kind) {
                Some((index, path)) => NamespaceError::Setns {
                    index,
                    path: path.to_path_buf(),
                    kind,
                    source,
                },
                None => NamespaceError::UnexpectedChildError { record: *self },
            },
            (ChildOp::Unshare, Some(kind)) => NamespaceError::Unshare {
                flags: flags_name(kind.clone_flag()),
                source,
            },
            (ChildOp::Unshare, None) => NamespaceError::Unshare {
                flags: flags_name(plan.unshare_rest_flags()),
                source,
            },
            (ChildOp::TimeOffsets, _) => NamespaceError::TimeOffsets { source },
            (ChildOp::Hostname, _) => NamespaceError::Hostname { source },
            (ChildOp::Domainname, _) => NamespaceError::Domainname { source },
            (ChildOp::Setns, None) => NamespaceError::UnexpectedChildError { record: *self },
        }
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.op)?;
        if let Some(k) = self.kind {
            write!(f, "({k})")?;
        }
        write!(f, " errno {}", self.errno)
    }
}

impl std::error::Error for ChildError {}

/// The calling thread's `errno` (berth-sys's). Allocation-free.
pub(crate) use berth_sys::errno;

/// Strips one trailing NUL and rejects interior NULs (the kernel would store the
/// name cut at the first NUL). Allocation-free.
fn name_bytes(name: &[u8]) -> Option<&[u8]> {
    let name = match name.split_last() {
        Some((0, rest)) => rest,
        _ => name,
    };
    if name.contains(&0) { None } else { Some(name) }
}

/// Sets the hostname of the calling process's UTS namespace with `sethostname(2)`.
///
/// `name` is the raw name, e.g. `cstr.to_bytes()` of a `CString` built before the
/// clone; one trailing NUL is accepted and ignored. An interior NUL fails with
/// `EINVAL`, as does a name longer than 64 bytes (the kernel's limit).
///
/// # Fragile child
/// Allocation-free, no locks, no panics: safe between `clone` and `exec`.
///
/// ```no_run
/// // In a child created with CLONE_NEWUTS (never in the host's UTS namespace):
/// berth_namespaces::set_hostname(b"box").map_err(|e| e.to_bytes())?;
/// # Ok::<(), [u8; 8]>(())
/// ```
pub fn set_hostname(name: &[u8]) -> Result<(), ChildError> {
    let Some(name) = name_bytes(name) else {
        return Err(ChildError::new(ChildOp::Hostname, None, libc::EINVAL));
    };
    // SAFETY: `name` is a live slice; the kernel reads exactly `name.len()` bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ChildError::new(ChildOp::Hostname, None, errno()))
    }
}

/// Sets the NIS domain name of the calling process's UTS namespace with
/// `setdomainname(2)`. Same rules as [`set_hostname`].
///
/// # Fragile child
/// Allocation-free, no locks, no panics: safe between `clone` and `exec`.
///
/// ```no_run
/// // In a child created with CLONE_NEWUTS:
/// berth_namespaces::set_domainname(b"example.org").map_err(|e| e.to_bytes())?;
/// # Ok::<(), [u8; 8]>(())
/// ```
pub fn set_domainname(name: &[u8]) -> Result<(), ChildError> {
    let Some(name) = name_bytes(name) else {
        return Err(ChildError::new(ChildOp::Domainname, None, libc::EINVAL));
    };
    // SAFETY: `name` is a live slice; the kernel reads exactly `name.len()` bytes.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ChildError::new(ChildOp::Domainname, None, errno()))
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

    #[test]
    fn name_bytes_strips_one_trailing_nul_and_rejects_interior() {
        assert_eq!(name_bytes(b"box\0"), Some(&b"box"[..]));
        assert_eq!(name_bytes(b"box"), Some(&b"box"[..]));
        assert_eq!(name_bytes(b""), Some(&b""[..]));
        assert_eq!(name_bytes(b"b\0x"), None);
        assert_eq!(name_bytes(b"box\0\0"), None);
    }
}
