//! `linux.cgroupsPath`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{CgroupError, Result};
use crate::layout::Hierarchy;

/// The parent cgroup of containers whose `linux.cgroupsPath` is empty. It is made by the
/// first such container and removed with the last one
/// ([`crate::CgroupManager::remove`]), so that running a container leaves nothing behind,
/// as with runc. A create that races the removal makes it again. Limits meant for a group
/// of containers belong on a parent of one's own, named in their `linux.cgroupsPath`: that
/// parent is kept.
pub const DEFAULT_PARENT: &str = "berth";

/// Where a container's cgroup is, as `linux.cgroupsPath` says.
///
/// * absolute (`/a/b`): relative to the root of every hierarchy (below its mount point);
/// * relative (`a/b`): relative to the cgroup the calling runtime is in, in each hierarchy
///   (from `/proc/self/cgroup`); on a unified (cgroup v2 only) host, to the parent of
///   that cgroup, as runc does: the runtime's own cgroup has processes, and cgroup v2
///   enables no controller below a cgroup with processes (EBUSY);
/// * empty or absent: `/berth/<container id>`.
///
/// A path resolved in each hierarchy (what a relative path names when the runtime is in
/// different cgroups in different hierarchies) is kept as [`CgroupPath::PerHierarchy`],
/// for the later commands that reopen the cgroup from elsewhere.
///
/// ```
/// use berth_cgroups::CgroupPath;
/// let p = CgroupPath::from_spec(None, "web")?;
/// assert_eq!(p, CgroupPath::Absolute("/berth/web".into()));
/// assert!(CgroupPath::from_spec(Some("/a/../../etc".as_ref()), "web").is_err());
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    /// From the root of each hierarchy.
    Absolute(PathBuf),
    /// From the runtime's own cgroup in each hierarchy.
    Relative(PathBuf),
    /// A cgroup (from the root) per hierarchy, keyed by the labels of
    /// [`crate::CgroupManager::paths`] (`cpu,cpuacct`, `name=systemd`, `cgroup2`...), as
    /// [`crate::CgroupManager::cgroups`] returns them. For reopening an existing cgroup;
    /// nothing is created from it.
    PerHierarchy(BTreeMap<String, PathBuf>),
}

impl CgroupPath {
    /// Interprets `linux.cgroupsPath` for container `id`.
    ///
    /// Rejects `..` components (a path escaping its hierarchy), a path that names the
    /// root itself, systemd's `slice:prefix:name` form, and an id that is not a single
    /// path component.
    pub fn from_spec(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        let given = cgroups_path.map(|p| p.to_string_lossy().into_owned());
        let invalid = |reason| CgroupError::InvalidPath {
            path: given
                .clone()
                .unwrap_or_else(|| format!("(default for id {id:?})")),
            reason,
        };
        let path = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => {
                if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                    return Err(invalid("the container id is not a valid cgroup name"));
                }
                return Ok(Self::Absolute(Path::new("/").join(DEFAULT_PARENT).join(id)));
            }
        };
        let text = path.to_string_lossy();
        if !text.starts_with('/') && text.split(':').count() == 3 {
            return Err(invalid(
                "systemd's slice:prefix:name form needs a systemd cgroup driver, which berth does not have",
            ));
        }
        let mut clean = PathBuf::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => return Err(invalid("\"..\" is not allowed")),
                Component::Prefix(_) => return Err(invalid("not a Unix path")),
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(invalid("names the root cgroup"));
        }
        if path.is_absolute() {
            Ok(Self::Absolute(Path::new("/").join(clean)))
        } else {
            Ok(Self::Relative(clean))
        }
    }

    /// The cgroup (a path inside the hierarchy) this names in the hierarchy labelled
    /// `label`; a relative path starts at `base` ([`crate::Layout::relative_base`]).
    pub(crate) fn cgroup_in(&self, label: &str, base: &Path) -> Result<PathBuf> {
        match self {
            Self::Absolute(p) => Ok(p.clone()),
            Self::Relative(p) => Ok(base.join(p)),
            Self::PerHierarchy(m) => m.get(label).cloned().ok_or(CgroupError::InvalidPath {
                path: label.to_string(),
                reason: "no cgroup is recorded for this hierarchy",
            }),
        }
    }

    /// The directory this names in `h` (labelled `label`), the cgroup, and the number of
    /// trailing components that belong to this path (the directories
    /// [`crate::CgroupManager::create`] may create).
    pub(crate) fn dir_in(
        &self,
        h: &Hierarchy,
        label: &str,
        base: &Path,
    ) -> Result<(PathBuf, PathBuf, usize)> {
        let n = match self {
            Self::Absolute(p) | Self::Relative(p) => p
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count(),
            Self::PerHierarchy(_) => 0,
        };
        let cgroup = self.cgroup_in(label, base)?;
        Ok((h.dir_of(&cgroup), cgroup, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            CgroupPath::from_spec(Some(Path::new("/a/./b/")), "x").unwrap(),
            CgroupPath::Absolute("/a/b".into())
        );
        assert_eq!(
            CgroupPath::from_spec(Some(Path::new("a/b")), "x").unwrap(),
            CgroupPath::Relative("a/b".into())
        );
        assert_eq!(
            CgroupPath::from_spec(Some(Path::new("")), "x").unwrap(),
            CgroupPath::Absolute("/berth/x".into())
        );
        for bad in ["/", "a/../b", "..", "system.slice:berth:x"] {
            let e = CgroupPath::from_spec(Some(Path::new(bad)), "x").unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert!(CgroupPath::from_spec(None, "a/b").is_err());
        assert!(CgroupPath::from_spec(None, "").is_err());
    }

    #[test]
    fn relative_uses_own_cgroup() {
        let h = Hierarchy {
            mount_point: "/sys/fs/cgroup/memory".into(),
            mount_root: "/".into(),
            controllers: vec!["memory".into()],
            name: None,
            own_cgroup: "/runtime".into(),
        };
        let (dir, cg, n) = CgroupPath::Relative("c/d".into())
            .dir_in(&h, "memory", &h.own_cgroup)
            .unwrap();
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/memory/runtime/c/d"));
        assert_eq!(cg, PathBuf::from("/runtime/c/d"));
        assert_eq!(n, 2);
        let (dir, ..) = CgroupPath::Absolute("/c".into())
            .dir_in(&h, "memory", &h.own_cgroup)
            .unwrap();
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/memory/c"));
        let each = CgroupPath::PerHierarchy([("memory".to_string(), "/m/x".into())].into());
        let (dir, _, n) = each.dir_in(&h, "memory", &h.own_cgroup).unwrap();
        assert_eq!((dir, n), (PathBuf::from("/sys/fs/cgroup/memory/m/x"), 0));
        let e = each
            .dir_in(&h, "pids", &h.own_cgroup)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pids"), "{e}");
        // From another base (the parent of the runtime's cgroup on a unified host).
        let (dir, cg, _) = CgroupPath::Relative("c".into())
            .dir_in(&h, "cgroup2", Path::new("/"))
            .unwrap();
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/memory/c"));
        assert_eq!(cg, PathBuf::from("/c"));
    }
}
