//! `create`, `start`, `state`, `kill`, `delete` and `list`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_runtime_core::{Error as RuntimeError, State, parse_signal};

use super::{Ctx, create_options, one_id, print};
use crate::args::Parsed;
use crate::error::CliError;
use crate::format;

/// Whether `process.terminal` of the bundle's config is true. Only that field is read here
/// (`create` reads and checks the whole config); a config it can't be read from is loaded in
/// full, for the error that says why.
pub(crate) fn config_wants_terminal(bundle: &Path) -> Result<bool, CliError> {
    #[derive(serde::Deserialize)]
    struct Config {
        process: Option<Process>,
    }
    #[derive(serde::Deserialize)]
    struct Process {
        terminal: Option<bool>,
    }
    let light = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Config>(&bytes).ok());
    match light {
        Some(config) => Ok(config.process.and_then(|p| p.terminal).unwrap_or(false)),
        None => {
            berth_runtime_core::validate::load_bundle_config(bundle)?;
            Ok(false)
        }
    }
}

/// Rejects console set-ups where the pty master would be lost or never be made.
pub(crate) fn check_console(
    id: &str,
    terminal: bool,
    detached: bool,
    console_socket: Option<&Path>,
) -> Result<(), CliError> {
    match (terminal, console_socket) {
        (true, None) if detached => Err(CliError::TerminalWithoutConsoleSocket { id: id.into() }),
        (false, Some(path)) => Err(CliError::ConsoleSocketWithoutTerminal {
            id: id.into(),
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// `berth create ID`
pub(crate) fn create(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("create", p)?;
    let opts = create_options(p)?;
    let terminal = config_wants_terminal(&opts.bundle)?;
    check_console(id, terminal, true, opts.console_socket.as_deref())?;
    ctx.log.debug(|| format!("create {id:?}: {opts:?}"));
    let container = ctx.runtime.create(id, &opts)?;
    for w in container.warnings() {
        ctx.log.warn(w);
    }
    ctx.log
        .debug(|| format!("created {id:?}: init pid {}", container.pid()));
    Ok(0)
}

/// `berth start ID`
pub(crate) fn start(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("start", p)?;
    ctx.runtime.start(id)?;
    Ok(0)
}

/// `berth state ID`
pub(crate) fn state(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("state", p)?;
    let state = ctx.runtime.state(id)?;
    print(&format::state_json(&state)?)?;
    Ok(0)
}

/// `berth kill ID [SIGNAL]`
pub(crate) fn kill(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let (id, signal) = match p.positionals.as_slice() {
        [id] => (id, libc::SIGTERM),
        [id, sig] => (id, parse_signal(sig)?),
        other => {
            return Err(CliError::ArgCount {
                command: "kill",
                expected: "1 or 2 arguments (the container id and an optional signal)",
                got: other.len(),
            });
        }
    };
    let all = p.flag("all");
    ctx.log
        .debug(|| format!("kill {id:?}: signal {signal}, all: {all}"));
    ctx.runtime.kill(id, signal, all)?;
    Ok(0)
}

/// `berth delete ID`
pub(crate) fn delete(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("delete", p)?;
    let force = p.flag("force");
    match ctx.runtime.delete(id, force) {
        Ok(()) => Ok(0),
        // Like runc: deleting a container that is not there is fine when forced.
        Err(RuntimeError::NotFound { .. }) if force => {
            ctx.log
                .debug(|| format!("delete --force {id:?}: no such container"));
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fills the `owner` of listed containers like runc: the user owning the container's state
/// directory (`<root>/<id>`, else `<root>`), `#uid` when /etc/passwd has no name for it.
fn fill_owners(root: &Path, states: &mut [State]) {
    let mut passwd: Option<String> = None;
    for s in states.iter_mut().filter(|s| s.owner.is_empty()) {
        let uid = std::fs::metadata(root.join(&s.id))
            .or_else(|_| std::fs::metadata(root))
            .map(|m| m.uid())
            .unwrap_or_else(|_| nix::unistd::geteuid().as_raw());
        let passwd = passwd
            .get_or_insert_with(|| std::fs::read_to_string("/etc/passwd").unwrap_or_default());
        s.owner = format::user_name(passwd, uid);
    }
}

/// `berth list`
pub(crate) fn list(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    super::no_args("list", p)?;
    let fmt = p.value("format").unwrap_or("table");
    if fmt != "table" && fmt != "json" {
        return Err(CliError::InvalidValue {
            flag: "format",
            value: fmt.to_string(),
            expected: "table or json",
        });
    }
    let mut states = ctx.runtime.list()?;
    if p.flag("quiet") {
        let mut out = String::new();
        for s in &states {
            out.push_str(&s.id);
            out.push('\n');
        }
        return print(&out).map(|()| 0);
    }
    fill_owners(ctx.runtime.root(), &mut states);
    let out = if fmt == "json" {
        format::list_json(&states)?
    } else {
        format::list_table(&states)
    };
    print(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime_core::Status;
    use std::collections::BTreeMap;

    #[test]
    fn console_checks() {
        let sock = Path::new("/run/sock");
        // Detached with a terminal needs somewhere to send the pty master.
        let e = check_console("c", true, true, None).unwrap_err();
        assert!(e.to_string().contains("--console-socket"), "{e}");
        assert!(e.to_string().contains("process.terminal"), "{e}");
        assert!(check_console("c", true, true, Some(sock)).is_ok());
        // In the foreground berth receives the console itself, or passes the socket on.
        assert!(check_console("c", true, false, None).is_ok());
        assert!(check_console("c", true, false, Some(sock)).is_ok());
        // Without a terminal a console socket would never receive anything.
        for detached in [true, false] {
            let e = check_console("c", false, detached, Some(sock)).unwrap_err();
            assert!(e.to_string().contains("/run/sock"), "{e}");
            assert!(check_console("c", false, detached, None).is_ok());
        }
    }

    #[test]
    fn owners_come_from_the_state_directory() {
        let tmp = crate::test_support::TempDir::new("owner-test");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("mine")).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        std::os::unix::fs::chown(root.join("mine"), Some(4242), None).unwrap();
        let state = |id: &str, owner: &str| State {
            oci_version: "1.0.2".into(),
            id: id.into(),
            pid: 0,
            status: Status::Stopped,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00Z".into(),
            annotations: BTreeMap::new(),
            owner: owner.into(),
        };
        let mut states = vec![state("mine", ""), state("gone", ""), state("set", "keep")];
        fill_owners(root, &mut states);
        drop(tmp);
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert_eq!(states[0].owner, format::user_name(&passwd, 4242));
        assert_eq!(states[1].owner, format::user_name(&passwd, me));
        assert_eq!(states[2].owner, "keep");
    }
}
