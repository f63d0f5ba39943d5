//! The one error type of the crate.

/// What makes the shim fail. Each variant names the file, call or request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad command line.
    #[error("usage: {0}")]
    Usage(String),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// ttrpc failed.
    #[error("ttrpc: {0}")]
    Ttrpc(#[from] ttrpc::Error),
    /// Supervision failed.
    #[error(transparent)]
    Shim(#[from] berth_shim_core::Error),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] berth_runtime_core::Error),
    /// A message could not be encoded or decoded.
    #[error("protobuf: {0}")]
    Protobuf(#[from] protobuf::Error),
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
