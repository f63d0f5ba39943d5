//! `berth exec`: run one more process in a container, as `runc exec` does.
//!
//! Without `--process`, the process is the container's config.json `process` (env, user,
//! capabilities, cwd, rlimits, no_new_privileges...) with its args replaced by the command
//! line's and the flags applied on top. With `--process FILE`, FILE is the whole process
//! (a runtime-spec `process` object) and the flags about the process are ignored, like the
//! arguments after the id.

use std::path::{Path, PathBuf};

use berth_runtime_core::ExecOptions;
use berth_runtime_core::oci_spec::runtime::{Capability, Process};
use berth_shim_core::console::ConsoleSocket;

use super::Ctx;
use super::lifecycle::check_console;
use crate::args::{Flag, Parsed};
use crate::console::take_console;
use crate::error::CliError;
use crate::foreground::{block_signals, supervise};

/// The flags of `berth exec` (those of `runc exec`).
pub(crate) const EXEC_FLAGS: &[Flag] = &[
    Flag::value(
        &["console-socket"],
        "PATH",
        "unix socket that receives the pty master of the process (with --tty)",
    ),
    Flag::value(
        &["cwd"],
        "DIR",
        "working directory of the process in the container",
    ),
    Flag::value(
        &["env", "e"],
        "NAME=VALUE",
        "set an environment variable (repeatable)",
    ),
    Flag::boolean(&["tty", "t"], "allocate a pseudo-terminal for the process"),
    Flag::value(
        &["user", "u"],
        "UID[:GID]",
        "user (and group) to run the process as",
    ),
    Flag::value(
        &["additional-gids", "g"],
        "GID",
        "an additional group of the process (repeatable)",
    ),
    Flag::value(
        &["process", "p"],
        "FILE",
        "the process as a runtime-spec process JSON (the command and other flags are ignored)",
    ),
    Flag::boolean(
        &["detach", "d"],
        "return as soon as the process runs instead of waiting for it",
    ),
    Flag::value(
        &["pid-file"],
        "FILE",
        "write the host pid of the process to FILE",
    ),
    Flag::value(
        &["process-label"],
        "LABEL",
        "the SELinux label of the process",
    ),
    Flag::value(
        &["apparmor"],
        "PROFILE",
        "the AppArmor profile of the process",
    ),
    Flag::boolean(&["no-new-privs"], "set no_new_privs for the process"),
    Flag::value(
        &["cap", "c"],
        "CAP",
        "add a capability (bounding, effective and permitted sets; repeatable)",
    ),
    Flag::value(
        &["preserve-fds"],
        "N",
        "pass N more file descriptors (3 .. 3+N-1) to the process (default: 0)",
    ),
    Flag::value(
        &["cgroup"],
        "[CTRL[,CTRL]:]PATH",
        "run the process in an existing sub-cgroup of the container's (repeatable)",
    ),
    Flag::boolean(&["ignore-paused"], "allow exec in a paused container"),
];

fn invalid(flag: &'static str, value: &str, expected: &'static str) -> CliError {
    CliError::InvalidValue {
        flag,
        value: value.to_string(),
        expected,
    }
}

/// Reads a `--process` file. As with runc, a process without `user` runs as uid 0, gid 0
/// (the spec's type requires the field).
fn load_process(path: &Path) -> Result<Process, CliError> {
    let bad = |e: serde_json::Error| {
        CliError::io(
            "parse process",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    };
    let data = std::fs::read(path).map_err(|e| CliError::io("read process", path, e))?;
    let mut value: serde_json::Value = serde_json::from_slice(&data).map_err(bad)?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    serde_json::from_value(value).map_err(bad)
}

/// Sets `NAME=VALUE` in `env`, replacing an earlier entry of the same name.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let name = entry.split_once('=').map_or(entry, |(n, _)| n);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == name)
    {
        Some(old) => *old = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

/// `--cap NAME` as the spec's capability (`CAP_` optional, any case).
fn parse_cap(name: &str) -> Result<Capability, CliError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| invalid("cap", name, "a capability name such as CAP_NET_ADMIN"))
}

/// The process from the container's config and the command line.
fn process_from_flags(
    mut process: Process,
    args: &[String],
    p: &Parsed,
) -> Result<Process, CliError> {
    process.set_args(Some(args.to_vec()));
    process.set_terminal(Some(p.flag("tty")));
    if let Some(cwd) = p.value("cwd") {
        process.set_cwd(PathBuf::from(cwd));
    }
    let envs = p.values("env");
    if !envs.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for e in envs {
            set_env(&mut env, e);
        }
        process.set_env(Some(env));
    }
    let mut user = process.user().clone();
    if let Some(u) = p.value("user") {
        let expected = "UID or UID:GID (numbers)";
        let (uid, gid) = match u.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (u, None),
        };
        user.set_uid(uid.parse().map_err(|_| invalid("user", u, expected))?);
        if let Some(gid) = gid {
            user.set_gid(gid.parse().map_err(|_| invalid("user", u, expected))?);
        }
    }
    let gids = p.values("additional-gids");
    if !gids.is_empty() {
        let gids = gids
            .iter()
            .map(|g| {
                g.parse()
                    .map_err(|_| invalid("additional-gids", g, "a numeric group id"))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        user.set_additional_gids(Some(gids));
    }
    process.set_user(user);
    if let Some(a) = p.value("apparmor") {
        process.set_apparmor_profile(Some(a.to_string()));
    }
    if let Some(l) = p.value("process-label") {
        process.set_selinux_label(Some(l.to_string()));
    }
    if p.flag("no-new-privs") {
        process.set_no_new_privileges(Some(true));
    }
    let caps = p.values("cap");
    if !caps.is_empty() {
        let mut c = process.capabilities().clone().unwrap_or_default();
        for name in caps {
            let cap = parse_cap(name)?;
            let add = |s: &Option<std::collections::HashSet<Capability>>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pm) = (add(c.bounding()), add(c.effective()), add(c.permitted()));
            c.set_bounding(b);
            c.set_effective(e);
            c.set_permitted(pm);
        }
        process.set_capabilities(Some(c));
    }
    Ok(process)
}

/// `berth exec [flags] ID COMMAND [ARGS...]` or `berth exec -p FILE ID`.
pub(crate) fn exec(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let Some((id, args)) = p.positionals.split_first() else {
        return Err(CliError::ArgCount {
            command: "exec",
            expected: "the container id and a command (or --process FILE)",
            got: 0,
        });
    };
    let process = match p.value("process").filter(|f| !f.is_empty()) {
        Some(file) => {
            if !args.is_empty() {
                ctx.log.debug(|| {
                    format!("exec {id:?}: arguments {args:?} ignored, --process {file} given")
                });
            }
            let mut process = load_process(Path::new(file))?;
            // Without capabilities of its own the process gets the container's, as with
            // runc; none when the container has none either (absent is empty to the
            // library, never the runtime's own).
            if process.capabilities().is_none() {
                let config = ctx.runtime.config(id)?;
                let caps = config
                    .process()
                    .as_ref()
                    .and_then(|p| p.capabilities().clone());
                process.set_capabilities(caps);
            }
            process
        }
        None => {
            if args.is_empty() {
                return Err(CliError::ArgCount {
                    command: "exec",
                    expected: "a command after the container id (or --process FILE)",
                    got: p.positionals.len(),
                });
            }
            // The config the container was created from, as the library's exec uses it. One
            // created without a process gives nothing but the defaults of `Process`, less its
            // capabilities: absent means none.
            let base = ctx
                .runtime
                .config(id)?
                .process()
                .clone()
                .unwrap_or_else(|| {
                    let mut p = berth_runtime_core::oci_spec::runtime::Process::default();
                    p.set_capabilities(None);
                    p
                });
            process_from_flags(base, args, p)?
        }
    };
    let preserve_fds = match p.value("preserve-fds") {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            invalid(
                "preserve-fds",
                v,
                "a non-negative number of file descriptors",
            )
        })?,
    };
    let path = |name: &str| p.value(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cgroups = p.values("cgroup");
    let mut opts = ExecOptions::default()
        .console_socket(path("console-socket"))
        .pid_file(path("pid-file"))
        .preserve_fds(preserve_fds)
        .cgroup((!cgroups.is_empty()).then(|| cgroups.join("\n")))
        .ignore_paused(p.flag("ignore-paused"));
    let detach = p.flag("detach");
    let terminal = process.terminal().unwrap_or(false);
    check_console(id, terminal, detach, opts.console_socket.as_deref())?;
    let console = if terminal && !detach && opts.console_socket.is_none() {
        let sock = ConsoleSocket::bind()?;
        opts.console_socket = Some(sock.path().to_path_buf());
        Some(sock)
    } else {
        None
    };

    ctx.log
        .debug(|| format!("exec {id:?}: {process:?}, {opts:?}, detach: {detach}"));
    // Blocked before the process starts, so that a signal sent as soon as it runs is
    // forwarded rather than fatal to berth (the exec'd process starts with an empty mask).
    let signals = if detach { None } else { Some(block_signals()?) };
    let proc = ctx.runtime.exec(id, &process, &opts)?;
    let Some(signals) = signals else {
        return Ok(0);
    };
    let (master, raw) = take_console(console, &ctx.log)?;
    let code = supervise(proc.pid(), &signals, master, &ctx.log);
    drop(raw);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Mode, parse};

    fn parsed(v: &[&str]) -> Parsed {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        parse(EXEC_FLAGS, &args, Mode::StopAtFirstPositional).unwrap()
    }

    fn base() -> Process {
        let mut p = Process::default();
        p.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        p
    }

    #[test]
    fn flags_override_the_config_process() {
        let p = parsed(&[
            "-e",
            "A=2",
            "--env",
            "B=3",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1001",
            "-g",
            "5",
            "-g",
            "6",
            "-t",
            "--no-new-privs",
            "--cap",
            "SYS_ADMIN",
            "-c",
            "cap_net_raw",
            "id",
            "sh",
            "-c",
            "x",
        ]);
        assert_eq!(p.positionals, ["id", "sh", "-c", "x"]);
        let out = process_from_flags(base(), &p.positionals[1..], &p).unwrap();
        assert_eq!(out.args().clone().unwrap(), ["sh", "-c", "x"]);
        assert_eq!(out.env().clone().unwrap(), ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(out.cwd(), Path::new("/tmp"));
        assert_eq!((out.user().uid(), out.user().gid()), (1000, 1001));
        assert_eq!(out.user().additional_gids().clone().unwrap(), [5, 6]);
        assert_eq!(out.terminal(), Some(true));
        assert_eq!(out.no_new_privileges(), Some(true));
        let caps = out.capabilities().clone().unwrap();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            let set = set.clone().unwrap();
            assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::NetRaw));
        }
    }

    #[test]
    fn user_without_gid_keeps_the_configs_gid() {
        let mut b = base();
        let mut u = b.user().clone();
        u.set_gid(7);
        b.set_user(u);
        let p = parsed(&["-u", "42", "id", "true"]);
        let out = process_from_flags(b, &p.positionals[1..], &p).unwrap();
        assert_eq!((out.user().uid(), out.user().gid()), (42, 7));
        assert_eq!(out.terminal(), Some(false));
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["-u", "root", "id", "x"][..], "--user"),
            (&["-u", "1:x", "id", "x"][..], "--user"),
            (&["-g", "wheel", "id", "x"][..], "--additional-gids"),
            (&["--cap", "CAP_NOPE", "id", "x"][..], "--cap"),
        ] {
            let p = parsed(args);
            let err = process_from_flags(base(), &p.positionals[1..], &p).unwrap_err();
            assert!(err.is_usage(), "{err}");
            assert!(err.to_string().contains(flag), "{err}");
        }
    }
}
