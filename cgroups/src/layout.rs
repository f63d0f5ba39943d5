//! The host's cgroup layout, read from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Result};

/// Which cgroup versions the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies (no cgroup2 mount).
    Legacy,
    /// v1 hierarchies for (most) controllers and a cgroup2 mount beside them
    /// (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// A single cgroup2 hierarchy.
    Unified,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy shown at the mount point (mountinfo's
    /// "root" field, `/` unless bind-mounted or inside a cgroup namespace).
    pub mount_root: PathBuf,
    /// Its controllers. For v1: the controllers in the mount options (none for a
    /// named hierarchy such as `name=systemd`). For v2: the controllers listed in the
    /// mount point's `cgroup.controllers`.
    pub controllers: Vec<String>,
    /// The name of a named v1 hierarchy: `systemd` for a mount with the option
    /// `name=systemd`. `None` for other hierarchies.
    pub name: Option<String>,
    /// The cgroup the calling process is in, in this hierarchy (from
    /// `/proc/self/cgroup`), `/` when unknown.
    pub own_cgroup: PathBuf,
}

impl Hierarchy {
    /// The directory of `cgroup` (a path inside the hierarchy, as in
    /// `/proc/self/cgroup`) below the mount point.
    pub fn dir_of(&self, cgroup: &Path) -> PathBuf {
        let rel = cgroup.strip_prefix(&self.mount_root).unwrap_or(cgroup);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.mount_point.join(rel)
    }

    /// Whether this hierarchy has `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup layout of a host: the v1 hierarchies with controllers, the named v1
/// hierarchies without any (`name=systemd`), and the cgroup2 mount.
///
/// ```no_run
/// let layout = berth_cgroups::Layout::detect()?;
/// println!("{:?}, v1 controllers: {:?}", layout.mode(), layout.v1_controllers());
/// for h in layout.named_hierarchies() {
///     println!("name={} at {}", h.name.as_deref().unwrap_or(""), h.mount_point.display());
/// }
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub(crate) v1: Vec<Hierarchy>,
    pub(crate) named: Vec<Hierarchy>,
    pub(crate) unified: Option<Hierarchy>,
}

/// v1 controllers this crate knows (and creates cgroups in when mounted).
pub(crate) const KNOWN_V1: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "hugetlb",
    "rdma",
    "perf_event",
    "misc",
];

impl Layout {
    /// Detects the calling process's layout from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` (no fixed paths are assumed).
    pub fn detect() -> Result<Self> {
        let mountinfo = read_proc("/proc/self/mountinfo")?;
        let cgroup = read_proc("/proc/self/cgroup")?;
        Self::from_proc(&mountinfo, &cgroup)
    }

    /// Builds a layout from the texts of a mountinfo and a `/proc/<pid>/cgroup`
    /// file. The cgroup2 controllers are read from the mount point's
    /// `cgroup.controllers` (empty if unreadable).
    pub fn from_proc(mountinfo: &str, proc_cgroup: &str) -> Result<Self> {
        let own = parse_proc_cgroup(proc_cgroup)?;
        let own_in = |find: &dyn Fn(&ProcCgroup) -> bool| {
            own.iter()
                .find(|l| find(l))
                .map(|l| l.path.clone())
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut named: Vec<Hierarchy> = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || CgroupError::Parse {
                path: PathBuf::from("/proc/self/mountinfo"),
                line: line.to_string(),
            };
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-").ok_or_else(bad)?;
            if sep < 6 || fields.len() < sep + 4 {
                return Err(bad());
            }
            let fstype = fields[sep + 1];
            let root = PathBuf::from(unescape(fields[3]));
            let mount_point = PathBuf::from(unescape(fields[4]));
            match fstype {
                "cgroup2" if unified.is_none() => {
                    let controllers = fs::read_to_string(mount_point.join("cgroup.controllers"))
                        .map(|s| s.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default();
                    unified = Some(Hierarchy {
                        mount_point,
                        mount_root: root,
                        controllers,
                        name: None,
                        own_cgroup: own_in(&|l| l.id == 0),
                    });
                }
                "cgroup" => {
                    let options = fields[sep + 3].split(',');
                    let controllers: Vec<String> = options
                        .clone()
                        .filter(|o| KNOWN_V1.contains(o))
                        .map(str::to_string)
                        .collect();
                    let name = options
                        .filter_map(|o| o.strip_prefix("name="))
                        .find(|n| !n.is_empty())
                        .map(str::to_string);
                    if controllers.is_empty() {
                        // A named hierarchy without controllers: kept apart, so that no
                        // controller is ever looked up in it. One entry per name (the
                        // same hierarchy may be mounted twice).
                        let Some(name) = name else { continue };
                        if named.iter().any(|h| h.name.as_ref() == Some(&name)) {
                            continue;
                        }
                        let own_cgroup = own_in(&|l| l.name.as_ref() == Some(&name));
                        named.push(Hierarchy {
                            mount_point,
                            mount_root: root,
                            controllers,
                            name: Some(name),
                            own_cgroup,
                        });
                        continue;
                    }
                    if v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    let own_cgroup = own_in(&|l| {
                        l.id != 0 && {
                            let mut a: Vec<&str> =
                                l.controllers.iter().map(String::as_str).collect();
                            let mut b: Vec<&str> = controllers.iter().map(String::as_str).collect();
                            a.sort_unstable();
                            b.sort_unstable();
                            a == b
                        }
                    });
                    v1.push(Hierarchy {
                        mount_point,
                        mount_root: root,
                        controllers,
                        name,
                        own_cgroup,
                    });
                }
                _ => {}
            }
        }
        if v1.is_empty() && unified.is_none() {
            return Err(CgroupError::NoHierarchy {
                reason: "no cgroup mount with controllers and no cgroup2 mount in mountinfo".into(),
            });
        }
        Ok(Self { v1, named, unified })
    }

    /// A pure cgroup v2 layout whose hierarchy is (or pretends to be) mounted at
    /// `mount_point`. Its controllers are read from `mount_point/cgroup.controllers`;
    /// relative cgroup paths are taken relative to the mount point.
    ///
    /// Use it for a non-standard mount, for a real cgroup2 mount of a hybrid
    /// host used on its own, or for a fake tree in a temporary directory (tests).
    ///
    /// ```no_run
    /// let layout = berth_cgroups::Layout::unified_at("/sys/fs/cgroup")?;
    /// assert_eq!(layout.mode(), berth_cgroups::CgroupMode::Unified);
    /// # Ok::<(), berth_cgroups::CgroupError>(())
    /// ```
    pub fn unified_at(mount_point: impl Into<PathBuf>) -> Result<Self> {
        let mount_point = mount_point.into();
        let file = mount_point.join("cgroup.controllers");
        let text = berth_sys::fs::read_virtual(&file).map_err(|source| CgroupError::Read {
            path: file.clone(),
            source,
        })?;
        Ok(Self {
            v1: Vec::new(),
            named: Vec::new(),
            unified: Some(Hierarchy {
                mount_point,
                mount_root: PathBuf::from("/"),
                controllers: text.split_whitespace().map(str::to_string).collect(),
                name: None,
                own_cgroup: PathBuf::from("/"),
            }),
        })
    }

    /// The host's mode. Named v1 hierarchies do not count: a host with only cgroup2
    /// and a `name=systemd` mount is [`CgroupMode::Unified`].
    pub fn mode(&self) -> CgroupMode {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (false, false) => CgroupMode::Legacy,
            (false, true) => CgroupMode::Hybrid,
            _ => CgroupMode::Unified,
        }
    }

    /// The cgroup of `h` a relative `linux.cgroupsPath` starts from: the calling
    /// process's own cgroup there, or on a unified host its parent (as runc: the own
    /// cgroup has processes, and cgroup v2 enables no controller below one that has).
    ///
    /// ```
    /// let l = berth_cgroups::Layout::from_proc(
    ///     "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    ///     "0::/init.scope\n",
    /// )?;
    /// assert_eq!(l.relative_base(l.unified().unwrap()), std::path::Path::new("/"));
    /// # Ok::<(), berth_cgroups::CgroupError>(())
    /// ```
    pub fn relative_base(&self, h: &Hierarchy) -> PathBuf {
        if self.v1.is_empty() {
            h.own_cgroup
                .parent()
                .unwrap_or(Path::new("/"))
                .to_path_buf()
        } else {
            h.own_cgroup.clone()
        }
    }

    /// The v1 hierarchies with controllers.
    pub fn v1_hierarchies(&self) -> &[Hierarchy] {
        &self.v1
    }

    /// The named v1 hierarchies without controllers, such as `name=systemd`: they only
    /// group processes (systemd tracks its services there). A container's cgroup has a
    /// directory in each of them on a legacy or hybrid host (see [`crate::CgroupManager`]).
    pub fn named_hierarchies(&self) -> &[Hierarchy] {
        &self.named
    }

    /// The cgroup2 hierarchy, if one is mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.unified.as_ref()
    }

    /// Every hierarchy a container's cgroup has a directory in: the v1 ones with
    /// controllers, the named ones, then cgroup2.
    ///
    /// ```no_run
    /// let layout = berth_cgroups::Layout::detect()?;
    /// let mine = std::path::Path::new("/berth/web");
    /// let left = layout.hierarchies().filter(|h| h.dir_of(mine).is_dir()).count();
    /// println!("{left} hierarchies still have {}", mine.display());
    /// # Ok::<(), berth_cgroups::CgroupError>(())
    /// ```
    pub fn hierarchies(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1.iter().chain(&self.named).chain(&self.unified)
    }

    /// Every controller mounted as v1.
    pub fn v1_controllers(&self) -> Vec<&str> {
        self.v1
            .iter()
            .flat_map(|h| h.controllers.iter().map(String::as_str))
            .collect()
    }

    /// Where `controller` lives: a v1 hierarchy, or the cgroup2 one when no
    /// v1 hierarchy has it and the cgroup2 root offers it.
    pub(crate) fn locate(&self, controller: &str) -> Option<Location> {
        if let Some(i) = self.v1.iter().position(|h| h.has(controller)) {
            return Some(Location::V1(i));
        }
        match &self.unified {
            Some(h) if h.has(controller) => Some(Location::V2),
            _ => None,
        }
    }
}

/// Where a controller lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    /// Index into [`Layout::v1`].
    V1(usize),
    /// The cgroup2 hierarchy.
    V2,
}

fn read_proc(path: &str) -> Result<String> {
    berth_sys::fs::read_virtual(path).map_err(|source| CgroupError::ReadProc {
        path: PathBuf::from(path),
        source,
    })
}

/// One line of `/proc/<pid>/cgroup`: `id:controllers:path`, where the controllers field
/// may hold a `name=<name>` (`9:name=systemd:/a`, `3:cpu,name=x:/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// The hierarchy id (0 for cgroup2).
    pub(crate) id: u32,
    /// The controllers, without the `name=`.
    pub(crate) controllers: Vec<String>,
    /// The hierarchy's name, without `name=`.
    pub(crate) name: Option<String>,
    /// The cgroup.
    pub(crate) path: PathBuf,
}

/// Parses `/proc/<pid>/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || CgroupError::Parse {
            path: PathBuf::from("/proc/self/cgroup"),
            line: line.to_string(),
        };
        let mut parts = line.splitn(3, ':');
        let id = parts
            .next()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let ctrls = parts.next().ok_or_else(bad)?;
        let path = parts.next().ok_or_else(bad)?;
        let name = ctrls
            .split(',')
            .filter_map(|c| c.strip_prefix("name="))
            .find(|n| !n.is_empty())
            .map(str::to_string);
        let controllers = ctrls
            .split(',')
            .filter(|c| !c.is_empty() && !c.starts_with("name="))
            .map(str::to_string)
            .collect();
        out.push(ProcCgroup {
            id,
            controllers,
            name,
            path: PathBuf::from(path),
        });
    }
    Ok(out)
}

/// Decodes mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'\\', Some(oct)) = (b[i], b.get(i + 1..i + 4)) {
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC: &str = "9:name=systemd:/s/t\n4:memory:/a/b\n2:cpuacct:/\n1:cpu:/\n0::/x\n";

    #[test]
    fn hybrid_from_mountinfo() {
        let l = Layout::from_proc(HYBRID, PROC).unwrap();
        assert_eq!(l.mode(), CgroupMode::Hybrid);
        assert_eq!(l.v1_controllers(), vec!["cpu", "cpuacct", "memory"]);
        let mem = &l.v1[l.v1.iter().position(|h| h.has("memory")).unwrap()];
        assert_eq!(mem.own_cgroup, PathBuf::from("/a/b"));
        assert_eq!(
            mem.dir_of(Path::new("/a/b/c")),
            PathBuf::from("/sys/fs/cgroup/memory/a/b/c")
        );
        assert_eq!(l.unified().unwrap().own_cgroup, PathBuf::from("/x"));
        assert_eq!(l.locate("memory"), Some(Location::V1(2)));
        assert_eq!(l.locate("devices"), None);
        // The named hierarchy is recorded apart, with its own cgroup, and changes no
        // controller lookup.
        assert_eq!(
            l.named_hierarchies(),
            [Hierarchy {
                mount_point: "/sys/fs/cgroup/systemd".into(),
                mount_root: "/".into(),
                controllers: vec![],
                name: Some("systemd".into()),
                own_cgroup: "/s/t".into(),
            }]
        );
        assert!(l.v1.iter().all(|h| h.name.is_none()));
        assert_eq!(l.locate("systemd"), None);
        assert_eq!(l.locate("name=systemd"), None);
    }

    #[test]
    fn named_hierarchies() {
        let m = "\
1 0 0:1 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
2 0 0:1 /sub /mnt/again rw - cgroup cgroup rw,xattr,name=systemd
3 0 0:2 / /mnt/track rw - cgroup cgroup rw,none,name=track
4 0 0:3 / /mnt/cpu rw - cgroup cgroup rw,cpu,name=mixed
5 0 0:4 / /mnt/odd rw - cgroup cgroup rw,name=
6 0 0:5 / /mnt/debug rw - cgroup cgroup rw,debug
";
        let p = "5:cpu,name=mixed:/m\n3:name=track:/t\n1:name=systemd:/user.slice/x\n";
        let l = Layout::from_proc(m, p).unwrap();
        let named: Vec<(&str, &str, &str)> = l
            .named_hierarchies()
            .iter()
            .map(|h| {
                (
                    h.name.as_deref().unwrap(),
                    h.mount_point.to_str().unwrap(),
                    h.own_cgroup.to_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                ("systemd", "/sys/fs/cgroup/systemd", "/user.slice/x"),
                ("track", "/mnt/track", "/t"),
            ]
        );
        // A hierarchy with a controller and a name is a controller hierarchy.
        assert_eq!(l.v1_controllers(), ["cpu"]);
        assert_eq!(l.v1[0].name.as_deref(), Some("mixed"));
        assert_eq!(l.v1[0].own_cgroup, PathBuf::from("/m"));
        assert_eq!(l.mode(), CgroupMode::Legacy);
        let h = &l.named_hierarchies()[0];
        assert_eq!(
            h.dir_of(&h.own_cgroup.join("c")),
            PathBuf::from("/sys/fs/cgroup/systemd/user.slice/x/c")
        );
        // Not in the process's cgroup file: its root.
        let l = Layout::from_proc(m, "5:cpu,name=mixed:/m\n").unwrap();
        assert_eq!(l.named_hierarchies()[0].own_cgroup, PathBuf::from("/"));
    }

    #[test]
    fn named_hierarchies_alone_are_no_layout() {
        // Beside cgroup2 only: a unified host.
        let m = "\
1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
2 1 0:2 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        let l = Layout::from_proc(m, "1:name=systemd:/\n0::/\n").unwrap();
        assert_eq!(l.mode(), CgroupMode::Unified);
        assert_eq!(l.named_hierarchies().len(), 1);
        // Nothing but a named hierarchy: nothing to manage.
        let e =
            Layout::from_proc("2 1 0:2 / /s rw - cgroup cgroup rw,name=systemd\n", "").unwrap_err();
        assert!(matches!(e, CgroupError::NoHierarchy { .. }), "{e}");
    }

    #[test]
    fn proc_cgroup_lines() {
        let v =
            parse_proc_cgroup("12:name=systemd:/a:b\n3:cpu,cpuacct:/c\n4:cpu,name=x:/d\n0::/\n")
                .unwrap();
        assert_eq!(
            v[0],
            ProcCgroup {
                id: 12,
                controllers: vec![],
                name: Some("systemd".into()),
                path: "/a:b".into(),
            }
        );
        assert_eq!(v[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(v[1].name, None);
        assert_eq!(v[2].controllers, ["cpu"]);
        assert_eq!(v[2].name.as_deref(), Some("x"));
        assert_eq!((v[3].id, v[3].controllers.len()), (0, 0));
        assert!(parse_proc_cgroup("x:name=systemd:/\n").is_err());
    }

    #[test]
    fn unified_and_legacy_modes() {
        let u = "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_proc(u, "0::/\n").unwrap().mode(),
            CgroupMode::Unified
        );
        let l = "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let l = Layout::from_proc(l, "1:cpuacct,cpu:/k\n").unwrap();
        assert_eq!(l.mode(), CgroupMode::Legacy);
        assert_eq!(l.v1[0].own_cgroup, PathBuf::from("/k"));
        assert!(Layout::from_proc("", "").is_err());
        assert!(Layout::from_proc("garbage\n", "").is_err());
        assert!(parse_proc_cgroup("x:y\n").is_err());
    }

    #[test]
    fn mount_root_is_stripped_and_escapes_decoded() {
        let m = "1 0 0:1 /sub /mnt/a\\040b rw - cgroup cgroup rw,pids\n";
        let l = Layout::from_proc(m, "1:pids:/sub/c\n").unwrap();
        assert_eq!(l.v1[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(
            l.v1[0].dir_of(Path::new("/sub/c")),
            PathBuf::from("/mnt/a b/c")
        );
    }
}
