//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Every variant names the cgroup file, directory, configuration field or
/// syscall that failed, and the value involved where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// A file of `/proc` (mountinfo, cgroup) could not be read.
    #[error("reading {}: {source}", path.display())]
    ReadProc {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// `/proc/self/mountinfo` or `/proc/self/cgroup` has a line we cannot parse.
    #[error("{}: malformed line {line:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line.
        line: String,
    },

    /// No cgroup file system is mounted (or the given mount point is not one).
    #[error("no cgroup hierarchy found ({reason})")]
    NoHierarchy {
        /// Why.
        reason: String,
    },

    /// `linux.cgroupsPath` (or the container id used for the default path) is invalid.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A cgroup directory could not be created, opened or removed.
    #[error("{op} cgroup directory {}: {source}", path.display())]
    Dir {
        /// `mkdir`, `open` or `rmdir`.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Writing a value to a cgroup file failed (missing file, rejected value...).
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The cgroup file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Reading a cgroup file failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The cgroup file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A cgroup file holds something we cannot parse.
    #[error("{}: unexpected content {content:?}", path.display())]
    Content {
        /// The cgroup file.
        path: PathBuf,
        /// What it holds (or the offending part).
        content: String,
    },

    /// The cgroup a container is to be created in is frozen (or freezing): its init
    /// would stop before it could report, so it is refused (as runc does).
    #[error(
        "the container's cgroup is {state} ({}): thaw it (or choose another linux.cgroupsPath) first",
        path.display()
    )]
    Frozen {
        /// The freezer file that says so.
        path: PathBuf,
        /// `frozen` or `freezing`.
        state: &'static str,
    },

    /// A configuration field needs a controller that this host does not offer
    /// to this cgroup.
    #[error("linux.resources.{field}: controller {controller:?} is not available on this host")]
    ControllerUnavailable {
        /// The `linux.resources` field (dotted path).
        field: String,
        /// The controller it needs.
        controller: String,
    },

    /// A configuration value is out of range or cannot be expressed on this
    /// cgroup version.
    #[error("linux.resources.{field} = {value}: {reason}")]
    InvalidValue {
        /// The `linux.resources` field (dotted path).
        field: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },

    /// `checkBeforeUpdate` refused a memory limit lower than the current usage.
    #[error(
        "linux.resources.memory.limit = {limit}: below the current usage {usage} read from {}",
        path.display()
    )]
    MemoryBelowUsage {
        /// The new limit.
        limit: i64,
        /// The usage read from the cgroup.
        usage: u64,
        /// The usage file.
        path: PathBuf,
    },

    /// A syscall failed (bpf, eventfd, inotify, poll, kill...).
    #[error("{syscall} ({what}): {source}")]
    Syscall {
        /// The syscall.
        syscall: &'static str,
        /// What it was applied to.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The kernel's BPF verifier rejected the device program.
    #[error("bpf(BPF_PROG_LOAD) of the device program for {}: {source}; verifier log: {log}", path.display())]
    BpfLoad {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
        /// The verifier's log (may be empty).
        log: String,
    },

    /// Something did not happen in time (freezing, processes leaving).
    #[error("timed out after {waited_ms} ms waiting for {what} ({})", path.display())]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// The cgroup file or directory watched.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u128,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = CgroupError> = std::result::Result<T, E>;
