//! The foreground side of `-t` without `--console-socket`: berth-shim-core's console socket
//! receives the pty master, sized like our terminal, with our terminal in raw mode.

use std::os::fd::OwnedFd;
use std::time::Duration;

use berth_shim_core::console::{ConsoleSocket, RawTty, copy_winsize};

use crate::error::CliError;
use crate::logging::Logger;

/// How long to wait for the runtime to hand over the console, per step.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the pty master the runtime sent to `console` (if any), sizes it like our terminal and
/// puts our terminal in raw mode (restored when the returned guard drops).
pub(crate) fn take_console(
    console: Option<ConsoleSocket>,
    log: &Logger,
) -> Result<(Option<OwnedFd>, Option<RawTty>), CliError> {
    let master = console
        .as_ref()
        .map(|c| c.receive(CONSOLE_TIMEOUT))
        .transpose()?;
    drop(console);
    let raw = match &master {
        Some(m) => {
            let stdin = std::io::stdin();
            if nix::unistd::isatty(&stdin).unwrap_or(false)
                && let Err(e) = copy_winsize(&stdin, m)
            {
                log.debug(|| format!("console size: {e}"));
            }
            RawTty::enable(&stdin)?
        }
        None => None,
    };
    Ok((master, raw))
}
