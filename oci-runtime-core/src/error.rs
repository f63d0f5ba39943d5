//! The error type of the runtime crate.

use std::path::PathBuf;

use crate::config::validate::ConfigError;
use crate::state::Status;

/// Everything that can go wrong in a lifecycle operation.
///
/// Each variant names the container, path, field or syscall involved, so that the one-line
/// message a CLI prints is enough to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No container with this id exists under the runtime's root.
    #[error("container \"{id}\" does not exist")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// `create` was asked for an id that is already taken.
    #[error("container \"{id}\" already exists")]
    AlreadyExists {
        /// The container id.
        id: String,
    },
    /// The id is not a valid container id.
    #[error("invalid container id \"{id}\": {reason}")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The operation is not allowed in the container's current state.
    #[error("cannot {op} container \"{id}\": it is {status}")]
    InvalidState {
        /// The container id.
        id: String,
        /// The state the container is in.
        status: Status,
        /// The refused operation.
        op: &'static str,
    },
    /// The bundle's config.json is invalid.
    #[error("invalid bundle configuration: {0}")]
    Config(#[from] ConfigError),
    /// A signal name or number that does not exist.
    #[error("unknown signal \"{0}\"")]
    InvalidSignal(String),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create state dir", "read state", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed in the runtime process.
    #[error("{syscall}: {source}")]
    Sys {
        /// The system call and what it was applied to.
        syscall: String,
        /// The errno it returned.
        #[source]
        source: nix::Error,
    },
    /// The container has no cgroup recorded (created by an older berth).
    #[error("container \"{id}\" has no cgroup")]
    NoCgroup {
        /// The container id.
        id: String,
    },

    /// The container's cgroup could not be created, applied, read or removed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] berth_cgroups::CgroupError),
    /// The namespaces of the config could not be prepared or entered.
    #[error(transparent)]
    Namespaces(#[from] berth_namespaces::NamespaceError),
    /// The root filesystem could not be prepared or set up.
    #[error(transparent)]
    Rootfs(#[from] berth_rootfs::RootfsError),
    /// Setting up the container process failed inside the container.
    #[error("container init: {what}: {source}")]
    Init {
        /// The step that failed, with the field or path it concerned.
        what: String,
        /// The errno it returned.
        #[source]
        source: nix::Error,
    },
    /// A hook failed (for the hooks whose failure is fatal).
    #[error("{kind} hook #{index} ({path}): {reason}")]
    Hook {
        /// The hook kind (`createRuntime`, ...).
        kind: &'static str,
        /// The hook's index in its list.
        index: usize,
        /// The hook's path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The container init died or misbehaved during setup.
    #[error("container init: {0}")]
    Protocol(String),
    /// The start barrier reported an error (a startContainer hook or the exec failed).
    #[error("start container \"{id}\": {reason}")]
    Start {
        /// The container id.
        id: String,
        /// The error reported by the container init.
        reason: String,
    },
    /// Setting up the process of [`crate::Runtime::exec`] failed (in the container's
    /// namespaces, before it ran).
    #[error("exec in container \"{id}\": {what}: {source}")]
    Exec {
        /// The container id.
        id: String,
        /// The step that failed, with the field, flag or path it concerned.
        what: String,
        /// The errno it returned.
        #[source]
        source: nix::Error,
    },
    /// A state file could not be parsed.
    #[error("state of container \"{id}\" is corrupt: {source}")]
    CorruptState {
        /// The container id.
        id: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `delete --force` of a container whose state is corrupt, when what it made can't be
    /// found: nothing was removed.
    #[error(
        "cannot delete container \"{id}\": {reason}; its processes and cgroup may still \
         exist, so its state dir {} is kept",
        dir.display()
    )]
    CorruptDelete {
        /// The container id.
        id: String,
        /// The state dir, left as it was.
        dir: PathBuf,
        /// Why its cgroup is unknown (after the parse error).
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(syscall: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            syscall: syscall.into(),
            source,
        }
    }
}
