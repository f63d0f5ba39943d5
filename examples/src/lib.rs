//! `berth`: a runc-compatible command line for the berth container runtime.
//!
//! The binary (`src/bin/berth/main.rs`) only calls [`main`]. It understands runc 1.1's global
//! flags (`--root`, `--log`, `--log-format`, `--debug`, `--systemd-cgroup`, `--rootless`,
//! `--criu`) and the commands `create`, `start`, `run`, `state`, `kill`, `delete`, `list`,
//! `spec`, `features`, `pause`, `resume`, `update`, `ps` and `events`, with runc's flags, output formats and exit codes, so that tools
//! driving runc (containerd's shim, podman, scripts) can drive berth. `berth image unpack
//! IMAGE BUNDLE` (and `image refs`, `image inspect`) makes bundles from OCI images.
//!
//! Errors are written as one log line (text or JSON, see [`logging`]) to `--log FILE`, or to
//! stderr without it; with a log file the bare message is also printed on stderr. Every error
//! exits with status 1; `run` in the foreground exits with the container's exit code.
//!
//! The modules [`args`], [`logging`] and [`format`](mod@format) are the reusable pieces: the flag parser,
//! the log line formats and the `list`/`state` output formats.
//!
//! ```no_run
//! // What the `berth` binary does:
//! let code = berth_cli::main(std::env::args_os());
//! std::process::exit(code);
//! ```

pub mod args;
mod commands;
mod console;
pub mod error;
mod foreground;
pub mod format;
pub mod logging;
#[cfg(test)]
mod test_support;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use berth_runtime_core::Runtime;

use crate::args::{Flag, Mode, Parsed, parse};
pub use crate::error::CliError;
use crate::logging::{LogFormat, Logger};

/// The state directory used without `--root` (by root, and by anyone without
/// `$XDG_RUNTIME_DIR`; see [`default_root`]).
pub const DEFAULT_ROOT: &str = "/run/berth";

/// The state directory used without `--root`, as runc chooses its own: `$XDG_RUNTIME_DIR/berth`
/// when `XDG_RUNTIME_DIR` is set and the caller is not root (or is root in a user namespace
/// other than the initial one and `USER` is not `root`), else [`DEFAULT_ROOT`]. The flag is
/// true for the `$XDG_RUNTIME_DIR` one, which the caller must create (mode 01700: the sticky
/// bit keeps it from being pruned, per the XDG base directory specification).
pub fn default_root() -> (PathBuf, bool) {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty());
    match xdg {
        Some(dir) if honor_xdg_runtime_dir() => (PathBuf::from(dir).join("berth"), true),
        _ => (PathBuf::from(DEFAULT_ROOT), false),
    }
}

/// Whether `$XDG_RUNTIME_DIR` names the caller's own runtime directory: a user's, not the
/// host root's (whose `/run/user/0` runc ignores too, for compatibility).
fn honor_xdg_runtime_dir() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    !berth_namespaces::in_initial_user_namespace()
        && std::env::var("USER").map_or(true, |u| u != "root")
}

/// Creates the `$XDG_RUNTIME_DIR/berth` state directory if needed and gives it mode 01700.
fn prepare_xdg_root(root: &std::path::Path) -> Result<(), CliError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| CliError::io("create state directory", root, e))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1700))
        .map_err(|e| CliError::io("chmod state directory", root, e))
}

const GLOBAL_FLAGS: &[Flag] = &[
    Flag::boolean(&["debug"], "log debug messages"),
    Flag::value(
        &["log"],
        "FILE",
        "append log lines to FILE instead of writing them to stderr",
    ),
    Flag::value(&["log-format"], "FORMAT", "text (default) or json"),
    Flag::value(
        &["root"],
        "DIR",
        "directory of the containers' state, best on a tmpfs (default: /run/berth; \
         $XDG_RUNTIME_DIR/berth for a non-root user)",
    ),
    Flag::value(
        &["criu"],
        "PATH",
        "path of the criu binary (accepted for compatibility; checkpointing is not implemented)",
    ),
    Flag::boolean(
        &["systemd-cgroup"],
        "use systemd to manage cgroups (accepted; has no effect yet)",
    ),
    Flag::value(
        &["rootless"],
        "VALUE",
        "true, false or auto (default): ignore cgroup permission errors",
    ),
    Flag::boolean(&["version", "v"], "print the version"),
];

/// The output of `berth --version`.
pub fn version_text() -> String {
    format!(
        "berth version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        berth_runtime_core::oci_spec::runtime::VERSION
    )
}

/// Converts the process arguments to strings, skipping the program name.
fn utf8_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, CliError> {
    args.into_iter()
        .enumerate()
        .skip(1)
        .map(|(index, a)| {
            a.into_string().map_err(|a| CliError::NonUtf8Arg {
                index,
                lossy: a.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// Exit status of `exec` when the process could not be started (runc's).
const EXEC_FAILED: i32 = 255;

/// Reports a failure the way runc does and returns the exit status (1).
fn fail(log: &Logger, err: &CliError, help: Option<String>) -> i32 {
    if let Some(help) = help {
        // runc prints "Incorrect Usage" and the help on stdout; the error itself is logged.
        let _ = commands::print(&format!("Incorrect Usage: {err}\n\n{help}"));
    }
    let msg = err.to_string();
    log.error(&msg);
    if !log.to_stderr() {
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
    1
}

/// Runs the `berth` command line on `args` (including the program name, as from
/// [`std::env::args_os`]) and returns the process exit status.
///
/// It first resets SIGPIPE to its default action (Rust programs start with it ignored, and
/// containers would inherit that). `run` in the foreground also makes the process a child
/// subreaper (unless `--no-subreaper`) and blocks the signals it forwards.
///
/// ```no_run
/// // berth --root /tmp/state list --format json
/// let status = berth_cli::main(
///     ["berth", "--root", "/tmp/state", "list", "--format", "json"].map(Into::into),
/// );
/// assert_eq!(status, 0);
/// ```
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    reset_sigpipe();
    let fallback = Logger::stderr(LogFormat::Text, false);
    let args = match utf8_args(args) {
        Ok(a) => a,
        Err(e) => return fail(&fallback, &e, None),
    };
    let global = match parse(GLOBAL_FLAGS, &args, Mode::StopAtFirstPositional) {
        Ok(g) => g,
        Err(e) => return fail(&fallback, &e, Some(commands::global_help(GLOBAL_FLAGS))),
    };
    if global.flag("version") {
        return match commands::print(&version_text()) {
            Ok(()) => 0,
            Err(e) => fail(&fallback, &e, None),
        };
    }
    let log = match logger(&global) {
        Ok(l) => l,
        Err(e) => return fail(&fallback, &e, None),
    };
    match dispatch(&global, log) {
        Ok(code) => code,
        Err((log, e, help)) => fail(&log, &e, help),
    }
}

/// Builds the logger from `--log`, `--log-format` and `--debug`.
fn logger(global: &Parsed) -> Result<Logger, CliError> {
    let format = match global.value("log-format") {
        None => LogFormat::Text,
        Some(f) => LogFormat::parse(f).ok_or_else(|| CliError::InvalidValue {
            flag: "log-format",
            value: f.to_string(),
            expected: "text or json",
        })?,
    };
    let debug = global.flag("debug");
    match global.value("log").filter(|l| !l.is_empty()) {
        Some(path) => Logger::file(std::path::Path::new(path), format, debug),
        None => Ok(Logger::stderr(format, debug)),
    }
}

type Failure = (Logger, CliError, Option<String>);

/// Finds and runs the command; on failure returns the logger back with the error and, for
/// usage errors, the help to print.
fn dispatch(global: &Parsed, log: Logger) -> Result<i32, Failure> {
    let Some((name, rest)) = global.positionals.split_first() else {
        return show(commands::global_help(GLOBAL_FLAGS), log);
    };
    if global.help {
        return show(commands::global_help(GLOBAL_FLAGS), log);
    }
    if let Some(v) = global.value("rootless")
        && !matches!(v, "true" | "false" | "auto")
    {
        let e = CliError::InvalidValue {
            flag: "rootless",
            value: v.to_string(),
            expected: "true, false or auto",
        };
        return Err((log, e, Some(commands::global_help(GLOBAL_FLAGS))));
    }
    if name == "help" || name == "h" {
        return help_command(rest, log);
    }
    let Some(cmd) = commands::find(name) else {
        let e = CliError::UnknownCommand {
            command: name.clone(),
        };
        return Err((log, e, None));
    };
    // As with runc, the flags of `exec` and `ps` come before the id: what follows is the
    // command, or the options of ps(1).
    let mode = if matches!(cmd.name, "exec" | "ps") {
        Mode::StopAtFirstPositional
    } else {
        Mode::Interspersed
    };
    let parsed = match parse(cmd.flags, rest, mode) {
        Ok(p) => p,
        Err(e) => return Err((log, e, Some(commands::command_help(cmd)))),
    };
    if parsed.help {
        return show(commands::command_help(cmd), log);
    }
    let Some(handler) = cmd.handler else {
        return Err((log, CliError::NotImplemented { command: cmd.name }, None));
    };
    if global.flag("systemd-cgroup") && log.debug_enabled() {
        log.warn(
            "--systemd-cgroup is accepted but has no effect yet: cgroups are managed directly",
        );
    }
    if let Some(criu) = global.value("criu") {
        log.debug(|| format!("--criu {criu} ignored: checkpoint/restore is not implemented"));
    }
    let root = match global.value("root") {
        Some(r) => PathBuf::from(r),
        None => {
            let (root, xdg) = default_root();
            if xdg && let Err(e) = prepare_xdg_root(&root) {
                return Err((log, e, None));
            }
            root
        }
    };
    // A relative --root is taken against the current directory, once, here.
    let root = match std::path::absolute(&root) {
        Ok(r) => r,
        Err(e) => return Err((log, CliError::io("resolve --root", root, e), None)),
    };
    log.debug(|| format!("berth {name}: root {}", root.display()));
    let mut runtime = Runtime::new(root).rootless_cgroups(match global.value("rootless") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    });
    if let Ok(wlog) = log.try_clone() {
        runtime = runtime.on_warning(move |w| wlog.warn(w));
    }
    let ctx = commands::Ctx { runtime, log };
    match handler(&ctx, &parsed) {
        Ok(code) => Ok(code),
        // As runc does, a failed exec exits 255, which no exit status of the process can be
        // confused with (berth exec reports the process' status as its own).
        Err(e) if cmd.name == "exec" && !matches!(e, CliError::ArgCount { .. }) => {
            fail(&ctx.log, &e, None);
            Ok(EXEC_FAILED)
        }
        Err(e) => {
            // Like runc, a wrong number of arguments shows the command's help; a bad flag
            // value found by the command (--format xml) is reported alone.
            let help = matches!(e, CliError::ArgCount { .. }).then(|| commands::command_help(cmd));
            Err((ctx.log, e, help))
        }
    }
}

/// Prints a help text.
fn show(text: String, log: Logger) -> Result<i32, Failure> {
    match commands::print(&text) {
        Ok(()) => Ok(0),
        Err(e) => Err((log, e, None)),
    }
}

/// `berth help [COMMAND]`
fn help_command(rest: &[String], log: Logger) -> Result<i32, Failure> {
    match rest {
        [] => show(commands::global_help(GLOBAL_FLAGS), log),
        [name] => match commands::find(name) {
            Some(cmd) => show(commands::command_help(cmd), log),
            None => Err((
                log,
                CliError::UnknownCommand {
                    command: name.clone(),
                },
                None,
            )),
        },
        more => Err((
            log,
            CliError::ArgCount {
                command: "help",
                expected: "at most 1 argument (a command name)",
                got: more.len(),
            },
            None,
        )),
    }
}

/// Restores the default action of SIGPIPE, which Rust's start-up code sets to "ignore": the
/// containers berth starts inherit ignored signals across execve, and `berth list | head`
/// should end quietly like any other command.
fn reset_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler code and touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn program_name_is_skipped() {
        assert_eq!(
            utf8_args(os(&["berth", "list", "-q"])).unwrap(),
            vec!["list", "-q"]
        );
        assert!(utf8_args(os(&["berth"])).unwrap().is_empty());
    }

    #[test]
    fn non_utf8_argument_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("berth"),
            OsString::from("state"),
            OsString::from_vec(vec![b'a', 0xff]),
        ];
        let err = utf8_args(args).unwrap_err();
        assert!(err.to_string().starts_with("argument 2 "), "{err}");
    }

    #[test]
    fn logger_flags() {
        let g = parse(
            GLOBAL_FLAGS,
            &["--log-format".into(), "xml".into()],
            Mode::StopAtFirstPositional,
        )
        .unwrap();
        let err = logger(&g).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"xml\" for flag --log-format: text or json"
        );
        let g = parse(
            GLOBAL_FLAGS,
            &["--debug".into()],
            Mode::StopAtFirstPositional,
        )
        .unwrap();
        let l = logger(&g).unwrap();
        assert!(l.to_stderr() && l.debug_enabled());
    }

    #[test]
    fn version_names_berth_and_the_spec() {
        let v = version_text();
        assert!(v.starts_with("berth version "));
        assert!(v.contains("spec: 1."));
    }
}
