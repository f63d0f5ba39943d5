//! The table of commands, their flags and help, and the simple commands.

mod cgroups;
mod exec;
mod image;
mod lifecycle;
mod run;
mod spec;

use std::io::Write;
use std::path::PathBuf;

use berth_runtime_core::{CreateOptions, Runtime};

use crate::args::{Flag, Parsed};
use crate::error::CliError;
use crate::logging::Logger;

/// What every command gets.
pub(crate) struct Ctx {
    /// The runtime, rooted at `--root`.
    pub runtime: Runtime,
    /// The logger set up from `--log`, `--log-format` and `--debug`.
    pub log: Logger,
}

/// Signature of a command's implementation: returns the process exit code.
type Handler = fn(&Ctx, &Parsed) -> Result<i32, CliError>;

/// One `berth` command.
pub(crate) struct Command {
    /// The word on the command line.
    pub name: &'static str,
    /// Positional arguments as shown in the usage line.
    pub args: &'static str,
    /// One line of description.
    pub summary: &'static str,
    /// Command flags.
    pub flags: &'static [Flag],
    /// The implementation; `None` for commands not implemented yet.
    pub handler: Option<Handler>,
}

const BUNDLE: Flag = Flag::value(
    &["bundle", "b"],
    "DIR",
    "path to the bundle directory (default: the current directory)",
);
const PID_FILE: Flag = Flag::value(
    &["pid-file"],
    "FILE",
    "write the host pid of the container's init to FILE",
);
const CONSOLE_SOCKET: Flag = Flag::value(
    &["console-socket"],
    "PATH",
    "unix socket that receives the pty master when process.terminal is true",
);
const NO_PIVOT: Flag = Flag::boolean(
    &["no-pivot"],
    "move the root with MS_MOVE + chroot instead of pivot_root",
);
const NO_NEW_KEYRING: Flag = Flag::boolean(
    &["no-new-keyring"],
    "keep the caller's session keyring instead of creating a new one",
);
const PRESERVE_FDS: Flag = Flag::value(
    &["preserve-fds"],
    "N",
    "pass N more file descriptors (3 .. 3+N-1) to the container (default: 0)",
);

const CREATE_FLAGS: &[Flag] = &[
    BUNDLE,
    CONSOLE_SOCKET,
    PID_FILE,
    NO_PIVOT,
    NO_NEW_KEYRING,
    PRESERVE_FDS,
];

const RUN_FLAGS: &[Flag] = &[
    BUNDLE,
    CONSOLE_SOCKET,
    Flag::boolean(
        &["detach", "d"],
        "start the container and return at once instead of waiting for it",
    ),
    Flag::boolean(
        &["keep"],
        "do not delete the container after it exits (foreground only)",
    ),
    PID_FILE,
    NO_SUBREAPER,
    NO_PIVOT,
    NO_NEW_KEYRING,
    PRESERVE_FDS,
];

const IMAGE_FLAGS: &[Flag] = &[
    Flag::value(
        &["ref"],
        "NAME",
        "the image's ref name (org.opencontainers.image.ref.name, or a docker tag)",
    ),
    Flag::value(
        &["digest"],
        "DIGEST",
        "the digest of the manifest or index to use",
    ),
    Flag::value(
        &["platform"],
        "OS/ARCH[/VARIANT]",
        "the platform to choose in an index (default: the host's)",
    ),
    Flag::boolean(
        &["rootless"],
        "unpack as an unprivileged user: owners recorded in xattrs, devices skipped",
    ),
    Flag::value(
        &["store"],
        "DIR",
        "unpack layers once into the layer store DIR and mount an overlay rootfs",
    ),
];

const NO_SUBREAPER: Flag = Flag::boolean(
    &["no-subreaper"],
    "do not make berth the child subreaper of the container's processes",
);

/// Every command, in the order of the help.
pub(crate) const COMMANDS: &[Command] = &[
    Command {
        name: "checkpoint",
        args: "<container-id>",
        summary: "checkpoint a running container (not implemented yet)",
        flags: &[],
        handler: None,
    },
    Command {
        name: "create",
        args: "<container-id>",
        summary: "create a container, stopped before running the user process",
        flags: CREATE_FLAGS,
        handler: Some(lifecycle::create),
    },
    Command {
        name: "delete",
        args: "<container-id>",
        summary: "delete a stopped (or, with --force, any) container and its resources",
        flags: &[Flag::boolean(
            &["force", "f"],
            "kill the container first if it is still running; no error if it does not exist",
        )],
        handler: Some(lifecycle::delete),
    },
    Command {
        name: "events",
        args: "<container-id>",
        summary: "display container events (OOM notifications) and resource usage statistics",
        flags: cgroups::EVENTS_FLAGS,
        handler: Some(cgroups::events),
    },
    Command {
        name: "exec",
        args: "<container-id> <command> [args...]",
        summary: "run a new process inside a container",
        flags: exec::EXEC_FLAGS,
        handler: Some(exec::exec),
    },
    Command {
        name: "features",
        args: "",
        summary: "print the features this runtime supports, as JSON",
        flags: &[],
        handler: Some(spec::features),
    },
    Command {
        name: "image",
        args: "unpack IMAGE[:REF] BUNDLE | refs IMAGE | inspect IMAGE[:REF] | rm BUNDLE",
        summary: "unpack an OCI layout, OCI archive or docker-archive into a bundle; list its \
                  refs; print its config; remove a bundle (unmounting a store rootfs)",
        flags: IMAGE_FLAGS,
        handler: Some(image::image),
    },
    Command {
        name: "kill",
        args: "<container-id> [signal]",
        summary: "send a signal (default: SIGTERM) to the container's init process",
        flags: &[Flag::boolean(
            &["all", "a"],
            "send the signal to every process of the container",
        )],
        handler: Some(lifecycle::kill),
    },
    Command {
        name: "list",
        args: "",
        summary: "list the containers of the --root directory",
        flags: &[
            Flag::value(&["format", "f"], "FORMAT", "table or json (default: table)"),
            Flag::boolean(&["quiet", "q"], "print only the container ids"),
        ],
        handler: Some(lifecycle::list),
    },
    Command {
        name: "pause",
        args: "<container-id>",
        summary: "freeze every process of a container",
        flags: &[],
        handler: Some(cgroups::pause),
    },
    Command {
        name: "ps",
        args: "<container-id> [ps options]",
        summary: "list the processes of a container (flags before the id; what follows goes to ps)",
        flags: cgroups::PS_FLAGS,
        handler: Some(cgroups::ps),
    },
    Command {
        name: "restore",
        args: "<container-id>",
        summary: "restore a container from a checkpoint (not implemented yet)",
        flags: &[],
        handler: None,
    },
    Command {
        name: "resume",
        args: "<container-id>",
        summary: "thaw a paused container",
        flags: &[],
        handler: Some(cgroups::resume),
    },
    Command {
        name: "run",
        args: "<container-id>",
        summary: "create and start a container, and by default wait for it and delete it",
        flags: RUN_FLAGS,
        handler: Some(run::run),
    },
    Command {
        name: "spec",
        args: "",
        summary: "write a starter config.json into the bundle directory",
        flags: &[
            BUNDLE,
            Flag::boolean(
                &["rootless"],
                "write a configuration for a container run by an unprivileged user",
            ),
        ],
        handler: Some(spec::spec),
    },
    Command {
        name: "start",
        args: "<container-id>",
        summary: "run the user process of a created container",
        flags: &[],
        handler: Some(lifecycle::start),
    },
    Command {
        name: "state",
        args: "<container-id>",
        summary: "print the state of a container as JSON",
        flags: &[],
        handler: Some(lifecycle::state),
    },
    Command {
        name: "update",
        args: "<container-id>",
        summary: "change the resource limits of a container",
        flags: cgroups::UPDATE_FLAGS,
        handler: Some(cgroups::update),
    },
];

/// Looks a command up by name.
pub(crate) fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Lines of a flag table: `   --synopsis   help`, aligned.
fn flag_lines(flags: &[Flag], out: &mut String) {
    let help = Flag::boolean(&["help", "h"], "show help");
    let all: Vec<&Flag> = flags.iter().chain(std::iter::once(&help)).collect();
    let width = all
        .iter()
        .map(|f| f.synopsis().chars().count())
        .max()
        .unwrap_or(0);
    for f in all {
        let syn = f.synopsis();
        let pad = width - syn.chars().count();
        out.push_str(&format!("   {syn}{}  {}\n", " ".repeat(pad), f.help));
    }
}

/// The help of one command.
pub(crate) fn command_help(cmd: &Command) -> String {
    let mut out = format!(
        "NAME:\n   berth {} - {}\n\nUSAGE:\n   berth {}{}{}{}\n",
        cmd.name,
        cmd.summary,
        cmd.name,
        if cmd.flags.is_empty() {
            ""
        } else {
            " [command options]"
        },
        if cmd.args.is_empty() { "" } else { " " },
        cmd.args
    );
    out.push_str("\nOPTIONS:\n");
    flag_lines(cmd.flags, &mut out);
    out
}

/// The top-level help.
pub(crate) fn global_help(global_flags: &[Flag]) -> String {
    let mut out = String::from(
        "NAME:\n   berth - run OCI containers (a runc-compatible command line)\n\n\
         USAGE:\n   berth [global options] command [command options] [arguments...]\n\n\
         COMMANDS:\n",
    );
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in COMMANDS {
        out.push_str(&format!(
            "   {}{}  {}\n",
            c.name,
            " ".repeat(width - c.name.len()),
            c.summary
        ));
    }
    out.push_str(&format!(
        "   help{}  show the list of commands or the help of one command\n",
        " ".repeat(width.saturating_sub(4))
    ));
    out.push_str("\nGLOBAL OPTIONS:\n");
    flag_lines(global_flags, &mut out);
    out
}

/// Writes `s` to stdout and flushes it.
pub(crate) fn print(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("write", "<stdout>", e))
}

/// The single `<container-id>` argument.
pub(crate) fn one_id<'a>(cmd: &'static str, p: &'a Parsed) -> Result<&'a str, CliError> {
    match p.positionals.as_slice() {
        [id] => Ok(id),
        other => Err(CliError::ArgCount {
            command: cmd,
            expected: "exactly 1 argument (the container id)",
            got: other.len(),
        }),
    }
}

/// No positional argument.
pub(crate) fn no_args(cmd: &'static str, p: &Parsed) -> Result<(), CliError> {
    if p.positionals.is_empty() {
        Ok(())
    } else {
        Err(CliError::ArgCount {
            command: cmd,
            expected: "no argument",
            got: p.positionals.len(),
        })
    }
}

/// The bundle directory: `--bundle` or the current directory.
pub(crate) fn bundle_dir(p: &Parsed) -> Result<PathBuf, CliError> {
    match p.value("bundle") {
        Some(b) if !b.is_empty() => Ok(PathBuf::from(b)),
        _ => std::env::current_dir().map_err(|e| CliError::io("get current directory", ".", e)),
    }
}

/// [`CreateOptions`] from the flags shared by `create` and `run`.
pub(crate) fn create_options(p: &Parsed) -> Result<CreateOptions, CliError> {
    let preserve_fds = match p.value("preserve-fds") {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| CliError::InvalidValue {
            flag: "preserve-fds",
            value: v.to_string(),
            expected: "a non-negative number of file descriptors",
        })?,
    };
    let path = |name: &str| p.value(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    Ok(CreateOptions::new(bundle_dir(p)?)
        .pid_file(path("pid-file"))
        .console_socket(path("console-socket"))
        .no_pivot(p.flag("no-pivot"))
        .no_new_keyring(p.flag("no-new-keyring"))
        .preserve_fds(preserve_fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Mode, parse};

    fn parsed(flags: &[Flag], v: &[&str]) -> Parsed {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        parse(flags, &args, Mode::Interspersed).unwrap()
    }

    #[test]
    fn commands_are_sorted_and_unique() {
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn no_two_flags_of_a_command_share_a_name() {
        for c in COMMANDS {
            let mut names: Vec<&str> = c
                .flags
                .iter()
                .flat_map(|f| f.names.iter().copied())
                .collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "command {}", c.name);
            assert!(!names.contains(&"help") && !names.contains(&"h"));
        }
    }

    #[test]
    fn runc_commands_are_all_known() {
        for name in [
            "checkpoint",
            "create",
            "delete",
            "events",
            "exec",
            "kill",
            "list",
            "pause",
            "ps",
            "restore",
            "resume",
            "run",
            "spec",
            "start",
            "state",
            "update",
            "features",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
        for name in ["checkpoint", "restore"] {
            assert!(find(name).unwrap().handler.is_none(), "{name}");
        }
        assert!(find("frob").is_none());
    }

    #[test]
    fn create_options_from_every_flag() {
        let p = parsed(
            CREATE_FLAGS,
            &[
                "id",
                "-b",
                "/b",
                "--pid-file=/p",
                "--console-socket",
                "/s",
                "--no-pivot",
                "--no-new-keyring",
                "--preserve-fds",
                "2",
            ],
        );
        let o = create_options(&p).unwrap();
        assert_eq!(o.bundle, PathBuf::from("/b"));
        assert_eq!(o.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(o.console_socket, Some(PathBuf::from("/s")));
        assert!(o.no_pivot && o.no_new_keyring);
        assert_eq!(o.preserve_fds, 2);
    }

    #[test]
    fn create_options_defaults() {
        let o = create_options(&parsed(CREATE_FLAGS, &["id"])).unwrap();
        assert_eq!(o.bundle, std::env::current_dir().unwrap());
        assert_eq!(o.pid_file, None);
        assert_eq!(o.console_socket, None);
        assert!(!o.no_pivot && !o.no_new_keyring);
        assert_eq!(o.preserve_fds, 0);
    }

    #[test]
    fn bad_preserve_fds_is_a_usage_error_naming_the_flag() {
        for bad in ["-1", "x", "", "99999999999"] {
            let p = parsed(CREATE_FLAGS, &["id", "--preserve-fds", bad]);
            let err = create_options(&p).unwrap_err();
            assert!(err.is_usage());
            assert!(err.to_string().contains("--preserve-fds"), "{err}");
        }
    }

    #[test]
    fn id_argument_count() {
        assert_eq!(one_id("state", &parsed(&[], &["x"])).unwrap(), "x");
        let err = one_id("state", &parsed(&[], &[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "berth: \"state\" requires exactly 1 argument (the container id), got 0"
        );
        assert!(one_id("state", &parsed(&[], &["a", "b"])).is_err());
        assert!(
            no_args("list", &parsed(&[], &["a"]))
                .unwrap_err()
                .is_usage()
        );
    }

    #[test]
    fn help_texts_mention_every_flag() {
        for c in COMMANDS {
            let h = command_help(c);
            assert!(h.contains(&format!("berth {}", c.name)));
            for f in c.flags {
                assert!(h.contains(&f.synopsis()), "{} {}", c.name, f.synopsis());
            }
            assert!(h.contains("--help, -h"));
        }
        let g = global_help(&[]);
        for c in COMMANDS {
            assert!(g.contains(c.name));
        }
    }
}
