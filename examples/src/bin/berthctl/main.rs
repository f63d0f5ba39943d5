//! `berthctl`: a command line for people over a CRI v1 socket (berthd's, or containerd's CRI
//! plugin), in the manner of crictl and nerdctl: `pull`, `images`, `rmi`, `run`, `ps`, `pods`,
//! `exec`, `logs`, `stop`, `rm`, `inspect`, `stats`, `version`, `info`.
//!
//! ```text
//! berthctl pull docker.io/library/busybox:latest
//! berthctl run --rm --net host busybox echo hello
//! berthctl --address /run/containerd/containerd.sock ps -a
//! ```
//!
//! Exit status: 0; 2 for a usage error (with the command's help); 1 when a call fails
//! (`berthctl: <the runtime's message>`); `run` (in the foreground) and `exec` exit with the
//! container's or the command's status.

mod cli;
mod client;
mod cmds;
mod error;
mod logs;
mod progress;
mod resolve;
mod table;

use std::io::Write;

use crate::cli::{ADDRESS_ENV, Action, parse_args};
use crate::error::{CtlError, EXIT_USAGE};

fn main() {
    std::process::exit(berthctl(std::env::args_os()));
}

/// Runs the command line; returns the exit status.
fn berthctl(args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let args: Result<Vec<String>, _> = args.skip(1).map(|a| a.into_string()).collect();
    let Ok(args) = args else {
        return fail(&CtlError::Usage("an argument is not UTF-8".into()), None);
    };
    let env_address = std::env::var(ADDRESS_ENV).ok();
    match parse_args(&args, env_address) {
        Ok(Action::Print(text)) => match cmds::out(text) {
            Ok(()) => 0,
            Err(e) => fail(&e, None),
        },
        Ok(Action::Run(global, cmd)) => match cmds::run(&global, cmd) {
            Ok(code) => code,
            Err(e) => fail(&e, None),
        },
        Err((e, help)) => fail(&e, help),
    }
}

/// Reports `e` on stderr (a usage error with `help` after it); returns its exit status.
fn fail(e: &CtlError, help: Option<String>) -> i32 {
    let mut err = std::io::stderr().lock();
    // A stdout that went away (`berthctl ps | head`) ends the command quietly.
    if let CtlError::Io { path, source, .. } = e
        && path.as_os_str() == "stdout"
        && source.kind() == std::io::ErrorKind::BrokenPipe
    {
        return 1;
    }
    let _ = writeln!(err, "berthctl: {e}");
    if let Some(help) = help.filter(|_| e.exit_code() == EXIT_USAGE) {
        let _ = write!(err, "\n{help}");
    }
    e.exit_code()
}
