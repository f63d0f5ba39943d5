//! The one error type of the `berth` command line.

use std::io;
use std::path::PathBuf;

/// Everything that can make a `berth` command fail.
///
/// Usage errors (see [`CliError::is_usage`]) are the caller's mistakes on the command line; the
/// binary prints the command's help for them, like runc's "Incorrect Usage".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An argument of the command line is not valid UTF-8.
    #[error("argument {index} of the command line is not valid UTF-8: {lossy:?}")]
    NonUtf8Arg {
        /// Position of the argument (0 is the program name).
        index: usize,
        /// The argument with invalid sequences replaced.
        lossy: String,
    },
    /// A flag that the command does not define.
    #[error("flag provided but not defined: {flag}")]
    UnknownFlag {
        /// The flag as written by the user.
        flag: String,
    },
    /// A flag that takes a value came last on the command line.
    #[error("flag needs an argument: {flag}")]
    MissingValue {
        /// The flag as written by the user.
        flag: String,
    },
    /// A flag written `-` + `-` + `=` or with three dashes.
    #[error("bad flag syntax: {flag}")]
    BadFlagSyntax {
        /// The argument as written by the user.
        flag: String,
    },
    /// A flag value that does not parse or is not one of the accepted words.
    #[error("invalid value {value:?} for flag --{flag}: {expected}")]
    InvalidValue {
        /// Canonical flag name.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What the flag accepts.
        expected: &'static str,
    },
    /// Wrong number of positional arguments for a command.
    #[error("berth: {command:?} requires {expected}, got {got}")]
    ArgCount {
        /// The command name.
        command: &'static str,
        /// Human description of the accepted arguments.
        expected: &'static str,
        /// How many positional arguments were given.
        got: usize,
    },
    /// A command name that berth does not know.
    #[error("unknown command {command:?}: run 'berth --help' for the list of commands")]
    UnknownCommand {
        /// The word given as command.
        command: String,
    },
    /// A runc command that berth does not implement yet.
    #[error("berth: '{command}' is not implemented yet")]
    NotImplemented {
        /// The command name.
        command: &'static str,
    },
    /// An error reported by the runtime library.
    #[error(transparent)]
    Runtime(#[from] berth_runtime_core::Error),
    /// The bundle's config.json could not be loaded.
    #[error(transparent)]
    Config(#[from] berth_runtime_core::validate::ConfigError),
    /// `process.terminal` is true but nobody would receive the console.
    #[error(
        "cannot allocate a tty for container {id:?}: process.terminal is true but it runs \
         detached and no --console-socket was given"
    )]
    TerminalWithoutConsoleSocket {
        /// The container id.
        id: String,
    },
    /// `--console-socket` was given but the console would never be sent to it.
    #[error(
        "--console-socket {path} cannot be used for container {id:?}: process.terminal is \
         false in its config, so no console is created"
    )]
    ConsoleSocketWithoutTerminal {
        /// The container id.
        id: String,
        /// The socket path given.
        path: PathBuf,
    },
    /// `spec` found an existing config.json.
    #[error("File {} exists. Remove it first", path.display())]
    ConfigExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file-system or stream operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", "create directory", ...).
        op: &'static str,
        /// The path (or a `<stdout>`-style name for streams).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Supervising the process in the foreground failed (signals, reaping, the console
    /// socket, the pty relay).
    #[error(transparent)]
    Supervise(#[from] berth_shim_core::Error),
    /// A JSON document could not be produced.
    #[error("encode {what} as JSON: {source}")]
    Json {
        /// What was being encoded.
        what: &'static str,
        /// The encoder error.
        #[source]
        source: serde_json::Error,
    },
}

impl CliError {
    /// True for command-line mistakes, for which the command's help is printed.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CliError::UnknownFlag { .. }
                | CliError::MissingValue { .. }
                | CliError::BadFlagSyntax { .. }
                | CliError::InvalidValue { .. }
                | CliError::ArgCount { .. }
        )
    }

    /// Shorthand for an [`CliError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CliError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
