//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::child::ChildError;
use crate::kind::NamespaceKind;

/// Everything that can go wrong in this crate, on the parent side.
///
/// Every message names the configuration field, path or syscall that failed.
/// Errors of the fragile child arrive as a [`ChildError`] and are turned into
/// one of the `Setns`, `Unshare`, `TimeOffsets`, `Hostname` or `Domainname`
/// variants by [`ChildError::describe`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// Two entries of `linux.namespaces` have the same type.
    #[error(
        "linux.namespaces[{index}].type {:?} appears twice (first in linux.namespaces[{first}])",
        kind.config_name()
    )]
    Duplicate {
        /// Index of the second entry.
        index: usize,
        /// Index of the first entry of that type.
        first: usize,
        /// The repeated type.
        kind: NamespaceKind,
    },

    /// A namespace path is not absolute.
    #[error("linux.namespaces[{index}].path {path:?} must be absolute")]
    RelativePath {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The offending path.
        path: PathBuf,
    },

    /// A namespace path could not be opened.
    #[error("linux.namespaces[{index}].path {}: cannot open: {source}", path.display())]
    OpenPath {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// Why `open(2)` failed.
        source: io::Error,
    },

    /// A namespace path is not a regular file (namespace files are), so it was not opened.
    #[error("linux.namespaces[{index}].path {} is not a namespace file (it is {what})", path.display())]
    NotAFile {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. `"a directory"`.
        what: &'static str,
    },

    /// A namespace path opened fine but `ioctl(NS_GET_NSTYPE)` refused it.
    #[error(
        "linux.namespaces[{index}].path {} is not a namespace file (ioctl NS_GET_NSTYPE: {source})",
        path.display()
    )]
    NotANamespace {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// Why the ioctl failed.
        source: io::Error,
    },

    /// A namespace path is a namespace of another type than its entry says.
    #[error(
        "linux.namespaces[{index}].path {} is a {} namespace, not {expected}",
        path.display(),
        type_name(*actual)
    )]
    WrongType {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// The type the entry asks for.
        expected: NamespaceKind,
        /// The `CLONE_NEW*` value `NS_GET_NSTYPE` returned.
        actual: libc::c_int,
    },

    /// The running kernel has no namespaces of that type.
    #[error(
        "linux.namespaces[{index}]: the kernel does not support {kind} namespaces (/proc/self/ns/{kind} does not exist)"
    )]
    Unsupported {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The unsupported type.
        kind: NamespaceKind,
    },

    /// `linux.uidMappings` or `linux.gidMappings` is set but no new user namespace is created.
    #[error(
        "{field} is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)"
    )]
    MappingsWithoutUserNamespace {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
    },

    /// A new user namespace is created but a mapping list is missing or empty.
    #[error("{field} is required when a new user namespace is created (linux.namespaces[{index}])")]
    UserNamespaceWithoutMappings {
        /// Index of the user entry in `linux.namespaces`.
        index: usize,
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
    },

    /// A mapping has size 0.
    #[error("{field}[{index}].size must be greater than 0")]
    EmptyMapping {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
        /// Index of the mapping.
        index: usize,
    },

    /// A mapping runs past the highest mappable id (4294967294: the kernel never maps
    /// id 4294967295).
    #[error(
        "{field}[{index}].{which} {start} with size {size} ends past 4294967294, the highest id that can be mapped"
    )]
    MappingOverflow {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
        /// Index of the mapping.
        index: usize,
        /// `"containerID"` or `"hostID"`.
        which: &'static str,
        /// The first id of the range.
        start: u32,
        /// The size of the range.
        size: u32,
    },

    /// Two mappings overlap on the container side or on the host side.
    #[error(
        "{field}[{index}].{which} range {start}-{end} overlaps {field}[{other}] ({other_start}-{other_end})"
    )]
    OverlappingMappings {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
        /// Index of the later mapping.
        index: usize,
        /// Index of the earlier mapping it overlaps.
        other: usize,
        /// `"containerID"` or `"hostID"`.
        which: &'static str,
        /// First id of the later range.
        start: u32,
        /// Last id of the later range.
        end: u32,
        /// First id of the earlier range.
        other_start: u32,
        /// Last id of the earlier range.
        other_end: u32,
    },

    /// More mappings than the kernel accepts in one map.
    #[error("{field} has {count} entries, the kernel accepts at most {max}")]
    TooManyMappings {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
        /// Number of entries given.
        count: usize,
        /// The kernel's limit.
        max: usize,
    },

    /// The map text does not fit in the single write the kernel accepts.
    #[error(
        "{field} makes a map text of {len} bytes, the kernel accepts fewer than {limit} in one write"
    )]
    MappingsTooLong {
        /// `"linux.uidMappings"` or `"linux.gidMappings"`.
        field: &'static str,
        /// Length of the text.
        len: usize,
        /// The page size.
        limit: usize,
    },

    /// `linux.timeOffsets` is set but no new time namespace is created.
    #[error(
        "linux.timeOffsets is set but no new time namespace is created (linux.namespaces needs a \"time\" entry without a path)"
    )]
    TimeOffsetsWithoutTimeNamespace,

    /// A `linux.timeOffsets` key is not a clock the kernel can offset.
    #[error(
        "linux.timeOffsets[{key:?}] is not a clock with a namespace offset (expected \"monotonic\" or \"boottime\")"
    )]
    UnknownTimeOffsetClock {
        /// The key.
        key: String,
    },

    /// A time offset's `nanosecs` is one second or more.
    #[error(
        "linux.timeOffsets[{key:?}].nanosecs {nanosecs} is out of range (must be below 1000000000)"
    )]
    TimeOffsetNanosecs {
        /// The clock.
        key: String,
        /// The value given.
        nanosecs: u32,
    },

    /// A time offset's `secs` is beyond what the kernel can ever accept.
    #[error(
        "linux.timeOffsets[{key:?}].secs {secs} is out of range (must be within -4611686018..=4611686018)"
    )]
    TimeOffsetSecs {
        /// The clock.
        key: String,
        /// The value given.
        secs: i64,
    },

    /// `write_id_mappings` got a pid that cannot name a process.
    #[error("write_id_mappings: invalid pid {pid}")]
    InvalidPid {
        /// The pid given.
        pid: libc::pid_t,
    },

    /// Writing `/proc/<pid>/uid_map`, `gid_map` or `setgroups` failed.
    #[error("writing {}: {source}", path.display())]
    WriteIdMap {
        /// The proc file.
        path: PathBuf,
        /// Why the write failed.
        source: io::Error,
    },

    /// An id map the kernel refuses to an unprivileged caller needed `newuidmap` or
    /// `newgidmap`, which is missing or failed.
    #[error("writing {}: {reason}", path.display())]
    IdMapTool {
        /// The proc file (`/proc/<pid>/uid_map` or `gid_map`).
        path: PathBuf,
        /// `newuidmap` or `newgidmap`.
        tool: &'static str,
        /// What went wrong (the tool's exit status and stderr).
        reason: String,
    },

    /// The child's `setns(2)` into a namespace given by path failed.
    #[error(
        "setns(linux.namespaces[{index}].path {}, {}): {source}",
        path.display(),
        kind.flag_name()
    )]
    Setns {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// The namespace type.
        kind: NamespaceKind,
        /// The child's errno.
        source: io::Error,
    },

    /// The child's `unshare(2)` failed.
    #[error("unshare({flags}): {source}")]
    Unshare {
        /// The flags passed, e.g. `"CLONE_NEWNS|CLONE_NEWPID"`.
        flags: String,
        /// The child's errno.
        source: io::Error,
    },

    /// The child could not write `linux.timeOffsets` to `/proc/self/timens_offsets`.
    #[error("writing linux.timeOffsets to /proc/self/timens_offsets: {source}")]
    TimeOffsets {
        /// The child's errno.
        source: io::Error,
    },

    /// The child's `sethostname(2)` failed.
    #[error("sethostname (hostname): {source}")]
    Hostname {
        /// The child's errno.
        source: io::Error,
    },

    /// The child's `setdomainname(2)` failed.
    #[error("setdomainname (domainname): {source}")]
    Domainname {
        /// The child's errno.
        source: io::Error,
    },

    /// [`pin`](crate::pin::pin) was asked for a kind it cannot pin: only network, IPC
    /// and UTS namespaces can be made by a thread (and the same kind only once).
    #[error("pin: {kind} namespaces cannot be pinned ({reason})")]
    PinKind {
        /// The refused kind.
        kind: NamespaceKind,
        /// Why, e.g. `"only net, ipc and uts can"` or `"asked twice"`.
        reason: &'static str,
    },

    /// [`pin`](crate::pin::pin) was given a hostname but no UTS namespace to set it in.
    #[error("pin: a hostname is given but no uts namespace is pinned")]
    PinHostnameWithoutUts,

    /// A file-system or mount step of [`pin`](crate::pin::pin) or
    /// [`unpin`](crate::pin::unpin) failed.
    #[error("{op} {}: {source}", path.display())]
    PinPath {
        /// What was done, e.g. `"pin: creating mount point"` or `"unpin: umount2(MNT_DETACH)"`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },

    /// The thread that [`pin`](crate::pin::pin) makes the namespaces on could not be
    /// started or died.
    #[error("pin: namespace thread: {reason}")]
    PinThread {
        /// What happened.
        reason: String,
    },

    /// A child error record that this plan cannot have produced (e.g. a `setns`
    /// failure for a type the plan does not join).
    #[error("child error record {record} does not match this namespace plan")]
    UnexpectedChildError {
        /// The record.
        record: ChildError,
    },
}

impl NamespaceError {
    /// The JSON path of the config field the error is about, e.g.
    /// `linux.namespaces[1].type` or `linux.uidMappings[0].size`; `None` for errors
    /// about no field (writing an id map, a bad pid). For every error
    /// [`validate`](crate::validate) returns, the message starts with this path and a
    /// space.
    pub fn field(&self) -> Option<String> {
        use NamespaceError as E;
        Some(match self {
            E::Duplicate { index, .. } | E::Unsupported { index, .. } => {
                format!("linux.namespaces[{index}].type")
            }
            E::RelativePath { index, .. }
            | E::OpenPath { index, .. }
            | E::NotAFile { index, .. }
            | E::NotANamespace { index, .. }
            | E::WrongType { index, .. }
            | E::Setns { index, .. } => format!("linux.namespaces[{index}].path"),
            E::MappingsWithoutUserNamespace { field }
            | E::UserNamespaceWithoutMappings { field, .. }
            | E::TooManyMappings { field, .. }
            | E::MappingsTooLong { field, .. } => (*field).to_owned(),
            E::EmptyMapping { field, index } => format!("{field}[{index}].size"),
            E::MappingOverflow {
                field,
                index,
                which,
                ..
            }
            | E::OverlappingMappings {
                field,
                index,
                which,
                ..
            } => format!("{field}[{index}].{which}"),
            E::TimeOffsetsWithoutTimeNamespace | E::TimeOffsets { .. } => {
                "linux.timeOffsets".to_owned()
            }
            E::UnknownTimeOffsetClock { key } => format!("linux.timeOffsets[{key:?}]"),
            E::TimeOffsetNanosecs { key, .. } => format!("linux.timeOffsets[{key:?}].nanosecs"),
            E::TimeOffsetSecs { key, .. } => format!("linux.timeOffsets[{key:?}].secs"),
            E::Hostname { .. } => "hostname".to_owned(),
            E::Domainname { .. } => "domainname".to_owned(),
            E::InvalidPid { .. }
            | E::WriteIdMap { .. }
            | E::IdMapTool { .. }
            | E::Unshare { .. }
            | E::UnexpectedChildError { .. }
            | E::PinKind { .. }
            | E::PinHostnameWithoutUts
            | E::PinPath { .. }
            | E::PinThread { .. } => return None,
        })
    }
}

/// Name of a `CLONE_NEW*` value returned by `NS_GET_NSTYPE`.
fn type_name(flag: libc::c_int) -> String {
    match NamespaceKind::from_clone_flag(flag) {
        Some(k) => k.proc_name().to_owned(),
        None => format!("unknown-type (0x{flag:x})"),
    }
}
