//! The foreground of `berth run` and `berth exec`: berth-shim-core's supervisor on the
//! process' host pid, logging to the CLI's [`Logger`].

use std::os::fd::OwnedFd;

use berth_shim_core::relay::Relay;
use berth_shim_core::signals::{FORWARDED, Signals};
use berth_shim_core::supervise::{Event, supervise as supervise_pid};

use crate::error::CliError;
use crate::logging::Logger;

/// Blocks the forwarded signals and `SIGCHLD`. The container's init and exec's child empty
/// the mask they inherit first thing, and hooks are spawned with an empty one: this may come
/// before create, and must come before the program can run.
pub(crate) fn block_signals() -> Result<Signals, CliError> {
    Ok(Signals::block(&FORWARDED)?)
}

/// Waits for the container's init (or an exec'd process), our child `pid`, to exit while
/// forwarding signals to it and, when `master` is given, relaying the console to our stdin
/// and stdout. Returns the exit code (128 + N when killed by signal N).
pub(crate) fn supervise(
    pid: i32,
    signals: &Signals,
    master: Option<OwnedFd>,
    log: &Logger,
) -> Result<i32, CliError> {
    let mut relay = master.map(Relay::stdio).transpose()?;
    let status = supervise_pid(pid, signals, relay.as_mut(), |event| match event {
        Event::Forwarding { signal, pid } => {
            log.debug(|| format!("forwarding {signal} to container init {pid}"));
        }
        Event::ResizeFailed { error } => log.debug(|| format!("resize console: {error}")),
        Event::Reaped(exit) => {
            log.debug(|| format!("reaped orphan {}: {:?}", exit.pid, exit.status))
        }
        _ => {}
    })?;
    let code = status.code();
    log.debug(|| format!("container init {pid} exited: {code}"));
    Ok(code)
}
