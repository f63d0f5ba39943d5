//! berthctl's command line: the global flags, the commands with their flags, their help, and
//! what each parses to ([`Cmd`]). Parsing needs no connection (and is what the unit tests
//! check); [`crate::cmds`] runs the result.

use std::path::PathBuf;
use std::time::Duration;

use berth_cli::args::{Flag, Mode, Parsed, parse};

use crate::error::CtlError;

/// The socket used without `--address` or `BERTH_ADDRESS`.
pub const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";
/// The environment variable that replaces [`DEFAULT_ADDRESS`].
pub const ADDRESS_ENV: &str = "BERTH_ADDRESS";
/// The deadline of a call without `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const GLOBAL_FLAGS: &[Flag] = &[
    Flag::value(
        &["address", "a"],
        "SOCK",
        "the CRI socket (default: $BERTH_ADDRESS, else /run/berth/berthd.sock)",
    ),
    Flag::value(
        &["timeout"],
        "DURATION",
        "deadline of each call: 10, 10s, 500ms, 2m (default 10s; pull: none)",
    ),
    Flag::value(&["output", "o"], "FORMAT", "table (default) or json"),
    Flag::boolean(&["version", "v"], "print berthctl's version"),
];

const OUTPUT: Flag = Flag::value(&["output", "o"], "FORMAT", "table (default) or json");

/// How lists are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The CRI answer as JSON.
    Json,
}

/// The global settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The CRI socket.
    pub address: PathBuf,
    /// Each call's deadline.
    pub timeout: Duration,
    /// Whether `--timeout` was given.
    pub timeout_given: bool,
    /// The output format.
    pub output: Output,
}

/// `run`'s options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOpts {
    /// The pod's and the container's name (`--name`; generated when absent).
    pub name: Option<String>,
    /// Host network (`--net host`) or a network namespace of the pod's own (`--net pod`).
    pub host_network: bool,
    /// `--env K=V`, in order.
    pub envs: Vec<(String, String)>,
    /// `--rm`: stop and remove the container and the pod when it exits.
    pub remove: bool,
    /// `-d`: print the container's id and return once it runs.
    pub detach: bool,
    /// The image.
    pub image: String,
    /// The command's arguments (replacing the image's `Cmd`; empty: the image's).
    pub args: Vec<String>,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// `pull [--creds USER:PASS] IMAGE`
    Pull {
        /// `--creds`.
        creds: Option<(String, String)>,
        /// The image.
        image: String,
    },
    /// `images`
    Images,
    /// `rmi IMAGE...`
    Rmi {
        /// The images.
        images: Vec<String>,
    },
    /// `run ...`
    Run(RunOpts),
    /// `ps [-a]`
    Ps {
        /// `-a`: exited and created containers too.
        all: bool,
    },
    /// `pods`
    Pods,
    /// `exec [--timeout S] CONTAINER CMD...`
    Exec {
        /// Seconds, 0 for none.
        timeout: i64,
        /// The container.
        container: String,
        /// The command.
        cmd: Vec<String>,
    },
    /// `logs [-f] CONTAINER`
    Logs {
        /// `-f`.
        follow: bool,
        /// The container.
        container: String,
    },
    /// `stop [-t S] ID...`
    Stop {
        /// Seconds before SIGKILL.
        timeout: i64,
        /// Containers or pods.
        ids: Vec<String>,
    },
    /// `rm [-f] ID...`
    Rm {
        /// Stop first.
        force: bool,
        /// Containers or pods.
        ids: Vec<String>,
    },
    /// `inspect ID`
    Inspect {
        /// A container, pod or image.
        id: String,
    },
    /// `stats [ID]`
    Stats {
        /// One container, else all.
        id: Option<String>,
    },
    /// `version`
    Version,
    /// `info`
    Info,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this text and exit 0.
    Print(String),
    /// Run the command.
    Run(Global, Cmd),
}

/// A command's description.
#[derive(Debug)]
pub struct Command {
    /// Its name.
    pub name: &'static str,
    /// Its arguments as shown in help.
    pub usage: &'static str,
    /// One line about it.
    pub about: &'static str,
    /// Its flags.
    pub flags: &'static [Flag],
    /// `exec` and `run` stop at their first positional (the rest is the command).
    pub mode: Mode,
}

/// Every command.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "version",
        usage: "",
        about: "Show the runtime's name and version and the CRI version",
        flags: &[OUTPUT],
        mode: Mode::Interspersed,
    },
    Command {
        name: "info",
        usage: "",
        about: "Show the runtime's status and configuration (JSON)",
        flags: &[],
        mode: Mode::Interspersed,
    },
    Command {
        name: "pull",
        usage: "[--creds USER:PASS] IMAGE",
        about: "Pull an image, showing the bytes received on stderr",
        flags: &[Flag::value(
            &["creds"],
            "USER:PASS",
            "the registry's user name and password",
        )],
        mode: Mode::Interspersed,
    },
    Command {
        name: "images",
        usage: "",
        about: "List the images",
        flags: &[OUTPUT],
        mode: Mode::Interspersed,
    },
    Command {
        name: "rmi",
        usage: "IMAGE...",
        about: "Remove images (by reference, id or id prefix)",
        flags: &[],
        mode: Mode::Interspersed,
    },
    Command {
        name: "run",
        usage: "[--name N] [--net host|pod] [--env K=V]... [--rm] [-d] IMAGE [ARG...]",
        about: "Run a command in a new pod: one container, its log shown and its exit status \
                returned (ARG... replaces the image's Cmd)",
        flags: &[
            Flag::value(&["name"], "N", "the pod's and the container's name"),
            Flag::value(
                &["net"],
                "MODE",
                "host: the host's network; pod (default): a network namespace of its own",
            ),
            Flag::value(&["env", "e"], "K=V", "an environment variable (repeatable)"),
            Flag::boolean(&["rm"], "remove the container and the pod when it exits"),
            Flag::boolean(
                &["detach", "d"],
                "print the container's id and leave it running",
            ),
        ],
        mode: Mode::StopAtFirstPositional,
    },
    Command {
        name: "ps",
        usage: "[-a]",
        about: "List the running containers",
        flags: &[
            Flag::boolean(&["all", "a"], "the exited and created ones too"),
            OUTPUT,
        ],
        mode: Mode::Interspersed,
    },
    Command {
        name: "pods",
        usage: "",
        about: "List the pods",
        flags: &[OUTPUT],
        mode: Mode::Interspersed,
    },
    Command {
        name: "exec",
        usage: "[--timeout S] CONTAINER CMD...",
        about: "Run a command in a running container and wait for it (ExecSync)",
        flags: &[Flag::value(
            &["timeout"],
            "S",
            "kill the command after S seconds (default 0: no limit)",
        )],
        mode: Mode::StopAtFirstPositional,
    },
    Command {
        name: "logs",
        usage: "[-f] CONTAINER",
        about: "Show a container's output",
        flags: &[Flag::boolean(
            &["follow", "f"],
            "keep showing new output until the container exits",
        )],
        mode: Mode::Interspersed,
    },
    Command {
        name: "stop",
        usage: "[-t S] ID...",
        about: "Stop containers or pods",
        flags: &[Flag::value(
            &["timeout", "t"],
            "S",
            "seconds between SIGTERM and SIGKILL for a container (default 10)",
        )],
        mode: Mode::Interspersed,
    },
    Command {
        name: "rm",
        usage: "[-f] ID...",
        about: "Remove containers or pods",
        flags: &[Flag::boolean(&["force", "f"], "stop them first")],
        mode: Mode::Interspersed,
    },
    Command {
        name: "inspect",
        usage: "ID",
        about: "Show a container's, pod's or image's status (JSON, verbose)",
        flags: &[],
        mode: Mode::Interspersed,
    },
    Command {
        name: "stats",
        usage: "[ID]",
        about: "Show the containers' CPU and memory use",
        flags: &[OUTPUT],
        mode: Mode::Interspersed,
    },
];

/// The overall help.
pub fn global_help() -> String {
    let mut out = String::from(
        "berthctl: a command line for CRI runtimes (berthd, containerd)\n\n\
         Usage: berthctl [GLOBAL FLAGS] COMMAND [FLAGS] [ARGS]\n\nCommands:\n",
    );
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in COMMANDS {
        out.push_str(&format!("  {:width$}   {}\n", c.name, c.about));
    }
    out.push_str("\nGlobal flags:\n");
    out.push_str(&flags_help(GLOBAL_FLAGS));
    out.push_str("\n`berthctl COMMAND --help` shows a command's flags.\n");
    out
}

/// A command's help.
pub fn command_help(c: &Command) -> String {
    let mut out = format!("Usage: berthctl {} {}\n\n{}\n", c.name, c.usage, c.about);
    if !c.flags.is_empty() {
        out.push_str("\nFlags:\n");
        out.push_str(&flags_help(c.flags));
    }
    out
}

fn flags_help(flags: &[Flag]) -> String {
    let width = flags
        .iter()
        .map(|f| f.synopsis().chars().count())
        .max()
        .unwrap_or(0);
    flags
        .iter()
        .map(|f| format!("  {:width$}   {}\n", f.synopsis(), f.help))
        .collect()
}

/// Parses the arguments (without the program name); `env_address` is `$BERTH_ADDRESS`.
/// A usage error comes with the help to show after it, if any.
pub fn parse_args(
    args: &[String],
    env_address: Option<String>,
) -> Result<Action, (CtlError, Option<String>)> {
    let g = parse(GLOBAL_FLAGS, args, Mode::StopAtFirstPositional)
        .map_err(|e| (e.into(), Some(global_help())))?;
    if g.flag("version") {
        return Ok(Action::Print(format!(
            "berthctl version {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let Some((name, rest)) = g.positionals.split_first() else {
        if g.help {
            return Ok(Action::Print(global_help()));
        }
        return Err((
            CtlError::Usage("no command given".into()),
            Some(global_help()),
        ));
    };
    if g.help || name == "help" {
        return match (name.as_str(), rest) {
            ("help", [c]) => match find(c) {
                Some(c) => Ok(Action::Print(command_help(c))),
                None => Err((unknown(c), Some(global_help()))),
            },
            _ => Ok(Action::Print(global_help())),
        };
    }
    let Some(command) = find(name) else {
        return Err((unknown(name), Some(global_help())));
    };
    let help = || Some(command_help(command));
    let p = parse(command.flags, rest, command.mode).map_err(|e| (e.into(), help()))?;
    if p.help {
        return Ok(Action::Print(command_help(command)));
    }
    let global = global(&g, &p, env_address).map_err(|e| (e, None))?;
    let cmd = parse_cmd(command.name, &p).map_err(|e| (e, help()))?;
    Ok(Action::Run(global, cmd))
}

fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

fn unknown(name: &str) -> CtlError {
    CtlError::Usage(format!("unknown command {name:?}"))
}

fn global(g: &Parsed, p: &Parsed, env_address: Option<String>) -> Result<Global, CtlError> {
    let address = g
        .value("address")
        .map(String::from)
        .or(env_address.filter(|a| !a.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let address = address.strip_prefix("unix://").unwrap_or(&address);
    if address.is_empty() {
        return Err(CtlError::Usage("--address: an empty socket path".into()));
    }
    let timeout = match g.value("timeout") {
        Some(t) => parse_duration(t).ok_or_else(|| {
            CtlError::Usage(format!(
                "--timeout {t:?}: not a duration (10, 10s, 500ms, 2m)"
            ))
        })?,
        None => DEFAULT_TIMEOUT,
    };
    let output = match p.value("output").or(g.value("output")) {
        None | Some("table") => Output::Table,
        Some("json") => Output::Json,
        Some(o) => {
            return Err(CtlError::Usage(format!(
                "--output {o:?}: want table or json"
            )));
        }
    };
    Ok(Global {
        address: PathBuf::from(address),
        timeout,
        timeout_given: g.value("timeout").is_some(),
        output,
    })
}

/// `10`, `10s`, `500ms`, `2m`, `1.5s`: a positive duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    let secs = v * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// Seconds as a non-negative whole number for `flag`, `default` when absent.
fn seconds(p: &Parsed, flag: &str, default: i64) -> Result<i64, CtlError> {
    match p.value(flag) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| CtlError::Usage(format!("--{flag} {v:?}: want whole seconds, >= 0"))),
    }
}

fn args_count(
    name: &str,
    p: &Parsed,
    min: usize,
    max: Option<usize>,
    what: &str,
) -> Result<(), CtlError> {
    let n = p.positionals.len();
    if n < min || max.is_some_and(|m| n > m) {
        return Err(CtlError::Usage(format!(
            "{name}: want {what}, got {n} argument{}",
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

fn parse_cmd(name: &str, p: &Parsed) -> Result<Cmd, CtlError> {
    let pos = &p.positionals;
    let first = || pos.first().cloned().unwrap_or_default();
    Ok(match name {
        "version" | "info" | "images" | "pods" | "ps" => {
            args_count(name, p, 0, Some(0), "no arguments")?;
            match name {
                "version" => Cmd::Version,
                "info" => Cmd::Info,
                "images" => Cmd::Images,
                "pods" => Cmd::Pods,
                _ => Cmd::Ps { all: p.flag("all") },
            }
        }
        "pull" => {
            args_count(name, p, 1, Some(1), "one IMAGE")?;
            let creds = match p.value("creds") {
                None => None,
                Some(c) => {
                    let (u, pw) = c
                        .split_once(':')
                        .ok_or_else(|| CtlError::Usage("--creds: want USER:PASS".into()))?;
                    if u.is_empty() {
                        return Err(CtlError::Usage("--creds: an empty user name".into()));
                    }
                    Some((u.to_string(), pw.to_string()))
                }
            };
            Cmd::Pull {
                creds,
                image: first(),
            }
        }
        "rmi" => {
            args_count(name, p, 1, None, "at least one IMAGE")?;
            Cmd::Rmi {
                images: pos.clone(),
            }
        }
        "run" => Cmd::Run(parse_run(p)?),
        "exec" => {
            args_count(name, p, 2, None, "CONTAINER and a command")?;
            Cmd::Exec {
                timeout: seconds(p, "timeout", 0)?,
                container: first(),
                cmd: pos[1..].to_vec(),
            }
        }
        "logs" => {
            args_count(name, p, 1, Some(1), "one CONTAINER")?;
            Cmd::Logs {
                follow: p.flag("follow"),
                container: first(),
            }
        }
        "stop" => {
            args_count(name, p, 1, None, "at least one ID")?;
            Cmd::Stop {
                timeout: seconds(p, "timeout", 10)?,
                ids: pos.clone(),
            }
        }
        "rm" => {
            args_count(name, p, 1, None, "at least one ID")?;
            Cmd::Rm {
                force: p.flag("force"),
                ids: pos.clone(),
            }
        }
        "inspect" => {
            args_count(name, p, 1, Some(1), "one ID")?;
            Cmd::Inspect { id: first() }
        }
        "stats" => {
            args_count(name, p, 0, Some(1), "at most one ID")?;
            Cmd::Stats {
                id: pos.first().cloned(),
            }
        }
        other => return Err(unknown(other)),
    })
}

fn parse_run(p: &Parsed) -> Result<RunOpts, CtlError> {
    args_count("run", p, 1, None, "IMAGE [ARG...]")?;
    let host_network = match p.value("net") {
        Some("host") => true,
        None | Some("pod") => false,
        Some(n) => return Err(CtlError::Usage(format!("--net {n:?}: want host or pod"))),
    };
    let envs = p
        .values("env")
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CtlError::Usage(format!("--env {kv:?}: want K=V"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let name = p.value("name").map(String::from);
    if let Some(n) = &name
        && !valid_name(n)
    {
        return Err(CtlError::Usage(format!(
            "--name {n:?}: want letters, digits, '-', '_' or '.' (at most 63, starting \
                 with a letter or digit)"
        )));
    }
    let (remove, detach) = (p.flag("rm"), p.flag("detach"));
    if remove && detach {
        return Err(CtlError::Usage(
            "--rm and -d do not go together (nothing would wait to remove it)".into(),
        ));
    }
    Ok(RunOpts {
        name,
        host_network,
        envs,
        remove,
        detach,
        image: p.positionals[0].clone(),
        args: p.positionals[1..].to_vec(),
    })
}

/// A name that fits in the log directory's name and a hostname.
pub fn valid_name(n: &str) -> bool {
    n.len() <= 63
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(v: &[&str]) -> Result<(Global, Cmd), String> {
        match parse_args(&argv(v), None) {
            Ok(Action::Run(g, c)) => Ok((g, c)),
            Ok(Action::Print(t)) => Err(format!("printed: {t}")),
            Err((e, _)) => Err(e.to_string()),
        }
    }

    fn usage(v: &[&str]) -> String {
        match parse_args(&argv(v), None) {
            Err((e, _)) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            other => panic!("{v:?}: {other:?}"),
        }
    }

    #[test]
    fn globals_and_defaults() {
        let (g, c) = run(&["ps"]).unwrap();
        assert_eq!(c, Cmd::Ps { all: false });
        assert_eq!(g.address, PathBuf::from(DEFAULT_ADDRESS));
        assert_eq!(g.timeout, DEFAULT_TIMEOUT);
        assert!(!g.timeout_given);
        assert_eq!(g.output, Output::Table);
        let (g, _) = run(&[
            "--address",
            "unix:///x.sock",
            "--timeout=500ms",
            "-o",
            "json",
            "ps",
        ])
        .unwrap();
        assert_eq!(g.address, PathBuf::from("/x.sock"));
        assert_eq!(g.timeout, Duration::from_millis(500));
        assert!(g.timeout_given);
        assert_eq!(g.output, Output::Json);
        // The command's -o wins.
        let (g, c) = run(&["-o", "json", "ps", "-a", "-o", "table"]).unwrap();
        assert_eq!((g.output, c), (Output::Table, Cmd::Ps { all: true }));
    }

    #[test]
    fn address_from_the_environment() {
        let Ok(Action::Run(g, _)) = parse_args(&argv(&["pods"]), Some("/e.sock".into())) else {
            panic!()
        };
        assert_eq!(g.address, PathBuf::from("/e.sock"));
        let Ok(Action::Run(g, _)) =
            parse_args(&argv(&["-a", "/f.sock", "pods"]), Some("/e.sock".into()))
        else {
            panic!()
        };
        assert_eq!(g.address, PathBuf::from("/f.sock"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "0", "-1", "x", "10x", "nan", "inf"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_options() {
        let (_, c) = run(&[
            "run",
            "--name",
            "web",
            "--net",
            "host",
            "-e",
            "A=1",
            "--env=B=x=y",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hi",
            "--rm",
        ])
        .unwrap();
        assert_eq!(
            c,
            Cmd::Run(RunOpts {
                name: Some("web".into()),
                host_network: true,
                envs: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
                remove: true,
                detach: false,
                image: "busybox".into(),
                // Flags after the image belong to the command.
                args: argv(&["sh", "-c", "echo hi", "--rm"]),
            })
        );
        let (_, Cmd::Run(o)) = run(&["run", "-d", "img"]).unwrap() else {
            panic!()
        };
        assert!(o.detach && !o.host_network && o.args.is_empty() && o.name.is_none());
    }

    #[test]
    fn run_rejects() {
        assert_eq!(
            usage(&["run", "--net", "bridge", "img"]),
            "--net \"bridge\": want host or pod"
        );
        assert_eq!(
            usage(&["run", "-e", "NOVALUE", "img"]),
            "--env \"NOVALUE\": want K=V"
        );
        assert_eq!(usage(&["run", "-e", "=v", "img"]), "--env \"=v\": want K=V");
        assert!(usage(&["run", "--rm", "-d", "img"]).starts_with("--rm and -d"));
        assert!(usage(&["run", "--name", "a/b", "img"]).starts_with("--name \"a/b\""));
        assert_eq!(usage(&["run"]), "run: want IMAGE [ARG...], got 0 arguments");
        assert_eq!(
            usage(&["run", "--bogus", "img"]),
            "flag provided but not defined: --bogus"
        );
    }

    #[test]
    fn exec_keeps_the_commands_flags() {
        let (_, c) = run(&[
            "exec",
            "--timeout",
            "5",
            "web",
            "ls",
            "-l",
            "--timeout",
            "x",
        ])
        .unwrap();
        assert_eq!(
            c,
            Cmd::Exec {
                timeout: 5,
                container: "web".into(),
                cmd: argv(&["ls", "-l", "--timeout", "x"]),
            }
        );
        assert_eq!(
            usage(&["exec", "web"]),
            "exec: want CONTAINER and a command, got 1 argument"
        );
        assert!(usage(&["exec", "--timeout", "-1", "web", "ls"]).starts_with("--timeout \"-1\""));
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            run(&["pull", "--creds", "u:p:w", "img"]).unwrap().1,
            Cmd::Pull {
                creds: Some(("u".into(), "p:w".into())),
                image: "img".into()
            }
        );
        assert_eq!(
            usage(&["pull", "--creds", "nocolon", "img"]),
            "--creds: want USER:PASS"
        );
        assert_eq!(
            run(&["stop", "-t", "3", "a", "b"]).unwrap().1,
            Cmd::Stop {
                timeout: 3,
                ids: argv(&["a", "b"])
            }
        );
        assert_eq!(
            run(&["stop", "a"]).unwrap().1,
            Cmd::Stop {
                timeout: 10,
                ids: argv(&["a"])
            }
        );
        assert_eq!(
            run(&["rm", "a", "-f"]).unwrap().1,
            Cmd::Rm {
                force: true,
                ids: argv(&["a"])
            }
        );
        assert_eq!(
            run(&["logs", "-f", "c"]).unwrap().1,
            Cmd::Logs {
                follow: true,
                container: "c".into()
            }
        );
        assert_eq!(run(&["stats"]).unwrap().1, Cmd::Stats { id: None });
        assert_eq!(
            usage(&["stats", "a", "b"]),
            "stats: want at most one ID, got 2 arguments"
        );
        assert_eq!(
            usage(&["images", "x"]),
            "images: want no arguments, got 1 argument"
        );
        assert_eq!(
            usage(&["rmi"]),
            "rmi: want at least one IMAGE, got 0 arguments"
        );
        assert_eq!(
            usage(&["ps", "-o", "yaml"]),
            "--output \"yaml\": want table or json"
        );
        assert_eq!(
            usage(&["--timeout", "soon", "ps"]),
            "--timeout \"soon\": not a duration (10, 10s, 500ms, 2m)"
        );
    }

    #[test]
    fn help_and_unknown() {
        let printed = |v: &[&str]| match parse_args(&argv(v), None) {
            Ok(Action::Print(t)) => t,
            other => panic!("{v:?}: {other:?}"),
        };
        assert!(printed(&["--help"]).contains("Commands:"));
        assert!(printed(&["help"]).contains("Commands:"));
        assert!(printed(&["run", "--help"]).starts_with("Usage: berthctl run [--name N]"));
        assert!(printed(&["help", "exec"]).contains("--timeout S"));
        // A command's --help wins over its other arguments, even wrong ones.
        assert!(printed(&["stats", "a", "b", "-h"]).starts_with("Usage: berthctl stats"));
        assert!(printed(&["--version"]).starts_with("berthctl version "));
        assert_eq!(usage(&["frobnicate"]), "unknown command \"frobnicate\"");
        assert_eq!(usage(&[]), "no command given");
        // Usage errors of a command come with its help.
        let Err((_, Some(help))) = parse_args(&argv(&["rm"]), None) else {
            panic!()
        };
        assert!(help.starts_with("Usage: berthctl rm"));
    }
}
