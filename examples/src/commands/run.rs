//! `berth run`: create + start, then (in the foreground) supervise, wait and delete.

use berth_runtime_core::Runtime;
use berth_shim_core::console::ConsoleSocket;
use berth_shim_core::reap::set_child_subreaper;

use super::lifecycle::{check_console, config_wants_terminal};
use super::{Ctx, create_options, one_id};
use crate::args::Parsed;
use crate::console::take_console;
use crate::error::CliError;
use crate::foreground::{block_signals, supervise};
use crate::logging::Logger;

/// Force-deletes the container on drop unless disarmed: a `run` that fails half-way leaves
/// nothing behind.
struct DeleteGuard<'a> {
    runtime: &'a Runtime,
    id: &'a str,
    log: &'a Logger,
    armed: bool,
}

impl Drop for DeleteGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.runtime.delete(self.id, true)
        {
            self.log
                .error(&format!("clean up container {:?}: {e}", self.id));
        }
    }
}

/// `berth run ID`
pub(crate) fn run(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("run", p)?;
    let mut opts = create_options(p)?;
    let detach = p.flag("detach");
    let keep = p.flag("keep");
    if detach && keep {
        return Err(CliError::InvalidValue {
            flag: "keep",
            value: "true".into(),
            expected: "only meaningful in the foreground: not together with --detach",
        });
    }
    let terminal = config_wants_terminal(&opts.bundle)?;
    check_console(id, terminal, detach, opts.console_socket.as_deref())?;

    if !detach && !p.flag("no-subreaper") {
        // Orphans of the container (without a pid namespace) are re-parented to us and
        // reaped by the supervision loop.
        set_child_subreaper()?;
    }
    let console = if terminal && !detach && opts.console_socket.is_none() {
        let sock = ConsoleSocket::bind()?;
        opts.console_socket = Some(sock.path().to_path_buf());
        Some(sock)
    } else {
        None
    };

    ctx.log
        .debug(|| format!("run {id:?}: {opts:?}, detach: {detach}"));
    // Without a terminal of ours to take and size, nothing needs to happen between create
    // and start: one step, without the start barrier. With one, the program waits until
    // the terminal is sized.
    let started = console.is_none();
    // Signals are caught from before the program can run: in one step that is before create
    // (the init empties the mask it inherits first thing, and hooks start with an empty
    // one); with a terminal, after create (before start). One that comes during create is
    // held and forwarded to the container once it runs, as runc's handler does (or dropped
    // with a create that fails).
    let mut signals = None;
    if started && !detach {
        signals = Some(block_signals()?);
    }
    let container = if started {
        ctx.runtime.run(id, &opts)?
    } else {
        ctx.runtime.create(id, &opts)?
    };
    for w in container.warnings() {
        ctx.log.warn(w);
    }
    let mut guard = DeleteGuard {
        runtime: &ctx.runtime,
        id,
        log: &ctx.log,
        armed: true,
    };
    if signals.is_none() && !detach {
        signals = Some(block_signals()?);
    }
    // The runtime sent the pty master while creating: take it and size the container's
    // terminal like ours before the user process runs.
    let (master, raw) = take_console(console, &ctx.log)?;
    if !started {
        ctx.runtime.start(id)?;
    }
    let Some(signals) = signals else {
        guard.armed = false;
        return Ok(0);
    };
    let code = supervise(container.pid(), &signals, master, &ctx.log);
    drop(raw);
    let code = code?;

    guard.armed = false;
    if !keep && let Err(e) = ctx.runtime.delete_container(container, true) {
        // The exit code of the container matters more to the caller; report and go on.
        ctx.log.error(&format!("delete container {id:?}: {e}"));
    }
    Ok(code)
}
