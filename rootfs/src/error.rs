//! Errors: [`RootfsError`] (rich, parent side) and [`ApplyError`] (a fixed-size
//! record produced by the fragile child).

use std::io;
use std::path::PathBuf;

use crate::plan::RootfsPlan;

/// Everything that can go wrong in this crate, with the path, config field or
/// system call that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// `root.path` is unusable.
    #[error("root.path {path}: {reason}")]
    RootPath {
        /// The root path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A mount destination is unusable.
    #[error("mounts[{index}].destination {destination:?}: {reason}")]
    MountDestination {
        /// Index in `mounts`.
        index: usize,
        /// The destination as given.
        destination: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A mount option cannot be honoured.
    #[error("mounts[{index}].options: {option:?}: {reason}")]
    MountOption {
        /// Index in `mounts`.
        index: usize,
        /// The offending option.
        option: String,
        /// Why it cannot be honoured.
        reason: String,
    },
    /// Another field of a mount is unusable (`type`, `source`, `uidMappings`...).
    #[error("mounts[{index}].{field}: {reason}")]
    MountField {
        /// Index in `mounts`.
        index: usize,
        /// The OCI field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The container's mount namespace could not be entered to open the bind
    /// mount sources.
    #[error("entering {path} to open the bind mount sources: {error}")]
    JoinMountNamespace {
        /// `/proc/<pid>/ns/mnt`.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A bind mount source cannot be used.
    #[error("mounts[{index}].source {path}: {error}")]
    MountSource {
        /// Index in `mounts`.
        index: usize,
        /// The source, resolved against the bundle.
        path: PathBuf,
        /// The error from looking at it.
        error: io::Error,
    },
    /// `linux.rootfsPropagation` has an unknown value.
    #[error(
        "linux.rootfsPropagation {value:?}: unknown propagation (expected [r]shared, [r]slave, [r]private or [r]unbindable)"
    )]
    RootfsPropagation {
        /// The value as given.
        value: String,
    },
    /// A field that only makes sense in a mount namespace of the container's own.
    #[error("{field}: needs a mount namespace of the container's own (linux.namespaces has none)")]
    NeedsMountNamespace {
        /// The config field.
        field: &'static str,
    },
    /// A `linux.devices` entry is unusable.
    #[error("linux.devices[{index}].{field} {value}: {reason}")]
    Device {
        /// Index in `linux.devices`.
        index: usize,
        /// The entry's field: `path`, `type`, `major` or `minor`.
        field: &'static str,
        /// The field's value as given (a string quoted).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `linux.maskedPaths` entry is unusable.
    #[error("linux.maskedPaths[{index}] {path:?}: {reason}")]
    MaskedPath {
        /// Index in `linux.maskedPaths`.
        index: usize,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `linux.readonlyPaths` entry is unusable.
    #[error("linux.readonlyPaths[{index}] {path:?}: {reason}")]
    ReadonlyPath {
        /// Index in `linux.readonlyPaths`.
        index: usize,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `process.cwd` is unusable.
    #[error("process.cwd {path:?}: {reason}")]
    Cwd {
        /// The cwd as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `linux.sysctl` entry is unusable.
    #[error("linux.sysctl[{key:?}]: {reason}")]
    Sysctl {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host file needed at prepare time could not be read or examined.
    #[error("{path}: {error}")]
    Host {
        /// The host path (e.g. `/proc/self/mountinfo`).
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A host file had unexpected content.
    #[error("{path}: {reason}")]
    HostFormat {
        /// The host path (e.g. `/proc/self/mountinfo`).
        path: PathBuf,
        /// What is unexpected.
        reason: String,
    },
    /// A step of the fragile child failed (see [`ApplyError::describe`]).
    #[error("{what}: {op}: {error}")]
    Apply {
        /// What was being set up, e.g. `mounts[3] (proc on /proc)`.
        what: String,
        /// The operation / system call, e.g. `mount`.
        op: &'static str,
        /// The errno as an I/O error.
        error: io::Error,
        /// The raw record.
        record: ApplyError,
    },
}

impl RootfsError {
    /// The JSON path of the config field the error is about (`mounts[2].destination`,
    /// `linux.devices[0].major`, `linux.sysctl["net.ipv4.ip_forward"]`), or `None` for
    /// errors about the host or the child. The message of every error the
    /// [`validate`](crate::validate) checks return starts with it.
    pub fn field(&self) -> Option<String> {
        use RootfsError as E;
        Some(match self {
            E::RootPath { .. } => "root.path".to_owned(),
            E::MountDestination { index, .. } => format!("mounts[{index}].destination"),
            E::MountOption { index, .. } => format!("mounts[{index}].options"),
            E::MountField { index, field, .. } => format!("mounts[{index}].{field}"),
            E::MountSource { index, .. } => format!("mounts[{index}].source"),
            E::RootfsPropagation { .. } => "linux.rootfsPropagation".to_owned(),
            E::NeedsMountNamespace { field } => (*field).to_owned(),
            E::Device { index, field, .. } => format!("linux.devices[{index}].{field}"),
            E::MaskedPath { index, .. } => format!("linux.maskedPaths[{index}]"),
            E::ReadonlyPath { index, .. } => format!("linux.readonlyPaths[{index}]"),
            E::Cwd { .. } => "process.cwd".to_owned(),
            E::Sysctl { key, .. } => format!("linux.sysctl[{key:?}]"),
            E::JoinMountNamespace { .. }
            | E::Host { .. }
            | E::HostFormat { .. }
            | E::Apply { .. } => return None,
        })
    }
}

macro_rules! steps {
    ($( $(#[$doc:meta])* $name:ident = $val:literal => $op:literal, )*) => {
        /// What the fragile child was doing when it failed.
        ///
        /// The meaning of [`ApplyError::index`] depends on the step: see
        /// [`Step::index_kind`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum Step {
            $( $(#[$doc])* $name = $val, )*
        }

        impl Step {
            /// The step for a raw byte (as sent in [`ApplyError::to_bytes`]).
            pub fn from_u8(v: u8) -> Option<Step> {
                match v {
                    $( $val => Some(Step::$name), )*
                    _ => None,
                }
            }

            /// Short name of the operation, e.g. `"mount"`.
            pub fn op(self) -> &'static str {
                match self {
                    $( Step::$name => $op, )*
                }
            }
        }
    };
}

steps! {
    /// Changing the propagation of `/` before anything else (index 0).
    Propagation = 1 => "set propagation of /",
    /// Making the parent mount of the rootfs private (index 0).
    ParentPrivate = 2 => "make parent mount of the rootfs private",
    /// Bind-mounting the rootfs onto itself (index 0).
    BindRoot = 3 => "bind rootfs onto itself",
    /// Opening the rootfs (or the new `/`) directory (index 0).
    OpenRoot = 4 => "open root directory",
    /// Resolving a mount destination inside the rootfs (index: mount).
    ResolveTarget = 5 => "resolve destination inside rootfs",
    /// Creating a missing directory of a destination (index: mount).
    Mkdir = 6 => "mkdir",
    /// Creating the empty file a file bind mount lands on (index: mount).
    CreateFile = 7 => "create mount point file",
    /// The destination resolved to the rootfs itself or into procfs (index: mount).
    CheckTarget = 8 => "destination resolves to the container root or inside procfs",
    /// The mount itself (index: mount).
    Mount = 9 => "mount",
    /// The remount that applies flags after a bind or a delayed read-only (index: mount).
    Remount = 10 => "remount",
    /// A propagation option of a mount (index: mount).
    SetPropagation = 11 => "set propagation",
    /// Recursive attributes (`rro`, ...) with `mount_setattr` (index: mount).
    SetAttr = 12 => "mount_setattr",
    /// Copying the original directory into a `tmpcopyup` tmpfs (index: mount).
    CopyUp = 13 => "tmpcopyup",
    /// Restoring the mode of the directory a tmpfs covers (index: mount).
    Chmod = 14 => "chmod mount root",
    /// Finding the own cgroup in `/proc/self/cgroup` (index: cgroup, see [`Step::index_kind`]).
    CgroupPath = 15 => "find own cgroup in /proc/self/cgroup",
    /// Resolving / creating a cgroup hierarchy directory (index: cgroup).
    CgroupResolve = 16 => "resolve cgroup hierarchy directory",
    /// Mounting a cgroup hierarchy (index: cgroup).
    CgroupMount = 17 => "mount cgroup hierarchy",
    /// Remounting a cgroup hierarchy with the mount's flags (index: cgroup).
    CgroupRemount = 18 => "remount cgroup hierarchy",
    /// Symlink for a co-mounted hierarchy (index: cgroup).
    CgroupSymlink = 19 => "symlink co-mounted cgroup hierarchy",
    /// Resolving / creating the parent directory of a device (index: device).
    DeviceResolve = 20 => "resolve device parent directory",
    /// Removing what was at a device path (index: device).
    DeviceUnlink = 21 => "remove existing entry",
    /// Creating a device node (index: device).
    Mknod = 22 => "mknod",
    /// Owner of a device node (index: device).
    DeviceOwner = 23 => "chown",
    /// Bind-mounting the host device instead of mknod (index: device).
    BindDevice = 24 => "bind host device",
    /// A `/dev` symlink (index: symlink).
    Symlink = 25 => "symlink",
    /// `pivot_root(".", ".")` (index 0).
    PivotRoot = 26 => "pivot_root",
    /// Detaching the old root after pivot_root (index 0).
    UnmountOldRoot = 27 => "detach old root",
    /// `MS_MOVE` of the rootfs onto `/` + `chroot` (no_pivot, index 0).
    MoveRoot = 28 => "move rootfs to / and chroot",
    /// `chdir` / `fchdir` around the root switch (index 0).
    Chdir = 29 => "chdir",
    /// Applying `rootfsPropagation` to the new `/` (index 0).
    RootPropagation = 30 => "set propagation of new root",
    /// Binding the console (index 0).
    Console = 31 => "bind console",
    /// Resolving a masked path (index: masked path).
    MaskResolve = 32 => "resolve masked path",
    /// `/dev/null` in the container is missing or not the null device (index: masked path).
    MaskDevNull = 33 => "open and verify /dev/null",
    /// Masking (index: masked path).
    Mask = 34 => "mask",
    /// Resolving a read-only path (index: read-only path).
    ReadonlyResolve = 35 => "resolve read-only path",
    /// Bind-mounting a read-only path onto itself (index: read-only path).
    ReadonlyPath = 36 => "bind onto itself",
    /// Remounting a read-only path read-only (index: read-only path).
    ReadonlyRemount = 37 => "remount read-only",
    /// Opening a sysctl file (index: sysctl).
    SysctlOpen = 38 => "open /proc/sys file",
    /// Writing a sysctl (index: sysctl).
    Sysctl = 39 => "write",
    /// The delayed read-only remount of a `/dev` mount (index: mount).
    DevReadonly = 40 => "remount /dev read-only",
    /// Remounting `/` read-only for `root.readonly` (index 0).
    RootReadonly = 41 => "remount / read-only",
    /// Creating the missing directories of `process.cwd` inside the rootfs (index 0).
    Cwd = 42 => "create directory",
    /// The destination of a `proc` mount is a symlink or not a directory (index: mount).
    ProcNotDir = 43 => "filesystem \"proc\" must be mounted on ordinary directory",
    /// The destination of a `sysfs` mount is a symlink or not a directory (index: mount).
    SysfsNotDir = 44 => "filesystem \"sysfs\" must be mounted on ordinary directory",
    /// Hiding a procfs or sysfs of the runtime's view outside the rootfs before `MS_MOVE`
    /// (no_pivot; index: the plan's list of them).
    HideOutside = 45 => "detach or cover procfs/sysfs outside the rootfs",
}

/// What [`ApplyError::index`] refers to for a given [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Nothing (index 0).
    None,
    /// `mounts[index]`.
    Mount,
    /// A cgroup sub-mount: `index >> 8` is the mount, `index & 0xff` the
    /// hierarchy (or symlink) number within it.
    Cgroup,
    /// The plan's device list (defaults first, then `linux.devices`).
    Device,
    /// The plan's `/dev` symlink list.
    Symlink,
    /// `linux.maskedPaths[index]`.
    Masked,
    /// `linux.readonlyPaths[index]`.
    Readonly,
    /// The plan's sysctl list (sorted by key).
    Sysctl,
}

impl Step {
    /// What the index of an [`ApplyError`] with this step refers to.
    pub fn index_kind(self) -> IndexKind {
        use Step::*;
        match self {
            Propagation | ParentPrivate | BindRoot | OpenRoot | PivotRoot | UnmountOldRoot
            | MoveRoot | Chdir | RootPropagation | Console | RootReadonly | Cwd | HideOutside => {
                IndexKind::None
            }
            ResolveTarget | Mkdir | CreateFile | CheckTarget | Mount | Remount | SetPropagation
            | SetAttr | CopyUp | Chmod | DevReadonly | ProcNotDir | SysfsNotDir => IndexKind::Mount,
            CgroupPath | CgroupResolve | CgroupMount | CgroupRemount | CgroupSymlink => {
                IndexKind::Cgroup
            }
            DeviceResolve | DeviceUnlink | Mknod | DeviceOwner | BindDevice => IndexKind::Device,
            Symlink => IndexKind::Symlink,
            MaskResolve | MaskDevNull | Mask => IndexKind::Masked,
            ReadonlyResolve | ReadonlyPath | ReadonlyRemount => IndexKind::Readonly,
            SysctlOpen | Sysctl => IndexKind::Sysctl,
        }
    }
}

/// A failure of the fragile child: which [`Step`], which item of the plan
/// (`index`, see [`Step::index_kind`]) and the raw `errno`.
///
/// It is `Copy` and fits in 12 bytes so the child can send it to the parent
/// over a pipe without allocating:
///
/// ```
/// use berth_rootfs::{ApplyError, Step};
/// let e = ApplyError { step: Step::Mount, index: 3, errno: libc::EPERM };
/// let bytes = e.to_bytes();
/// assert_eq!(ApplyError::from_bytes(&bytes), Some(e));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyError {
    /// What was being done.
    pub step: Step,
    /// Which mount / device / path (see [`Step::index_kind`]), or 0.
    pub index: u32,
    /// The raw `errno`.
    pub errno: i32,
}

impl ApplyError {
    pub(crate) fn new(step: Step, index: usize, errno: i32) -> ApplyError {
        ApplyError {
            step,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            errno,
        }
    }

    /// Encode as `[step, 0, 0, 0, index (LE u32), errno (LE i32)]`.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        let idx = self.index.to_le_bytes();
        let err = self.errno.to_le_bytes();
        out[0] = self.step as u8;
        out[4..8].copy_from_slice(&idx);
        out[8..12].copy_from_slice(&err);
        out
    }

    /// Decode what [`ApplyError::to_bytes`] produced; `None` for an unknown
    /// step or non-zero padding.
    pub fn from_bytes(bytes: &[u8; 12]) -> Option<ApplyError> {
        let step = Step::from_u8(bytes[0])?;
        if bytes[1..4] != [0, 0, 0] {
            return None;
        }
        let index = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let errno = i32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        Some(ApplyError { step, index, errno })
    }

    /// Turn the record into a rich error naming what failed, using the plan
    /// that produced it, e.g.
    /// `mounts[3] (proc on /proc): mount: Operation not permitted (os error 1)`.
    ///
    /// ```no_run
    /// # fn f(plan: &berth_rootfs::RootfsPlan, e: berth_rootfs::ApplyError) {
    /// let rich = e.describe(plan);
    /// eprintln!("container setup failed: {rich}");
    /// # }
    /// ```
    pub fn describe(&self, plan: &RootfsPlan) -> RootfsError {
        RootfsError::Apply {
            what: plan.describe_item(self.step, self.index),
            op: self.step.op(),
            error: io::Error::from_raw_os_error(self.errno),
            record: *self,
        }
    }
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (index {}): {}",
            self.step.op(),
            self.index,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for ApplyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_for_every_step() {
        for v in 0..=255u8 {
            let Some(step) = Step::from_u8(v) else {
                continue;
            };
            assert_eq!(step as u8, v);
            assert!(!step.op().is_empty());
            let e = ApplyError {
                step,
                index: 0xdead_beef,
                errno: -7,
            };
            assert_eq!(ApplyError::from_bytes(&e.to_bytes()), Some(e));
        }
        assert_eq!(Step::from_u8(0), None);
        assert_eq!(Step::from_u8(46), None);
    }

    #[test]
    fn from_bytes_rejects_garbage() {
        let mut b = ApplyError {
            step: Step::Mount,
            index: 1,
            errno: 1,
        }
        .to_bytes();
        b[2] = 1;
        assert_eq!(ApplyError::from_bytes(&b), None);
        assert_eq!(ApplyError::from_bytes(&[0; 12]), None);
        assert_eq!(ApplyError::from_bytes(&[200; 12]), None);
    }

    #[test]
    fn layout_is_stable() {
        let e = ApplyError {
            step: Step::Mount,
            index: 3,
            errno: libc::EPERM,
        };
        assert_eq!(e.to_bytes(), [9, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn display_of_raw_record() {
        let e = ApplyError {
            step: Step::Mknod,
            index: 2,
            errno: libc::EPERM,
        };
        assert_eq!(
            e.to_string(),
            "mknod (index 2): Operation not permitted (os error 1)"
        );
    }
}
