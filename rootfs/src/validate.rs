//! The filesystem part's own rules, checked on the config alone.
//!
//! [`RootfsPlan::prepare`](crate::RootfsPlan::prepare) runs these checks first (and builds
//! its plan from what they parsed), then looks at the host: bind sources, mounts on `/proc`,
//! `/proc/self/mountinfo`, the kernel's `mount_setattr`. A runtime validating a config
//! before it touches the system calls them on their own, each for its field, in the order
//! it reports fields. Every error is a [`RootfsError`] whose message starts with the JSON
//! path [`RootfsError::field`] returns.
//!
//! ```
//! use berth_rootfs::validate;
//!
//! let err = validate::masked_paths(&["/proc/kcore".into(), "proc/keys".into()]).unwrap_err();
//! assert_eq!(err.field().as_deref(), Some("linux.maskedPaths[1]"));
//! assert!(validate::rootfs_propagation("rslave").is_ok());
//! ```

use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;

use libc::c_ulong;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use crate::error::RootfsError;
use crate::options::{self, MountOptions, parse_mount_options};
use crate::plan::{Entry, Target, clean, entry, target};

/// What [`mount`] parsed from a mount, for the plan.
pub(crate) struct CheckedMount<'a> {
    /// The destination, cleaned and relative.
    pub rel: Vec<u8>,
    pub target: Target,
    pub opts: MountOptions,
    /// `type`, `None` when absent or empty.
    pub typ: Option<&'a str>,
    pub is_bind: bool,
}

/// `mounts[index]`: no id mappings (id-mapped mounts are not supported), an absolute
/// destination that is not the container root, options [`parse_mount_options`] knows, a
/// `type` or a bind option, `tmpcopyup` on tmpfs only, no unknown bare word on a bind
/// mount (a typo of a flag), and a source for a bind mount.
///
/// # Errors
/// [`RootfsError::MountField`], [`RootfsError::MountDestination`] or
/// [`RootfsError::MountOption`] naming the field.
pub fn mount(index: usize, m: &Mount) -> Result<(), RootfsError> {
    check_mount(index, m).map(drop)
}

pub(crate) fn check_mount(index: usize, m: &Mount) -> Result<CheckedMount<'_>, RootfsError> {
    let field = |field: &'static str, reason: &str| RootfsError::MountField {
        index,
        field,
        reason: reason.to_string(),
    };
    let dest_err = |reason: String| RootfsError::MountDestination {
        index,
        destination: m.destination().clone(),
        reason,
    };
    let opt_err = |option: &str, reason: &str| RootfsError::MountOption {
        index,
        option: option.to_string(),
        reason: reason.to_string(),
    };
    if m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(field("uidMappings", "id-mapped mounts are not supported"));
    }
    if m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(field("gidMappings", "id-mapped mounts are not supported"));
    }
    let rel = clean(m.destination()).ok_or_else(|| dest_err("must be an absolute path".into()))?;
    let target = target(rel.clone()).map_err(dest_err)?;

    let raw_opts: &[String] = m.options().as_deref().unwrap_or(&[]);
    let o = parse_mount_options(raw_opts).map_err(|e| opt_err(&e.option, e.reason))?;

    let typ = m.typ().as_deref().filter(|t| !t.is_empty());
    let is_bind = typ == Some("bind") || o.bind.is_some();
    if !is_bind && typ.is_none() {
        return Err(field("type", "is missing (and no bind/rbind option)"));
    }
    if o.tmpcopyup && (is_bind || typ != Some("tmpfs")) {
        return Err(opt_err("tmpcopyup", "only valid for a tmpfs mount"));
    }
    if is_bind {
        // Filesystem data (`mode=755`, `size=...`) means nothing to a bind mount: mount(2)
        // ignores it with MS_BIND, and runc passes it through, so configs written for runc
        // (runtime-tools' default has them) carry it. It is dropped, not refused; so are the
        // SELinux relabel flags `z`/`Z` (the engine's business). A bare unknown word is a
        // typo of a flag (`readonly`), which would silently give a writable bind: refused.
        if let Some(d) = o
            .data
            .iter()
            .find(|d| !d.contains('=') && !matches!(d.as_str(), "z" | "Z"))
        {
            return Err(opt_err(d, "is not a valid option for a bind mount"));
        }
        if m.source().as_ref().is_none_or(|s| s.as_os_str().is_empty()) {
            return Err(field("source", "is required for a bind mount"));
        }
    }
    Ok(CheckedMount {
        rel,
        target,
        opts: o,
        typ,
        is_bind,
    })
}

/// `linux.rootfsPropagation`: one of `[r]shared`, `[r]slave`, `[r]private`,
/// `[r]unbindable`.
///
/// # Errors
/// [`RootfsError::RootfsPropagation`].
pub fn rootfs_propagation(value: &str) -> Result<(), RootfsError> {
    check_propagation(value).map(drop)
}

pub(crate) fn check_propagation(value: &str) -> Result<c_ulong, RootfsError> {
    options::parse_propagation(value).ok_or_else(|| RootfsError::RootfsPropagation {
        value: value.to_string(),
    })
}

/// What [`devices`] parsed from one `linux.devices` entry.
pub(crate) struct CheckedDevice {
    pub entry: Entry,
    /// The cleaned relative path (`dev/fuse`).
    pub rel: Vec<u8>,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub host_path: CString,
}

/// `linux.devices`: each a node type (`c`, `b`, `u` or `p`, not `a`), an absolute path
/// that is not the container root, given once (after cleaning), and `major`/`minor`
/// within 0..=4294967295 for all but `p`.
///
/// # Errors
/// [`RootfsError::Device`] naming the entry and its field (`type`, `path`, `major`,
/// `minor`).
pub fn devices(devices: &[LinuxDevice]) -> Result<(), RootfsError> {
    check_devices(devices).map(drop)
}

pub(crate) fn check_devices(devices: &[LinuxDevice]) -> Result<Vec<CheckedDevice>, RootfsError> {
    let mut out: Vec<CheckedDevice> = Vec::with_capacity(devices.len());
    for (index, d) in devices.iter().enumerate() {
        let path_err = |reason: String| RootfsError::Device {
            index,
            field: "path",
            value: format!("{:?}", d.path()),
            reason,
        };
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::Device {
                    index,
                    field: "type",
                    value: "\"a\"".into(),
                    reason: "is not a device node type (one of c, b, u, p)".into(),
                });
            }
        };
        let rel = clean(d.path()).ok_or_else(|| path_err("must be an absolute path".into()))?;
        let entry = entry(&rel).map_err(path_err)?;
        if let Some(prev) = out.iter().position(|c| c.rel == rel) {
            return Err(path_err(format!("same path as linux.devices[{prev}]")));
        }
        let host_path = CString::new(d.path().as_os_str().as_encoded_bytes())
            .map_err(|_| path_err("contains a NUL byte".into()))?;
        let number = |field: &'static str, n: i64| {
            u32::try_from(n).map_err(|_| RootfsError::Device {
                index,
                field,
                value: n.to_string(),
                reason: "is out of range (0..=4294967295)".into(),
            })
        };
        let (major, minor) = if kind == libc::S_IFIFO {
            (0, 0)
        } else {
            (number("major", d.major())?, number("minor", d.minor())?)
        };
        out.push(CheckedDevice {
            entry,
            rel,
            kind,
            major,
            minor,
            host_path,
        });
    }
    Ok(out)
}

/// `linux.maskedPaths`: absolute paths, none the container root.
///
/// # Errors
/// [`RootfsError::MaskedPath`].
pub fn masked_paths(paths: &[String]) -> Result<(), RootfsError> {
    check_masked_paths(paths).map(drop)
}

pub(crate) fn check_masked_paths(paths: &[String]) -> Result<Vec<Target>, RootfsError> {
    check_paths(paths, |index, path, reason| RootfsError::MaskedPath {
        index,
        path,
        reason,
    })
}

/// `linux.readonlyPaths`: absolute paths, none the container root.
///
/// # Errors
/// [`RootfsError::ReadonlyPath`].
pub fn readonly_paths(paths: &[String]) -> Result<(), RootfsError> {
    check_readonly_paths(paths).map(drop)
}

pub(crate) fn check_readonly_paths(paths: &[String]) -> Result<Vec<Target>, RootfsError> {
    check_paths(paths, |index, path, reason| RootfsError::ReadonlyPath {
        index,
        path,
        reason,
    })
}

fn check_paths(
    paths: &[String],
    err: impl Fn(usize, String, String) -> RootfsError,
) -> Result<Vec<Target>, RootfsError> {
    let mut out = Vec::with_capacity(paths.len());
    for (index, p) in paths.iter().enumerate() {
        let err = |reason: String| err(index, p.clone(), reason);
        let rel = clean(Path::new(p)).ok_or_else(|| err("must be an absolute path".into()))?;
        out.push(target(rel).map_err(err)?);
    }
    Ok(out)
}

/// One `linux.sysctl` entry: a key without `..` or empty components (`net..x`, `.x`,
/// `x.`), a value without a NUL byte. Whether the key is namespaced is the runtime's
/// business (it knows the namespaces).
///
/// # Errors
/// [`RootfsError::Sysctl`].
pub fn sysctl(key: &str, value: &str) -> Result<(), RootfsError> {
    check_sysctl(key, value).map(drop)
}

/// Every entry of `linux.sysctl`, by [`sysctl`], in key order.
///
/// # Errors
/// [`RootfsError::Sysctl`] for the first key (in sorted order) that breaks a rule.
pub fn sysctls(sysctl: &HashMap<String, String>) -> Result<(), RootfsError> {
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        check_sysctl(key, &sysctl[key])?;
    }
    Ok(())
}

/// The key's file relative to the container's `/proc` (`sys/net/ipv4/ip_forward`).
pub(crate) fn check_sysctl(key: &str, value: &str) -> Result<CString, RootfsError> {
    let err = |reason: &str| RootfsError::Sysctl {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.contains("..") {
        return Err(err("must not contain \"..\""));
    }
    let rel = key.replace('.', "/");
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty()) {
        return Err(err("has an empty component"));
    }
    if value.contains('\0') {
        return Err(err("value contains a NUL byte"));
    }
    CString::new(format!("sys/{rel}")).map_err(|_| err("contains a NUL byte"))
}

/// `process.cwd` as the rootfs creates it: an absolute path.
///
/// # Errors
/// [`RootfsError::Cwd`].
pub fn cwd(path: &Path) -> Result<(), RootfsError> {
    check_cwd(path).map(drop)
}

/// The cwd as a target to create; `None` for the container root itself.
pub(crate) fn check_cwd(cwd: &Path) -> Result<Option<Target>, RootfsError> {
    let err = |reason: &str| RootfsError::Cwd {
        path: cwd.to_path_buf(),
        reason: reason.to_string(),
    };
    let rel = clean(cwd).ok_or_else(|| err("must be an absolute path"))?;
    if rel.is_empty() {
        return Ok(None);
    }
    target(rel).map(Some).map_err(|reason| err(&reason))
}
