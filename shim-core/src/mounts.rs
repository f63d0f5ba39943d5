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

use std::os::fd::AsRawFd;
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

/// The most of mount(2)'s data the kernel copies (one page), less the margin containerd
/// keeps for the options it adds.
const DATA_MAX: usize = 4096 - 512;

/// An overlay's `lowerdir=` too long for mount(2)'s one page of data (an image of some 50
/// layers of a snapshotter's long paths): each lower directory opened `O_PATH` and named by
/// its `/proc/self/fd/N` link, which overlayfs resolves at mount time. No `chdir` to a
/// common parent (containerd's way): this process has other threads. The descriptors must
/// stay open until the mount is done.
fn shorten_lowerdirs(data: &str) -> Result<(String, Vec<std::os::fd::OwnedFd>)> {
    let mut fds = Vec::new();
    let mut parts = Vec::new();
    for part in data.split(',') {
        let Some(dirs) = part.strip_prefix("lowerdir=") else {
            parts.push(part.to_owned());
            continue;
        };
        let mut short = Vec::new();
        for dir in dirs.split(':') {
            let fd = nix::fcntl::open(
                dir,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|source| Error::Mount {
                what: format!("open lower directory {dir}"),
                source,
            })?;
            short.push(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            fds.push(fd);
        }
        parts.push(format!("lowerdir={}", short.join(":")));
    }
    Ok((parts.join(","), fds))
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let (flags, mut data) = parse(&m.options);
    let err = |source| Error::Mount {
        what: format!("mount -t {} {} on {}", m.kind, m.source, target.display()),
        source,
    };
    let mut _lower_fds = Vec::new();
    if m.kind == "overlay" && data.len() > DATA_MAX {
        (data, _lower_fds) = shorten_lowerdirs(&data)?;
    }
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

    /// 80 lower layers with snapshotter-like paths: 8 KiB of lowerdir, twice what mount(2)
    /// takes, mounted through their /proc/self/fd links; every layer's file shows.
    #[test]
    fn an_overlay_of_many_long_layers_mounts() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: an_overlay_of_many_long_layers_mounts needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("berth-mounts-{}", std::process::id()));
        let deep = base
            .join("io.containerd.snapshotter.v1.overlayfs")
            .join("snapshots");
        let layers: Vec<String> = (0..80)
            .map(|i| {
                let d = deep.join(format!("{i:04}-{}", "x".repeat(40))).join("fs");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("layer{i}")), "").unwrap();
                d.display().to_string()
            })
            .collect();
        let (upper, work, target) = (base.join("upper"), base.join("work"), base.join("rootfs"));
        for d in [&upper, &work, &target] {
            std::fs::create_dir_all(d).unwrap();
        }
        let lowerdir = format!("lowerdir={}", layers.join(":"));
        assert!(lowerdir.len() > 4096, "{}", lowerdir.len());
        let m = Mount::new(
            "overlay",
            "overlay",
            [
                lowerdir,
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
            ],
        );
        let mounted = mount_all(&[m], &target);
        let seen = (0..80)
            .filter(|i| target.join(format!("layer{i}")).exists())
            .count();
        let _ = unmount_all(&target);
        let _ = std::fs::remove_dir_all(&base);
        mounted.unwrap();
        assert_eq!(seen, 80);
    }
}
