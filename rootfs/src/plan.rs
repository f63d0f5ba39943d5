//! Parent side: turning the OCI configuration into a [`RootfsPlan`].

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, c_ulong};
use oci_spec::runtime::{LinuxDevice, Mount};

use crate::error::{IndexKind, RootfsError, Step};
use crate::mountinfo::{self, Hierarchy, HostCgroups};
use crate::validate;

/// Inputs of [`RootfsPlan::prepare`], borrowed from the OCI configuration.
///
/// Build it with [`new`](Self::new) (the rootfs and the bundle; everything else empty or
/// off, a mount namespace of the container's own) and the setters, one per field:
///
/// ```no_run
/// use std::path::Path;
/// let mounts = oci_spec::runtime::get_default_mounts();
/// let masked = ["/proc/kcore".to_string()];
/// let opts = berth_rootfs::RootfsOptions::new(Path::new("/run/bundle/rootfs"), Path::new("/run/bundle"))
///     .readonly(true)
///     .mounts(&mounts)
///     .masked_paths(&masked)
///     .new_cgroup_ns(true);
/// let plan = berth_rootfs::RootfsPlan::prepare(&opts)?;
/// # Ok::<(), berth_rootfs::RootfsError>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub struct RootfsOptions<'a> {
    /// Absolute host path of `root.path` (already resolved against the bundle).
    pub rootfs: &'a Path,
    /// Bundle directory: relative bind-mount sources are resolved against it.
    pub bundle: &'a Path,
    /// `root.readonly`.
    pub readonly: bool,
    /// `mounts`, in configuration order.
    pub mounts: &'a [Mount],
    /// `linux.rootfsPropagation`.
    pub rootfs_propagation: Option<&'a str>,
    /// `linux.devices` (the default devices are added by the plan).
    pub devices: &'a [LinuxDevice],
    /// `linux.maskedPaths`.
    pub masked_paths: &'a [String],
    /// `linux.readonlyPaths`.
    pub readonly_paths: &'a [String],
    /// `linux.sysctl`.
    pub sysctl: &'a HashMap<String, String>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (e.g. on a ramfs root).
    pub no_pivot: bool,
    /// The container gets a new user namespace: devices are bind-mounted from
    /// the host instead of created with `mknod`.
    pub new_user_ns: bool,
    /// The container gets a new cgroup namespace: a `cgroup` mount shows fresh
    /// cgroup filesystems instead of bind mounts of the host's directories.
    pub new_cgroup_ns: bool,
    /// The container has a mount namespace of its own (a new one, or one joined by path).
    /// Without one (the spec: it then shares the runtime's) the mounts are made in the
    /// runtime's namespace, beneath a bind of the rootfs onto itself that a `delete` can
    /// detach whole: the propagation of the runtime's `/` is left as it is, and the
    /// container enters its root with `chroot` (pivot_root or MS_MOVE would move the
    /// runtime's own root).
    pub own_mount_ns: bool,
    /// `process.cwd` (an absolute container path): created inside the rootfs
    /// (mode 0755, like `mkdir -p`) after the mounts, so that a cwd below a
    /// tmpfs mount lands in the tmpfs. `None`: nothing to create.
    pub cwd: Option<&'a Path>,
}

/// The `linux.sysctl` of options that set none.
static NO_SYSCTL: std::sync::LazyLock<HashMap<String, String>> =
    std::sync::LazyLock::new(HashMap::new);

macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty, )*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $name: $ty) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}

impl<'a> RootfsOptions<'a> {
    /// Options for the rootfs at `rootfs` (absolute, already resolved against the bundle)
    /// of the bundle `bundle`: writable, no mounts, devices, masked or read-only paths or
    /// sysctls, default propagation, `pivot_root`, a mount namespace of the container's
    /// own, no new user or cgroup namespace, no cwd to create.
    pub fn new(rootfs: &'a Path, bundle: &'a Path) -> Self {
        RootfsOptions {
            rootfs,
            bundle,
            readonly: false,
            mounts: &[],
            rootfs_propagation: None,
            devices: &[],
            masked_paths: &[],
            readonly_paths: &[],
            sysctl: &NO_SYSCTL,
            no_pivot: false,
            own_mount_ns: true,
            new_user_ns: false,
            new_cgroup_ns: false,
            cwd: None,
        }
    }

    setters! {
        /// Sets [`readonly`](Self::readonly) (`root.readonly`).
        readonly: bool,
        /// Sets [`mounts`](Self::mounts).
        mounts: &'a [Mount],
        /// Sets [`rootfs_propagation`](Self::rootfs_propagation).
        rootfs_propagation: Option<&'a str>,
        /// Sets [`devices`](Self::devices).
        devices: &'a [LinuxDevice],
        /// Sets [`masked_paths`](Self::masked_paths).
        masked_paths: &'a [String],
        /// Sets [`readonly_paths`](Self::readonly_paths).
        readonly_paths: &'a [String],
        /// Sets [`sysctl`](Self::sysctl).
        sysctl: &'a HashMap<String, String>,
        /// Sets [`no_pivot`](Self::no_pivot).
        no_pivot: bool,
        /// Sets [`own_mount_ns`](Self::own_mount_ns).
        own_mount_ns: bool,
        /// Sets [`new_user_ns`](Self::new_user_ns).
        new_user_ns: bool,
        /// Sets [`new_cgroup_ns`](Self::new_cgroup_ns).
        new_cgroup_ns: bool,
        /// Sets [`cwd`](Self::cwd).
        cwd: Option<&'a Path>,
    }
}

/// A path inside the container, pre-cleaned for the child.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Relative, cleaned path (`dev/pts`), never empty.
    pub rel: CString,
    /// Absolute form for messages (`/dev/pts`).
    pub display: String,
}

/// A directory entry to create inside the container: a parent directory and
/// a leaf name.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Parent directory, `None` for the root itself.
    pub parent: Option<Target>,
    /// Leaf name.
    pub leaf: CString,
    /// Absolute form for messages.
    pub display: String,
}

#[derive(Debug, Clone)]
pub(crate) enum MountKind {
    Bind {
        recursive: bool,
        source_is_dir: bool,
    },
    Tmpfs,
    Sysfs,
    Cgroup(CgroupMount),
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct CgroupMount {
    /// Sub-mounts (hybrid/v1 hosts): hierarchy index and target.
    pub subs: Vec<(usize, Target)>,
    /// Symlinks for co-mounted controllers: (leaf in the mount, hierarchy dir).
    pub links: Vec<(CString, CString)>,
    /// Pure cgroup v2 host: the hierarchy mounted directly at the destination.
    pub unified: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct MountPlan {
    pub kind: MountKind,
    /// Type for messages (`bind` for bind mounts).
    pub typ: String,
    /// Host source for messages (bind mounts only).
    pub source_display: Option<String>,
    pub target: Target,
    pub source: Option<CString>,
    pub fstype: Option<CString>,
    /// Requested flags, without `MS_BIND`/`MS_REC`.
    pub flags: c_ulong,
    pub data: Option<CString>,
    pub propagation: Vec<c_ulong>,
    /// `mount_setattr` set/clear bits, applied recursively.
    pub rec_attr: Option<(u64, u64)>,
    pub copyup: bool,
    /// tmpfs: give the mount root the mode of the directory it covers.
    pub keep_mode: bool,
    /// `/dev` mounted read-only: the read-only remount happens in `finish`.
    pub defer_ro: bool,
    /// The destination may lie inside procfs (`/proc` itself or an lxcfs file).
    pub proc_allowed: bool,
    /// `proc` and `sysfs` mounts: the destination split into parent and
    /// leaf; the leaf must be an ordinary directory (not a symlink), runc's
    /// CVE-2019-19921 hardening.
    pub ordinary_dir: Option<Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct DevicePlan {
    pub entry: Entry,
    pub host_path: CString,
    pub mode: libc::mode_t,
    pub rdev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// Index in `linux.devices`, `None` for a default device.
    pub config_index: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct SymlinkPlan {
    pub entry: Entry,
    pub target: CString,
    /// Remove whatever non-directory is there first (`/dev/ptmx`).
    pub replace: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SysctlPlan {
    pub key: String,
    /// `sys/<key with . replaced by />`, relative to the container's `/proc` (the fragile
    /// child opens it under the verified procfs root as is).
    pub path: CString,
    pub value: Vec<u8>,
}

/// Everything the fragile child needs to set up the container's root
/// filesystem, prepared in the parent.
///
/// Build it with [`RootfsPlan::prepare`] before `clone(2)`; in the child call
/// [`mount_all`](RootfsPlan::mount_all), then (after the hooks)
/// [`pivot`](RootfsPlan::pivot), optionally
/// [`mount_console_fd`](RootfsPlan::mount_console_fd), then
/// [`finish`](RootfsPlan::finish). Those four never allocate.
#[derive(Debug)]
pub struct RootfsPlan {
    pub(crate) rootfs: CString,
    pub(crate) rootfs_display: PathBuf,
    pub(crate) root_propagation: c_ulong,
    pub(crate) parent_private: Option<CString>,
    pub(crate) new_root_propagation: Option<c_ulong>,
    pub(crate) mounts: Vec<MountPlan>,
    pub(crate) hierarchies: Vec<Hierarchy>,
    pub(crate) setup_dev: bool,
    pub(crate) devices: Vec<DevicePlan>,
    pub(crate) symlinks: Vec<SymlinkPlan>,
    pub(crate) masked: Vec<Target>,
    pub(crate) readonly_paths: Vec<Target>,
    pub(crate) sysctl: Vec<SysctlPlan>,
    pub(crate) readonly_root: bool,
    pub(crate) no_pivot: bool,
    /// With no_pivot: the procfs and sysfs mounts of the runtime's view outside the rootfs
    /// (topmost only), which MS_MOVE would leave in the container's mount namespace. A fully
    /// visible procfs there lets a nested user namespace mount a fresh one (the kernel's
    /// mnt_too_revealing check); pivot_root detaches the old root, MS_MOVE doesn't.
    pub(crate) hide_outside: Vec<CString>,
    pub(crate) own_mount_ns: bool,
    pub(crate) new_user_ns: bool,
    pub(crate) new_cgroup_ns: bool,
    pub(crate) console: Entry,
    pub(crate) dev_null: Target,
    /// `process.cwd`, created at the end of `mount_all` (`None` for `/` or
    /// when not asked for).
    pub(crate) cwd: Option<Target>,
    /// Directory fd of the rootfs (before pivot) or of `/` (after), opened
    /// by the child.
    pub(crate) root_fd: AtomicI32,
    /// Bind mounts in order: their index in `mounts` and the `O_PATH` fd of
    /// their source the runtime may hand the child
    /// ([`set_bind_source`](RootfsPlan::set_bind_source)), else -1.
    pub(crate) bind_sources: Vec<(usize, AtomicI32)>,
}

/// Destinations inside `/proc` that may be mounted over (files emulated by
/// lxcfs and similar).
const PROC_ALLOWED: &[&str] = &[
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "proc/loadavg",
    "proc/slabinfo",
    "proc/net/dev",
    "proc/sys/kernel/ns_last_pid",
    "proc/sys/crypto/fips_enabled",
];

/// The default devices every container gets: (name, major, minor).
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Lexically clean an absolute container path into its relative form
/// (`/a/./b/../c/` -> `a/c`); `..` stops at `/`. `None` if not absolute.
pub(crate) fn clean(path: &Path) -> Option<Vec<u8>> {
    if !path.is_absolute() {
        return None;
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n.as_bytes()),
        }
    }
    Some(parts.join(&b'/'))
}

pub(crate) fn target(rel: Vec<u8>) -> Result<Target, String> {
    if rel.is_empty() {
        return Err("must not be the container root".into());
    }
    let display = format!("/{}", String::from_utf8_lossy(&rel));
    let rel = CString::new(rel).map_err(|_| "contains a NUL byte".to_string())?;
    Ok(Target { rel, display })
}

pub(crate) fn entry(rel: &[u8]) -> Result<Entry, String> {
    let (parent, leaf) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (Some(target(rel[..i].to_vec())?), &rel[i + 1..]),
        None => (None, rel),
    };
    if leaf.is_empty() {
        return Err("must not be the container root".into());
    }
    Ok(Entry {
        parent,
        leaf: CString::new(leaf).map_err(|_| "contains a NUL byte".to_string())?,
        display: format!("/{}", String::from_utf8_lossy(rel)),
    })
}

fn cstring(s: impl Into<Vec<u8>>) -> Option<CString> {
    CString::new(s).ok()
}

struct HostInfo {
    mounts: Vec<mountinfo::MountInfo>,
    cgroups: Option<Result<HostCgroups, String>>,
}

impl HostInfo {
    fn load() -> Result<HostInfo, RootfsError> {
        let text = berth_sys::fs::read_virtual(MOUNTINFO)
            .map(String::into_bytes)
            .map_err(|error| RootfsError::Host {
                path: MOUNTINFO.into(),
                error,
            })?;
        let mounts = mountinfo::parse(&text).map_err(|reason| RootfsError::HostFormat {
            path: MOUNTINFO.into(),
            reason,
        })?;
        Ok(HostInfo {
            mounts,
            cgroups: None,
        })
    }

    fn cgroups(&mut self) -> &Result<HostCgroups, String> {
        let mounts = &self.mounts;
        self.cgroups
            .get_or_insert_with(|| mountinfo::host_cgroups(mounts))
    }
}

impl RootfsPlan {
    /// Validate the configuration and precompute every path, flag and string
    /// the child needs.
    ///
    /// Reads `/proc/self/mountinfo` (to find the mount holding the rootfs and,
    /// if there is a `cgroup` mount, the host's cgroup hierarchies) and looks
    /// at bind-mount sources. Errors name the offending config field.
    ///
    /// ```no_run
    /// # use std::path::Path;
    /// let mounts: Vec<oci_spec::runtime::Mount> = oci_spec::runtime::get_default_mounts();
    /// let masked = ["/proc/kcore".to_string()];
    /// let readonly = ["/proc/sys".to_string()];
    /// let opts = berth_rootfs::RootfsOptions::new(Path::new("/run/bundle/rootfs"), Path::new("/run/bundle"))
    ///     .readonly(true)
    ///     .mounts(&mounts)
    ///     .rootfs_propagation(Some("rslave"))
    ///     .masked_paths(&masked)
    ///     .readonly_paths(&readonly)
    ///     .new_cgroup_ns(true)
    ///     .cwd(Some(Path::new("/home/app")));
    /// let plan = berth_rootfs::RootfsPlan::prepare(&opts)?;
    /// # Ok::<(), berth_rootfs::RootfsError>(())
    /// ```
    pub fn prepare(opts: &RootfsOptions<'_>) -> Result<RootfsPlan, RootfsError> {
        let root_err = |reason: String| RootfsError::RootPath {
            path: opts.rootfs.to_path_buf(),
            reason,
        };
        if !opts.rootfs.is_absolute() {
            return Err(root_err("must be an absolute path".into()));
        }
        let rootfs = std::fs::canonicalize(opts.rootfs).map_err(|e| root_err(e.to_string()))?;
        if !rootfs.is_dir() {
            return Err(root_err("is not a directory".into()));
        }
        let rootfs_c = CString::new(rootfs.as_os_str().as_bytes())
            .map_err(|_| root_err("contains a NUL byte".into()))?;

        // Propagation of "/" first, and of the new root after the pivot.
        let (root_propagation, new_root_propagation) = match opts.rootfs_propagation {
            None => (libc::MS_SLAVE | libc::MS_REC, None),
            Some(v) => {
                let flag = validate::check_propagation(v)?;
                let after = if flag & libc::MS_PRIVATE != 0 {
                    None
                } else {
                    Some(flag)
                };
                // An unbindable "/" could not be bound onto itself (EINVAL): the tree is made
                // a slave first, the new root unbindable after the pivot.
                let before = if flag & libc::MS_UNBINDABLE != 0 {
                    libc::MS_SLAVE | (flag & libc::MS_REC)
                } else {
                    flag
                };
                (before, after)
            }
        };

        if !opts.own_mount_ns && opts.rootfs_propagation.is_some() {
            // It would change the propagation of the runtime's own mounts.
            return Err(RootfsError::NeedsMountNamespace {
                field: "linux.rootfsPropagation",
            });
        }
        let mut host = HostInfo::load()?;
        let parent_private = if !opts.own_mount_ns {
            None
        } else {
            let parent = mountinfo::containing_mount(&host.mounts, rootfs.as_os_str().as_bytes())
                .ok_or_else(|| RootfsError::HostFormat {
                path: MOUNTINFO.into(),
                reason: format!("no mount contains {}", rootfs.display()),
            })?;
            // Will the parent mount still be shared after the propagation
            // change of "/"? Then it must be made private so that pivot_root
            // works and the rootfs bind does not propagate out.
            let shared_after = if root_propagation & libc::MS_REC != 0 || parent.mount_point == b"/"
            {
                root_propagation & libc::MS_SHARED != 0
            } else {
                parent.is_shared()
            };
            if shared_after {
                Some(CString::new(parent.mount_point.clone()).map_err(|_| {
                    RootfsError::HostFormat {
                        path: MOUNTINFO.into(),
                        reason: "NUL in a mount point".into(),
                    }
                })?)
            } else {
                None
            }
        };

        let hide_outside = if opts.no_pivot && opts.own_mount_ns {
            mountinfo::kernel_fs_outside(&host.mounts, rootfs.as_os_str().as_bytes())
        } else {
            Vec::new()
        };

        let mut plan_hierarchies: Vec<Hierarchy> = Vec::new();
        let mut mounts = Vec::with_capacity(opts.mounts.len());
        for (index, m) in opts.mounts.iter().enumerate() {
            mounts.push(prepare_mount(
                opts,
                index,
                m,
                &mut host,
                &mut plan_hierarchies,
            )?);
        }

        let setup_dev = !mounts
            .iter()
            .any(|m| matches!(m.kind, MountKind::Bind { .. }) && m.target.rel.as_bytes() == b"dev");

        let devices = prepare_devices(opts.devices, setup_dev)?;
        let mut symlinks = Vec::new();
        if setup_dev {
            let mut links: Vec<(&str, &str, bool)> = vec![
                ("dev/fd", "/proc/self/fd", false),
                ("dev/stdin", "/proc/self/fd/0", false),
                ("dev/stdout", "/proc/self/fd/1", false),
                ("dev/stderr", "/proc/self/fd/2", false),
            ];
            if Path::new("/proc/kcore").exists() {
                links.push(("dev/core", "/proc/kcore", false));
            }
            let has_devpts = mounts
                .iter()
                .any(|m| m.typ == "devpts" && m.target.rel.as_bytes() == b"dev/pts");
            if has_devpts {
                links.push(("dev/ptmx", "pts/ptmx", true));
            }
            for (path, to, replace) in links {
                symlinks.push(SymlinkPlan {
                    entry: entry(path.as_bytes()).map_err(&root_err)?,
                    target: cstring(to).ok_or_else(|| root_err("NUL".into()))?,
                    replace,
                });
            }
        }

        let masked = validate::check_masked_paths(opts.masked_paths)?;
        let readonly_paths = validate::check_readonly_paths(opts.readonly_paths)?;
        let sysctl = prepare_sysctl(opts.sysctl)?;

        let console = entry(b"dev/console").map_err(root_err)?;
        let bind_sources = mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.kind, MountKind::Bind { .. }))
            .map(|(i, _)| (i, AtomicI32::new(-1)))
            .collect();
        let dev_null = target(b"dev/null".to_vec()).map_err(root_err)?;
        let cwd = match opts.cwd {
            Some(p) => validate::check_cwd(p)?,
            None => None,
        };

        Ok(RootfsPlan {
            rootfs: rootfs_c,
            rootfs_display: rootfs,
            root_propagation,
            parent_private,
            new_root_propagation,
            mounts,
            hierarchies: plan_hierarchies,
            setup_dev,
            devices,
            symlinks,
            masked,
            readonly_paths,
            sysctl,
            readonly_root: opts.readonly,
            no_pivot: opts.no_pivot,
            hide_outside,
            own_mount_ns: opts.own_mount_ns,
            new_user_ns: opts.new_user_ns,
            new_cgroup_ns: opts.new_cgroup_ns,
            console,
            dev_null,
            cwd,
            root_fd: AtomicI32::new(-1),
            bind_sources,
        })
    }

    /// How many bind mounts the plan has: the fds
    /// [`open_bind_sources`](Self::open_bind_sources) returns.
    pub fn bind_source_count(&self) -> usize {
        self.bind_sources.len()
    }

    /// Opens the source of every bind mount (in `mounts` order) `O_PATH` in
    /// the mount namespace of process `pid`, the container's, with the
    /// caller's credentials, as runc does for a container with a user
    /// namespace: its mapped root may not be able to reach a source the
    /// runtime can (a directory of mode 0700, say). The child mounts from
    /// these fds ([`set_bind_source`](Self::set_bind_source)); the kernel
    /// only binds from mounts of the binder's own namespace, so they are
    /// opened from a thread that joins it (`unshare(CLONE_FS)`, `setns`) and
    /// ends. Where the sources lead stays the config's business, as with a
    /// path: only the mount target is confined to the rootfs.
    ///
    /// Parent side (allocates, spawns a thread); needs the privilege to
    /// enter that namespace (root).
    ///
    /// # Errors
    /// [`RootfsError::JoinMountNamespace`] if the namespace cannot be
    /// entered, [`RootfsError::MountSource`] naming a source that cannot be
    /// opened.
    pub fn open_bind_sources(&self, pid: libc::pid_t) -> Result<Vec<OwnedFd>, RootfsError> {
        let sources: Vec<(usize, PathBuf)> = self
            .bind_sources
            .iter()
            .filter_map(|(i, _)| {
                let m = self.mounts.get(*i)?;
                let src = m.source.as_deref()?;
                Some((*i, PathBuf::from(OsStr::from_bytes(src.to_bytes()))))
            })
            .collect();
        let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
        let join_err = {
            let ns_path = ns_path.clone();
            move |error| RootfsError::JoinMountNamespace {
                path: ns_path.clone(),
                error,
            }
        };
        let worker = std::thread::spawn(move || -> Result<Vec<OwnedFd>, RootfsError> {
            // The thread's own root and cwd: setns(CLONE_NEWNS) refuses a
            // shared fs_struct. The thread ends right after, taking them along.
            // SAFETY: unshare only reads its integer argument.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(join_err(io::Error::last_os_error()));
            }
            let ns = std::fs::File::open(&ns_path).map_err(&join_err)?;
            // SAFETY: setns only reads its two integer arguments.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                return Err(join_err(io::Error::last_os_error()));
            }
            let mut fds = Vec::with_capacity(sources.len());
            for (index, path) in sources {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH)
                    .open(&path)
                    .map_err(|error| RootfsError::MountSource { index, path, error })?;
                fds.push(OwnedFd::from(f));
            }
            Ok(fds)
        });
        worker.join().unwrap_or_else(|_| {
            Err(RootfsError::JoinMountNamespace {
                path: PathBuf::from(format!("/proc/{pid}/ns/mnt")),
                error: io::Error::other("the thread opening the bind sources panicked"),
            })
        })
    }

    /// Hands the plan the fd of the `k`-th bind mount's source (the `k`-th of
    /// [`open_bind_sources`](Self::open_bind_sources), received by the
    /// child): [`mount_all`](Self::mount_all) binds from it instead of the
    /// source path, and closes it. False (and the fd closed) if `k` is out of
    /// range.
    ///
    /// # Fragile child
    /// No allocation, no locks, no panics.
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn set_bind_source(&self, k: usize, fd: c_int) -> bool {
        match self.bind_sources.get(k) {
            Some((_, slot)) => {
                crate::sys::close(slot.swap(fd, Ordering::Relaxed));
                true
            }
            None => {
                crate::sys::close(fd);
                false
            }
        }
    }

    /// The fd [`set_bind_source`](Self::set_bind_source) gave mount `index`,
    /// taken out of the plan (-1 if none).
    pub(crate) fn take_bind_source(&self, index: usize) -> c_int {
        self.bind_sources
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(-1, |(_, slot)| slot.swap(-1, Ordering::Relaxed))
    }

    /// The canonical host path of the rootfs.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs_display
    }

    /// Whether `/dev` entries (default and configured devices, `/dev`
    /// symlinks) are created: true unless `/dev` is bind-mounted.
    pub fn sets_up_dev(&self) -> bool {
        self.setup_dev
    }

    /// Human-readable name of the item an [`ApplyError`](crate::ApplyError)
    /// refers to.
    pub(crate) fn describe_item(&self, step: Step, index: u32) -> String {
        let i = index as usize;
        let mount = |i: usize| match self.mounts.get(i) {
            Some(m) => match &m.source_display {
                Some(src) => format!("mounts[{i}] (bind of {src} on {})", m.target.display),
                None => format!("mounts[{i}] ({} on {})", m.typ, m.target.display),
            },
            None => format!("mounts[{i}] (not in plan)"),
        };
        match step.index_kind() {
            IndexKind::None => match step {
                Step::Console => format!("console {}", self.console.display),
                Step::Cwd => match &self.cwd {
                    Some(t) => format!("process.cwd {}", t.display),
                    None => "process.cwd".into(),
                },
                _ => format!("rootfs {}", self.rootfs_display.display()),
            },
            IndexKind::Mount => mount(i),
            IndexKind::Cgroup => {
                let (mi, sub) = ((index >> 8) as usize, (index & 0xff) as usize);
                let base = mount(mi);
                let Some(MountKind::Cgroup(c)) = self.mounts.get(mi).map(|m| &m.kind) else {
                    return format!("{base}, cgroup item {sub}");
                };
                if step == Step::CgroupSymlink {
                    return match c.links.get(sub) {
                        Some((leaf, to)) => format!(
                            "{base}, symlink {} -> {}",
                            leaf.to_string_lossy(),
                            to.to_string_lossy()
                        ),
                        None => format!("{base}, cgroup symlink {sub}"),
                    };
                }
                let (hier, at) = match c.unified {
                    Some(h) => (self.hierarchies.get(h), None),
                    None => match c.subs.get(sub) {
                        Some((h, t)) => (self.hierarchies.get(*h), Some(t.display.as_str())),
                        None => (None, None),
                    },
                };
                match (hier, at) {
                    (Some(h), Some(at)) => format!(
                        "{base}, hierarchy {} (host {}) at {at}",
                        h.name,
                        String::from_utf8_lossy(&h.mount_point)
                    ),
                    (Some(h), None) => format!(
                        "{base}, cgroup2 hierarchy (host {})",
                        String::from_utf8_lossy(&h.mount_point)
                    ),
                    _ => format!("{base}, cgroup hierarchy {sub}"),
                }
            }
            IndexKind::Device => match self.devices.get(i) {
                Some(d) => match d.config_index {
                    Some(ci) => format!("linux.devices[{ci}] ({})", d.entry.display),
                    None => format!("default device {}", d.entry.display),
                },
                None => format!("device {i} (not in plan)"),
            },
            IndexKind::Symlink => match self.symlinks.get(i) {
                Some(s) => format!(
                    "symlink {} -> {}",
                    s.entry.display,
                    s.target.to_string_lossy()
                ),
                None => format!("symlink {i} (not in plan)"),
            },
            IndexKind::Masked => match self.masked.get(i) {
                Some(t) => format!("linux.maskedPaths[{i}] ({})", t.display),
                None => format!("linux.maskedPaths[{i}]"),
            },
            IndexKind::Readonly => match self.readonly_paths.get(i) {
                Some(t) => format!("linux.readonlyPaths[{i}] ({})", t.display),
                None => format!("linux.readonlyPaths[{i}]"),
            },
            IndexKind::Sysctl => match self.sysctl.get(i) {
                Some(s) => format!(
                    "linux.sysctl {} (/proc/{})",
                    s.key,
                    s.path.to_string_lossy()
                ),
                None => format!("linux.sysctl entry {i}"),
            },
        }
    }
}

fn prepare_mount(
    opts: &RootfsOptions<'_>,
    index: usize,
    m: &Mount,
    host: &mut HostInfo,
    hierarchies: &mut Vec<Hierarchy>,
) -> Result<MountPlan, RootfsError> {
    let validate::CheckedMount {
        rel,
        target,
        opts: o,
        typ,
        is_bind,
    } = validate::check_mount(index, m)?;
    let field = |field: &'static str, reason: String| RootfsError::MountField {
        index,
        field,
        reason,
    };
    let dest_err = |reason: String| RootfsError::MountDestination {
        index,
        destination: m.destination().clone(),
        reason,
    };
    let raw_opts: &[String] = m.options().as_deref().unwrap_or(&[]);
    let opt_err = |option: &str, reason: &str| RootfsError::MountOption {
        index,
        option: option.to_string(),
        reason: reason.to_string(),
    };
    let data = o
        .data_string()
        .map(|d| CString::new(d).map_err(|_| opt_err("", "contains a NUL byte")))
        .transpose()?;

    // Mounts on or inside /proc are restricted (a bind over /proc/self/... or
    // /proc/sys would defeat masked and read-only paths).
    let mut proc_allowed = false;
    if rel == b"proc" {
        let ok = if is_bind {
            let src = m.source().as_ref().map(|s| opts.bundle.join(s));
            src.and_then(|s| nix::sys::statfs::statfs(&s).ok())
                .is_some_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        } else {
            typ == Some("proc")
        };
        if !ok {
            return Err(dest_err(
                "only a proc filesystem may be mounted on /proc".into(),
            ));
        }
        proc_allowed = true;
    } else if rel.starts_with(b"proc/") {
        if !PROC_ALLOWED.iter().any(|p| p.as_bytes() == rel.as_slice()) {
            return Err(dest_err(
                "mounting inside /proc is not allowed (except lxcfs-style files)".into(),
            ));
        }
        proc_allowed = true;
    }

    let rec_attr = o.has_rec_attr().then_some((o.rec_attr_set, o.rec_attr_clr));
    if rec_attr.is_some() && !crate::sys::has_mount_setattr() {
        let option = raw_opts.iter().find(|o| crate::options::is_rec_attr(o));
        return Err(opt_err(
            option.map_or("", String::as_str),
            "recursive mount attributes need mount_setattr(2) (Linux 5.12+), \
             which this kernel lacks",
        ));
    }
    let defer_ro = rel == b"dev" && o.flags & libc::MS_RDONLY != 0;
    let mut plan = MountPlan {
        kind: MountKind::Other,
        typ: typ.unwrap_or("bind").to_string(),
        source_display: None,
        target,
        source: None,
        fstype: None,
        flags: o.flags,
        data: None,
        propagation: o.propagation.clone(),
        rec_attr,
        copyup: o.tmpcopyup,
        keep_mode: false,
        defer_ro,
        proc_allowed,
        ordinary_dir: None,
    };

    if is_bind {
        // The source is there (checked above); filesystem data words were dropped.
        let src = m
            .source()
            .as_ref()
            .filter(|s| !s.as_os_str().is_empty())
            .ok_or_else(|| field("source", "is required for a bind mount".into()))?;
        let src = opts.bundle.join(src);
        let meta = std::fs::metadata(&src).map_err(|error| RootfsError::MountSource {
            index,
            path: src.clone(),
            error,
        })?;
        plan.kind = MountKind::Bind {
            recursive: o.bind == Some(true),
            source_is_dir: meta.is_dir(),
        };
        plan.typ = "bind".into();
        plan.source = Some(
            CString::new(src.as_os_str().as_bytes())
                .map_err(|_| field("source", "contains a NUL byte".into()))?,
        );
        plan.source_display = Some(src.display().to_string());
        return Ok(plan);
    }

    let typ = typ.unwrap_or_default();
    let fstype = CString::new(typ).map_err(|_| field("type", "contains a NUL byte".into()))?;
    let source = match m.source().as_ref().filter(|s| !s.as_os_str().is_empty()) {
        Some(s) => CString::new(s.as_os_str().as_bytes())
            .map_err(|_| field("source", "contains a NUL byte".into()))?,
        None => fstype.clone(),
    };
    plan.fstype = Some(fstype);
    plan.source = Some(source);
    plan.data = data;

    if matches!(typ, "proc" | "sysfs") {
        plan.ordinary_dir = Some(entry(&rel).map_err(dest_err)?);
    }
    match typ {
        "tmpfs" => {
            plan.kind = MountKind::Tmpfs;
            plan.keep_mode = !o.data.iter().any(|d| d.starts_with("mode="));
        }
        "sysfs" => plan.kind = MountKind::Sysfs,
        "cgroup" => {
            if let Some(d) = o.data.first() {
                return Err(opt_err(d, "is not a valid option for a cgroup mount"));
            }
            let layout = host
                .cgroups()
                .clone()
                .map_err(|reason| RootfsError::HostFormat {
                    path: MOUNTINFO.into(),
                    reason: format!("mounts[{index}] (cgroup): {reason}"),
                })?;
            plan.kind =
                MountKind::Cgroup(cgroup_mount(&rel, layout, hierarchies).map_err(dest_err)?);
        }
        _ => {}
    }
    Ok(plan)
}

fn hierarchy_index(hierarchies: &mut Vec<Hierarchy>, h: Hierarchy) -> usize {
    if let Some(i) = hierarchies.iter().position(|x| *x == h) {
        return i;
    }
    hierarchies.push(h);
    hierarchies.len() - 1
}

fn cgroup_mount(
    rel: &[u8],
    layout: HostCgroups,
    hierarchies: &mut Vec<Hierarchy>,
) -> Result<CgroupMount, String> {
    match layout {
        HostCgroups::Unified(h) => Ok(CgroupMount {
            subs: Vec::new(),
            links: Vec::new(),
            unified: Some(hierarchy_index(hierarchies, h)),
        }),
        HostCgroups::Legacy(list) => {
            if list.len() > 255 {
                return Err("too many cgroup hierarchies".into());
            }
            let mut subs = Vec::new();
            let mut links = Vec::new();
            for h in list {
                let mut sub = rel.to_vec();
                sub.push(b'/');
                sub.extend_from_slice(h.name.as_bytes());
                let t = target(sub)?;
                if h.name.contains(',') {
                    for part in h.name.split(',') {
                        if !part.is_empty() && part != h.name {
                            links.push((
                                CString::new(part).map_err(|_| "NUL in cgroup name")?,
                                CString::new(h.name.as_str()).map_err(|_| "NUL in cgroup name")?,
                            ));
                        }
                    }
                }
                subs.push((hierarchy_index(hierarchies, h), t));
            }
            Ok(CgroupMount {
                subs,
                links,
                unified: None,
            })
        }
    }
}

fn prepare_devices(
    config: &[LinuxDevice],
    setup_dev: bool,
) -> Result<Vec<DevicePlan>, RootfsError> {
    let mut out = Vec::new();
    let checked = validate::check_devices(config)?;
    let mut config_rels: Vec<Vec<u8>> = Vec::with_capacity(checked.len());
    let mut config_plans = Vec::with_capacity(checked.len());
    for (index, (d, c)) in config.iter().zip(checked).enumerate() {
        let perm = d.file_mode().unwrap_or(0o666) & 0o7777;
        config_plans.push(DevicePlan {
            entry: c.entry,
            host_path: c.host_path,
            mode: c.kind | perm,
            rdev: libc::makedev(c.major, c.minor),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            config_index: Some(index),
        });
        config_rels.push(c.rel);
    }
    if !setup_dev {
        return Ok(out);
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let rel = format!("dev/{name}").into_bytes();
        if config_rels.contains(&rel) {
            continue;
        }
        out.push(DevicePlan {
            entry: entry(&rel).map_err(|reason| RootfsError::Device {
                index: 0,
                field: "path",
                value: format!("\"/dev/{name}\""),
                reason,
            })?,
            host_path: CString::new(format!("/dev/{name}")).unwrap_or_default(),
            mode: libc::S_IFCHR | 0o666,
            rdev: libc::makedev(*major, *minor),
            uid: 0,
            gid: 0,
            config_index: None,
        });
    }
    out.extend(config_plans);
    Ok(out)
}

/// Validates `linux.sysctl` and turns each key into the path of its file relative to the
/// container's `/proc` (`net.ipv4.ip_forward` -> `sys/net/ipv4/ip_forward`), sorted by key,
/// so that the fragile child only opens it under the verified procfs root.
fn prepare_sysctl(sysctl: &HashMap<String, String>) -> Result<Vec<SysctlPlan>, RootfsError> {
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let value = &sysctl[key];
        let path = validate::check_sysctl(key, value)?;
        out.push(SysctlPlan {
            key: key.clone(),
            path,
            value: value.as_bytes().to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceType;

    #[test]
    fn clean_paths() {
        let c = |p: &str| clean(Path::new(p)).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(c("/a/./b/../c/").as_deref(), Some("a/c"));
        assert_eq!(c("/../../etc").as_deref(), Some("etc"));
        assert_eq!(c("//dev//pts").as_deref(), Some("dev/pts"));
        assert_eq!(c("/").as_deref(), Some(""));
        assert_eq!(c("relative/path"), None);
    }

    #[test]
    fn entries_split_parent_and_leaf() {
        let e = entry(b"dev/null").unwrap();
        assert_eq!(e.parent.unwrap().rel.as_bytes(), b"dev");
        assert_eq!(e.leaf.as_bytes(), b"null");
        let e = entry(b"top").unwrap();
        assert!(e.parent.is_none());
        assert!(entry(b"").is_err());
    }

    #[test]
    fn sysctl_paths_and_validation() {
        let mut m = HashMap::new();
        m.insert("net.ipv4.ip_forward".to_string(), "1".to_string());
        m.insert("kernel.shmmax".to_string(), "65536".to_string());
        let s = prepare_sysctl(&m).unwrap();
        assert_eq!(s[0].key, "kernel.shmmax");
        assert_eq!(s[0].path.as_bytes(), b"sys/kernel/shmmax");
        assert_eq!(s[1].path.as_bytes(), b"sys/net/ipv4/ip_forward");

        for bad in [
            "kernel..x",
            "../../etc/passwd",
            "kernel/../../x",
            ".kernel",
            "kernel.",
        ] {
            let mut m = HashMap::new();
            m.insert(bad.to_string(), "1".to_string());
            let e = prepare_sysctl(&m).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn devices_defaults_and_overrides() {
        let fuse: LinuxDevice = oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o20600u32)
            .uid(1000u32)
            .gid(1001u32)
            .build()
            .unwrap();
        let null: LinuxDevice = oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o600u32)
            .build()
            .unwrap();
        let d = prepare_devices(&[fuse.clone(), null.clone()], true).unwrap();
        let names: Vec<_> = d.iter().map(|d| d.entry.display.as_str()).collect();
        assert_eq!(
            names,
            [
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/fuse",
                "/dev/null"
            ]
        );
        let f = &d[5];
        assert_eq!(f.mode, libc::S_IFCHR | 0o600);
        assert_eq!(f.rdev, libc::makedev(10, 229));
        assert_eq!((f.uid, f.gid), (1000, 1001));
        assert_eq!(f.config_index, Some(0));
        assert_eq!(d[6].mode, libc::S_IFCHR | 0o600);

        assert!(
            prepare_devices(std::slice::from_ref(&fuse), false)
                .unwrap()
                .is_empty()
        );

        let e = prepare_devices(&[fuse.clone(), fuse.clone()], true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.devices[1]") && e.contains("linux.devices[0]"),
            "{e}"
        );

        let mut all = fuse.clone();
        all.set_typ(LinuxDeviceType::A);
        let e = prepare_devices(&[all], true).unwrap_err().to_string();
        assert!(e.starts_with("linux.devices[0].type \"a\""), "{e}");

        let mut rel = fuse.clone();
        rel.set_path("dev/fuse".into());
        assert!(
            prepare_devices(&[rel], true)
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );

        let mut neg = fuse;
        neg.set_major(-1);
        assert!(
            prepare_devices(&[neg], true)
                .unwrap_err()
                .to_string()
                .contains("major -1")
        );
    }
}
