//! The manager's errors, each mapped to the gRPC status a CRI client gets.

use std::path::PathBuf;

/// What went wrong in the manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// No sandbox, container or image with that id or name.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `sandbox`, `container`, `image`, `exec`.
        kind: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// The name is taken.
    #[error("{kind} name {name:?} is already used by {id}")]
    AlreadyExists {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Who has it.
        id: String,
    },
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The call or a feature berthd does not implement.
    #[error("{0} is not implemented by berthd")]
    Unimplemented(&'static str),
    /// A deadline passed.
    #[error("{0}")]
    Timeout(String),
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(String),
    /// The shim of a pod failed or could not be reached.
    #[error("shim {what}: {reason}")]
    Shim {
        /// The call or step.
        what: String,
        /// Its error.
        reason: String,
    },
    /// Images, content or layers.
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    /// Pinning a pod's namespaces.
    #[error(transparent)]
    Namespace(#[from] berth_namespaces::NamespaceError),
    /// The pod network.
    #[error(transparent)]
    Cni(#[from] berth_cni::CniError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn shim(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Shim {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// The gRPC status code for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Invalid { .. } => tonic::Code::InvalidArgument,
            Error::NotFound { .. } => tonic::Code::NotFound,
            Error::AlreadyExists { .. } => tonic::Code::AlreadyExists,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Unimplemented(_) => tonic::Code::Unimplemented,
            Error::Timeout(_) => tonic::Code::DeadlineExceeded,
            Error::Image(e) => image_code(e),
            _ => tonic::Code::Internal,
        }
    }
}

fn image_code(e: &berth_image::ImageError) -> tonic::Code {
    use berth_image::ImageError as E;
    match e {
        E::NotFound { .. } => tonic::Code::NotFound,
        _ => tonic::Code::Unknown,
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Error {
        Error::Db(e.to_string())
    }
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Db(e.to_string())
            }
        }
    )*};
}
db_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The manager's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
