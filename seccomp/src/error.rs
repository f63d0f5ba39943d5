//! The errors of compiling a profile and of handing its listener to an agent.

use std::path::PathBuf;

/// Why a profile was refused, or why the listener could not be handed over.
///
/// Each variant names the field of the OCI config that failed, as a JSON path
/// (`linux.seccomp.syscalls[3].action`): [`Error::field`]. But for [`Error::Listener`] (which
/// names the path it could not reach), the message is that field followed by
/// [`Error::reason`], so that a runtime can report it as a config error of its own.
///
/// ```
/// let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(
///     r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#,
/// )?;
/// let err = berth_seccomp::compile(&profile).unwrap_err();
/// assert_eq!(err.field(), "linux.seccomp.defaultErrnoRet");
/// assert_eq!(err.to_string(), format!("{} {}", err.field(), err.reason()));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field breaks a rule of the spec or of the kernel (an `errnoRet` on an action without
    /// one, an argument index above 5, an empty name, `SCMP_ACT_NOTIFY` without
    /// `listenerPath`...).
    #[error("{field} {reason}")]
    Invalid {
        /// The field, as a JSON path.
        field: String,
        /// Why, phrased to follow the field.
        reason: String,
    },
    /// The running kernel does not support an action or a filter flag the profile uses.
    #[error("{field} {what} is not supported by the running kernel")]
    Unsupported {
        /// The field, as a JSON path.
        field: String,
        /// The action, the flag, or the combination of flags.
        what: String,
    },
    /// The program would be longer than the kernel takes (`BPF_MAXINSNS`).
    #[error("{field} compiles to {len} BPF instructions or more, over the kernel's limit of {max}")]
    TooLarge {
        /// Always `linux.seccomp`: the profile as a whole.
        field: &'static str,
        /// The length it would have had, at least.
        len: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// The argument comparisons could not be compiled (seccompiler refused them).
    #[error("{field} cannot be compiled: {reason}")]
    Backend {
        /// The field, as a JSON path.
        field: String,
        /// What the back end said.
        reason: String,
    },
    /// Connecting, sending or writing to the agent at `listenerPath` failed.
    #[error("{op} {}: {source}", path.display())]
    Listener {
        /// What was being done (`connect to seccomp listener`...).
        op: &'static str,
        /// `listenerPath`.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The field of the config that failed, as a JSON path (`linux.seccomp.flags[1]`).
    pub fn field(&self) -> &str {
        match self {
            Error::Invalid { field, .. }
            | Error::Unsupported { field, .. }
            | Error::Backend { field, .. } => field,
            Error::TooLarge { field, .. } => field,
            Error::Listener { .. } => "linux.seccomp.listenerPath",
        }
    }

    /// Why the field failed: the message without the field in front.
    pub fn reason(&self) -> String {
        match self {
            Error::Invalid { reason, .. } => reason.clone(),
            Error::Unsupported { what, .. } => {
                format!("{what} is not supported by the running kernel")
            }
            Error::TooLarge { len, max, .. } => format!(
                "compiles to {len} BPF instructions or more, over the kernel's limit of {max}"
            ),
            Error::Backend { reason, .. } => format!("cannot be compiled: {reason}"),
            Error::Listener { .. } => self.to_string(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
            what: what.into(),
        }
    }

    pub(crate) fn backend(reason: impl Into<String>) -> Self {
        Error::Backend {
            field: "linux.seccomp.syscalls".into(),
            reason: reason.into(),
        }
    }
}
