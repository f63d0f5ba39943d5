//! Parent-side parsing of `/proc/self/mountinfo`: the mount holding the
//! rootfs (for propagation) and the host's cgroup layout.

use std::ffi::CString;

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// Root of the mount within its filesystem (unescaped).
    pub root: Vec<u8>,
    /// Mount point (unescaped).
    pub mount_point: Vec<u8>,
    /// Optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Super block options.
    pub super_options: String,
}

impl MountInfo {
    pub(crate) fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// Undo the octal escaping (`\040`) of mountinfo path fields.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Parse the whole mountinfo text. Malformed lines are an error naming the line.
pub(crate) fn parse(text: &[u8]) -> Result<Vec<MountInfo>, String> {
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let sep = fields
            .iter()
            .position(|f| *f == b"-")
            .ok_or_else(|| format!("line {}: no \" - \" separator", n + 1))?;
        if sep < 6 || fields.len() < sep + 4 {
            return Err(format!("line {}: too few fields", n + 1));
        }
        let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
        out.push(MountInfo {
            root: unescape(fields[3]),
            mount_point: unescape(fields[4]),
            optional: fields[6..sep].iter().map(|f| text(f)).collect(),
            fstype: text(fields[sep + 1]),
            super_options: text(fields[sep + 3]),
        });
    }
    Ok(out)
}

/// Whether `path` is `mount_point` or below it (component-wise).
fn is_under(path: &[u8], mount_point: &[u8]) -> bool {
    if mount_point == b"/" {
        return path.starts_with(b"/");
    }
    path == mount_point
        || (path.starts_with(mount_point) && path.get(mount_point.len()) == Some(&b'/'))
}

/// The topmost procfs and sysfs mount points of `mounts` that are not inside `rootfs` (one
/// inside another goes with it when that one is detached).
pub(crate) fn kernel_fs_outside(mounts: &[MountInfo], rootfs: &[u8]) -> Vec<CString> {
    let mut points: Vec<&[u8]> = mounts
        .iter()
        .filter(|m| matches!(m.fstype.as_str(), "proc" | "sysfs"))
        .map(|m| m.mount_point.as_slice())
        .filter(|p| !is_under(p, rootfs))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut top: Vec<&[u8]> = Vec::new();
    for p in points {
        if !top.iter().any(|t| is_under(p, t)) {
            top.push(p);
        }
    }
    top.into_iter()
        .filter_map(|p| CString::new(p.to_vec()).ok())
        .collect()
}

/// The mount containing `path` (the longest mount point above it; the last
/// one listed wins for stacked mounts).
pub(crate) fn containing_mount<'a>(mounts: &'a [MountInfo], path: &[u8]) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if is_under(path, &m.mount_point)
            && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len())
        {
            best = Some(m);
        }
    }
    best
}

/// One host cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Directory name under the container's cgroup mount (base name of the
    /// host mount point, e.g. `cpu,cpuacct`, `systemd`, `unified`).
    pub name: String,
    /// `cgroup2` (unified) rather than a v1 hierarchy.
    pub v2: bool,
    /// Data for a fresh `cgroup` mount, e.g. `cpu,cpuacct` or `name=systemd`.
    pub data: Option<CString>,
    /// Host mount point.
    pub mount_point: Vec<u8>,
    /// Root of that mount within the hierarchy.
    pub root: Vec<u8>,
    /// The controller field of this hierarchy in `/proc/self/cgroup`
    /// (empty for cgroup v2).
    pub key: Vec<u8>,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostCgroups {
    /// Pure cgroup v2 (cgroup2 on /sys/fs/cgroup).
    Unified(Hierarchy),
    /// cgroup v1 hierarchies, optionally with a cgroup2 one (hybrid).
    Legacy(Vec<Hierarchy>),
}

/// v1 super options that are not controllers.
const V1_NON_CONTROLLER: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

fn base_name(path: &[u8]) -> String {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    String::from_utf8_lossy(name).into_owned()
}

/// Work out the host cgroup layout from parsed mountinfo.
pub(crate) fn host_cgroups(mounts: &[MountInfo]) -> Result<HostCgroups, String> {
    let unified = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2" && m.mount_point == b"/sys/fs/cgroup");
    let any_v1 = mounts.iter().any(|m| m.fstype == "cgroup");
    if let (Some(m), false) = (unified, any_v1) {
        return Ok(HostCgroups::Unified(Hierarchy {
            name: String::new(),
            v2: true,
            data: None,
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
            key: Vec::new(),
        }));
    }
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in mounts {
        let v2 = match m.fstype.as_str() {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let key = if v2 {
            Vec::new()
        } else {
            let mut controllers: Vec<&str> = Vec::new();
            let mut name: Option<&str> = None;
            for opt in m.super_options.split(',') {
                if let Some(n) = opt.strip_prefix("name=") {
                    name = Some(n);
                } else if !(V1_NON_CONTROLLER.contains(&opt) || opt.contains('=')) {
                    controllers.push(opt);
                }
            }
            let mut key = controllers.join(",");
            if let Some(n) = name {
                if !key.is_empty() {
                    key.push(',');
                }
                key.push_str("name=");
                key.push_str(n);
            }
            if key.is_empty() {
                return Err(format!(
                    "cgroup v1 mount on {} has no controller and no name",
                    String::from_utf8_lossy(&m.mount_point)
                ));
            }
            key.into_bytes()
        };
        // The same hierarchy may be mounted several times: keep the first.
        if out.iter().any(|h| h.v2 == v2 && h.key == key) {
            continue;
        }
        let name = base_name(&m.mount_point);
        if name.is_empty() || name == "." || name == ".." {
            return Err(format!(
                "cgroup mount point {} has no usable base name",
                String::from_utf8_lossy(&m.mount_point)
            ));
        }
        if out.iter().any(|h| h.name == name) {
            continue;
        }
        let data = if v2 {
            None
        } else {
            Some(CString::new(key.clone()).map_err(|_| "NUL in cgroup options".to_string())?)
        };
        out.push(Hierarchy {
            name,
            v2,
            data,
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
            key,
        });
    }
    if out.is_empty() {
        return Err("no cgroup hierarchy is mounted on the host".to_string());
    }
    Ok(HostCgroups::Legacy(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 0:32 /sub /mnt/memory-again rw,relatime - cgroup cgroup rw,memory
60 27 0:40 / /mnt/with\\040space rw,relatime master:3 - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let m = parse(HYBRID.as_bytes()).unwrap();
        assert_eq!(m.len(), 9);
        assert_eq!(m[1].mount_point, b"/");
        assert!(m[1].is_shared());
        assert!(!m[0].is_shared());
        assert_eq!(m[8].mount_point, b"/mnt/with space");
        assert_eq!(m[8].optional, vec!["master:3"]);
        assert_eq!(m[3].super_options, "rw,cpu,cpuacct");
        assert_eq!(m[7].root, b"/sub");
        assert!(parse(b"1 2 3\n").is_err());
        assert!(parse(b"1 2 0:1 / /x rw - tmpfs\n").is_err());
    }

    #[test]
    fn containing_mount_is_longest_prefix() {
        let m = parse(HYBRID.as_bytes()).unwrap();
        let c = |p: &str| {
            containing_mount(&m, p.as_bytes())
                .unwrap()
                .mount_point
                .clone()
        };
        assert_eq!(c("/var/lib/x"), b"/");
        assert_eq!(c("/mnt/with space/rootfs"), b"/mnt/with space");
        assert_eq!(c("/mnt/with spaces"), b"/");
        assert_eq!(c("/sys/fs/cgroup/memory"), b"/sys/fs/cgroup/memory");
    }

    #[test]
    fn hybrid_layout() {
        let m = parse(HYBRID.as_bytes()).unwrap();
        let HostCgroups::Legacy(h) = host_cgroups(&m).unwrap() else {
            panic!("expected legacy layout")
        };
        let names: Vec<_> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "systemd", "unified"]);
        assert_eq!(h[0].key, b"cpu,cpuacct");
        assert_eq!(h[0].data.as_deref(), Some(c"cpu,cpuacct"));
        assert_eq!(h[2].key, b"name=systemd");
        assert_eq!(h[2].data.as_deref(), Some(c"name=systemd"));
        assert!(h[3].v2);
        assert_eq!(h[3].key, b"");
        assert_eq!(h[3].data, None);
        assert_eq!(h[1].mount_point, b"/sys/fs/cgroup/memory");
    }

    #[test]
    fn unified_layout() {
        let text = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
";
        let m = parse(text.as_bytes()).unwrap();
        let HostCgroups::Unified(h) = host_cgroups(&m).unwrap() else {
            panic!("expected unified layout")
        };
        assert!(h.v2);
        assert_eq!(h.mount_point, b"/sys/fs/cgroup");
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let m = parse(b"27 1 254:0 / / rw - ext4 /dev/vda rw\n").unwrap();
        assert!(host_cgroups(&m).unwrap_err().contains("no cgroup"));
    }
}
