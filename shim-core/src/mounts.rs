//! The root filesystem a manager gives as a list of mounts (containerd's `rootfs` of Create:
//! an overlay from its snapshotter, or a bind mount), mounted in order on the bundle's
//! `rootfs`, and everything under it unmounted at delete.
//!
//! ```no_run
//! use berth_shim_core::mounts::{Mount, mount_all, unmount_all};
//! let m = Mount::new("bind", "/srv/images/busybox", ["rbind", "ro"]);
//! mount_all(&[m], "/run/bundles/c1/rootfs".as_ref())?;
//! unmount_all("/run/bundles/c1/rootfs".as_ref())?;
//! # Ok::<(), berth_shim_core::Error>(())
//! ```

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

/// One mount: `mount -t kind -o options source target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The file system type (`overlay`, `bind`, `tmpfs`, ...).
    pub kind: String,
    /// The source.
    pub source: String,
    /// mount(8)-style options: flags (`ro`, `rbind`, `nosuid`, ...) and file-system data
    /// (`lowerdir=...`).
    pub options: Vec<String>,
}

impl Mount {
    /// A mount of `kind` from `source` with `options`.
    pub fn new<S: Into<String>>(
        kind: impl Into<String>,
        source: impl Into<String>,
        options: impl IntoIterator<Item = S>,
    ) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.into_iter().map(Into::into).collect(),
        }
    }
}

/// Splits mount(8) options into flags to set, flags to clear, and the data string.
fn parse(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            _ => {
                data.push(o.as_str());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// Mounts `mounts` on `target` in order (each on top of the previous one); on a failure,
/// unmounts what was mounted and returns the error. `target` must exist.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let (flags, data) = parse(&m.options);
    let err = |source| Error::Mount {
        what: format!("mount -t {} {} on {}", m.kind, m.source, target.display()),
        source,
    };
    let kind = if m.kind == "bind" {
        None
    } else {
        Some(m.kind.as_str())
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, kind, flags, data).map_err(err)?;
    // A bind mount ignores MS_RDONLY (and the other per-mount flags) until remounted.
    if flags.contains(MsFlags::MS_BIND) && flags.intersects(!(MsFlags::MS_BIND | MsFlags::MS_REC)) {
        let again = (flags & !MsFlags::MS_REC) | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, again, None::<&str>).map_err(err)?;
    }
    Ok(())
}

/// Unmounts everything mounted on `target` (lazily, each layer until none is left).
/// Nothing mounted there is not an error.
pub fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..256 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(Error::Mount {
                    what: format!("umount {}", target.display()),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let opts: Vec<String> = ["ro", "lowerdir=/a:/b", "nosuid", "upperdir=/u", "rw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID);
        assert_eq!(data, "lowerdir=/a:/b,upperdir=/u");
    }
}
