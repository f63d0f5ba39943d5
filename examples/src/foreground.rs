//! Supervising a container run in the foreground: forwarding signals to its init, proxying
//! its console, reaping re-parented orphans, and waiting for the init to exit.
//!
//! Everything happens in one thread around `poll(2)`: the forwarded signals and `SIGCHLD` are
//! blocked and read from a signalfd, so no signal handler is ever installed.

use std::os::fd::{AsFd, OwnedFd};

use berth_runtime_core::{Container, ExecProcess};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::console::copy_winsize;
use crate::error::CliError;
use crate::logging::Logger;

/// Signals that `berth run` passes on to the container's init.
pub(crate) const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Most bytes read from the pty master after the init exited (bounds the final drain when
/// some left-over process keeps writing).
const DRAIN_LIMIT: usize = 16 << 20;

/// The forwarded signals and `SIGCHLD`, blocked and readable from a signalfd.
///
/// They stay blocked until the process exits: unblocking would deliver a pending `SIGINT`
/// with its default action.
pub(crate) struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the signals. Must be called after the container's init was cloned, so that the
    /// init does not inherit the blocked mask.
    pub(crate) fn block() -> Result<Signals, CliError> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        set.thread_block()
            .map_err(|e| CliError::sys("pthread_sigmask(SIG_BLOCK)", e))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| CliError::sys("signalfd", e))?;
        Ok(Signals { fd })
    }
}

/// Reaps exited children other than `init`, and tells whether `init` has exited (it is left
/// unreaped, for [`Container::wait`]).
fn reap_others(init: Pid) -> Result<bool, CliError> {
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) => return Ok(false),
            Ok(status) => match status.pid() {
                Some(pid) if pid == init => return Ok(true),
                Some(pid) => {
                    // An orphan re-parented to us (we are its subreaper): collect it.
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
                None => return Ok(false),
            },
            Err(Errno::EINTR) => continue,
            // No child at all: let Container::wait report what happened to the init.
            Err(Errno::ECHILD) => return Ok(true),
            Err(e) => return Err(CliError::sys("waitid", e)),
        }
    }
}

/// Bytes from stdin waiting to be written to the pty master.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    start: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.start >= self.buf.len()
    }
    fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

/// Writes all of `data` to stdout, waiting if stdout is non-blocking.
fn write_stdout(data: &[u8]) -> Result<(), Errno> {
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The console proxy: stdin -> master, master -> stdout.
struct Proxy {
    master: OwnedFd,
    stdin_open: bool,
    master_open: bool,
    stdout_ok: bool,
    pending: Pending,
}

impl Proxy {
    fn new(master: OwnedFd) -> Result<Proxy, CliError> {
        let flags = fcntl(&master, FcntlArg::F_GETFL)
            .map_err(|e| CliError::sys("fcntl(pty master, F_GETFL)", e))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&master, FcntlArg::F_SETFL(flags))
            .map_err(|e| CliError::sys("fcntl(pty master, F_SETFL)", e))?;
        Ok(Proxy {
            master,
            stdin_open: true,
            master_open: true,
            stdout_ok: true,
            pending: Pending::default(),
        })
    }

    /// Copies what the master has to stdout; returns the number of bytes read.
    fn pump_master(&mut self) -> usize {
        let mut buf = [0u8; 16384];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) => {
                self.master_open = false;
                0
            }
            Ok(n) => {
                if self.stdout_ok {
                    // A closed or failing stdout must not stall the container: keep reading,
                    // drop the output.
                    self.stdout_ok = write_stdout(buf.get(..n).unwrap_or(&[])).is_ok();
                }
                n
            }
            Err(Errno::EAGAIN | Errno::EINTR) => 0,
            // EIO: every slave descriptor is closed.
            Err(_) => {
                self.master_open = false;
                0
            }
        }
    }

    fn pump_stdin(&mut self) {
        let mut buf = [0u8; 16384];
        let stdin = std::io::stdin();
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => self
                .pending
                .buf
                .extend_from_slice(buf.get(..n).unwrap_or(&[])),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.stdin_open = false,
        }
    }

    fn flush_pending(&mut self) {
        match nix::unistd::write(&self.master, self.pending.data()) {
            Ok(n) => self.pending.consume(n),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => {
                self.master_open = false;
                self.pending = Pending::default();
            }
        }
    }

    /// Reads what is left on the master once the init has exited.
    fn drain(&mut self) {
        let mut total = 0;
        while self.master_open && total < DRAIN_LIMIT {
            let n = self.pump_master();
            if n == 0 {
                break;
            }
            total += n;
        }
    }
}

/// A process `berth` waits for in the foreground: a container's init or an exec'd process.
pub(crate) trait Supervised {
    /// Its host pid.
    fn pid(&self) -> i32;
    /// Reaps it; its exit code (128 + N when killed by signal N).
    fn wait(&self) -> Result<i32, berth_runtime_core::Error>;
}

impl Supervised for Container {
    fn pid(&self) -> i32 {
        Container::pid(self)
    }
    fn wait(&self) -> Result<i32, berth_runtime_core::Error> {
        Container::wait(self)
    }
}

impl Supervised for ExecProcess {
    fn pid(&self) -> i32 {
        ExecProcess::pid(self)
    }
    fn wait(&self) -> Result<i32, berth_runtime_core::Error> {
        ExecProcess::wait(self)
    }
}

/// Waits for the container's init (or an exec'd process) to exit while forwarding signals to
/// it and, when `master` is given, proxying the console. Returns the exit code (128 + N when
/// killed by signal N).
pub(crate) fn supervise(
    container: &impl Supervised,
    signals: &Signals,
    master: Option<OwnedFd>,
    log: &Logger,
) -> Result<i32, CliError> {
    let init = Pid::from_raw(container.pid());
    let mut proxy = master.map(Proxy::new).transpose()?;
    let stdin = std::io::stdin();
    let mut exited = reap_others(init)?;
    while !exited {
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
        let mut stdin_idx = None;
        let mut master_idx = None;
        if let Some(p) = &proxy {
            if p.stdin_open && p.pending.is_empty() {
                stdin_idx = Some(fds.len());
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if p.master_open {
                let mut ev = PollFlags::POLLIN;
                if !p.pending.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                master_idx = Some(fds.len());
                fds.push(PollFd::new(p.master.as_fd(), ev));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(CliError::sys("poll", e)),
        }
        let fired = |i: Option<usize>, want: PollFlags| {
            i.and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|r| r.intersects(want))
        };
        let input =
            PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let stdin_ready = fired(stdin_idx, input);
        let master_readable = fired(master_idx, input);
        let master_writable = fired(master_idx, PollFlags::POLLOUT);
        let signal_ready = fired(Some(0), PollFlags::POLLIN);
        drop(fds);

        if let Some(p) = proxy.as_mut() {
            if master_readable {
                p.pump_master();
            }
            if master_writable && p.master_open {
                p.flush_pending();
            }
            if stdin_ready {
                p.pump_stdin();
                if p.master_open && !p.pending.is_empty() {
                    p.flush_pending();
                }
            }
        }
        if signal_ready {
            exited = handle_signals(signals, init, proxy.as_ref(), log)?;
        }
    }
    if let Some(p) = proxy.as_mut() {
        p.drain();
    }
    let code = container.wait()?;
    log.debug(|| format!("container init {init} exited: {code}"));
    Ok(code)
}

/// Reads every pending signal; returns whether the init has exited.
fn handle_signals(
    signals: &Signals,
    init: Pid,
    proxy: Option<&Proxy>,
    log: &Logger,
) -> Result<bool, CliError> {
    let mut exited = false;
    loop {
        let info = match signals.fd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(CliError::sys("read(signalfd)", e)),
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match (sig, proxy) {
            (Signal::SIGCHLD, _) => exited |= reap_others(init)?,
            (Signal::SIGWINCH, Some(p)) => {
                // The kernel signals the container's foreground process group itself.
                let stdin = std::io::stdin();
                if let Err(e) = copy_winsize(stdin.as_fd(), p.master.as_fd()) {
                    log.debug(|| format!("resize console: {e}"));
                }
            }
            (sig, _) => {
                log.debug(|| format!("forwarding {sig} to container init {init}"));
                // ESRCH: the init is exiting; its SIGCHLD will follow.
                let _ = kill(init, sig);
            }
        }
    }
    Ok(exited)
}
