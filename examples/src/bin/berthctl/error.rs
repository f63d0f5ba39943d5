//! berthctl's errors and the exit status each maps to.

use std::path::PathBuf;

/// Exit status of a usage error (bad flag, missing argument).
pub const EXIT_USAGE: i32 = 2;
/// Exit status of any other failure.
pub const EXIT_FAILURE: i32 = 1;

/// Everything that can make a berthctl command fail.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The command line is wrong; the text says how.
    #[error("{0}")]
    Usage(String),
    /// A flag could not be parsed.
    #[error("{0}")]
    Flags(#[from] berth_cli::CliError),
    /// The CRI call answered with an error status.
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
    /// No answer within the deadline.
    #[error("{call}: no answer within {secs:.1}s")]
    Deadline {
        /// The CRI method.
        call: &'static str,
        /// The deadline.
        secs: f64,
    },
    /// The socket could not be connected.
    #[error("connect to {address}: {reason}")]
    Connect {
        /// The socket path.
        address: PathBuf,
        /// The transport error and its causes.
        reason: String,
    },
    /// Reading or writing a file (a log file, stdout) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No container, pod or image has that id or name.
    #[error("no {kinds} matches {query:?}")]
    NotFound {
        /// What was looked for ("container", "container or pod", ...).
        kinds: &'static str,
        /// The id, prefix or name given.
        query: String,
    },
    /// Several objects have that id prefix or name.
    #[error("{query:?} is ambiguous: it matches {matches}")]
    Ambiguous {
        /// The id, prefix or name given.
        query: String,
        /// The matching ids, comma-separated.
        matches: String,
    },
    /// The runtime answered without a field the command needs.
    #[error("{call}: the answer has no {field}")]
    Missing {
        /// The CRI method.
        call: &'static str,
        /// The field.
        field: &'static str,
    },
    /// JSON could not be rendered.
    #[error("render JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CtlError {
    /// The process exit status for this error: [`EXIT_USAGE`] for command-line mistakes,
    /// [`EXIT_FAILURE`] otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) | CtlError::Flags(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> CtlError {
        CtlError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An error and its causes joined by ": " (tonic's transport errors say little on their own).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
