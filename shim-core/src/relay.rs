//! The pty relay: bytes from an input descriptor to a pty master, and from the master to an
//! output descriptor.
//!
//! `berth run -t` relays its own stdin and stdout ([`Relay::stdio`]); a shim relays fifos or
//! files ([`Relay::new`]). The relay never blocks on the master (it is made non-blocking) and
//! is driven by the caller's `poll(2)` loop: [`Relay::register`] adds its descriptors,
//! [`Relay::handle`] acts on what fired. [`crate::supervise::supervise`] drives one for you.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::console::{copy_winsize, dup_cloexec};
use crate::error::{Error, Result};

/// Most bytes read from the master by [`Relay::drain`] (bounds the final drain when some
/// left-over process keeps writing).
pub const DRAIN_LIMIT: usize = 16 << 20;

const CHUNK: usize = 16384;

/// Bytes read from the input, waiting to be written to the master.
#[derive(Debug, Default)]
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

/// Where [`Relay::register`] put the relay's descriptors in the caller's poll set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slots {
    input: Option<usize>,
    master: Option<usize>,
}

/// A pty master relayed to and from plain descriptors.
#[derive(Debug)]
pub struct Relay {
    master: OwnedFd,
    /// Read side; `None` once it reached end of file or failed (or when there is none).
    input: Option<OwnedFd>,
    /// Write side; `None` once a write failed (output is then dropped, never stalling the
    /// container) or when there is none.
    output: Option<OwnedFd>,
    /// The terminal whose window size the pty follows ([`Relay::resize`]).
    size_source: Option<OwnedFd>,
    master_open: bool,
    pending: Pending,
}

impl Relay {
    /// Relays `input` → `master` and `master` → `output`, either side optional. The master is
    /// made non-blocking. A write to `output` that would block waits for it (a slow reader
    /// slows the container down, as a terminal would).
    ///
    /// ```no_run
    /// use berth_shim_core::relay::Relay;
    /// # let (master, stdin_fifo, stdout_fifo): (std::os::fd::OwnedFd, std::os::fd::OwnedFd, std::os::fd::OwnedFd) = unimplemented!();
    /// let relay = Relay::new(master, Some(stdin_fifo), Some(stdout_fifo))?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn new(master: OwnedFd, input: Option<OwnedFd>, output: Option<OwnedFd>) -> Result<Relay> {
        let flags = fcntl(&master, FcntlArg::F_GETFL)
            .map_err(|e| Error::sys("fcntl(pty master, F_GETFL)", e))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&master, FcntlArg::F_SETFL(flags))
            .map_err(|e| Error::sys("fcntl(pty master, F_SETFL)", e))?;
        Ok(Relay {
            master,
            input,
            output,
            size_source: None,
            master_open: true,
            pending: Pending::default(),
        })
    }

    /// Relays this process' stdin and stdout (duplicated) to and from `master`; the pty
    /// follows stdin's window size on [`Relay::resize`].
    ///
    /// ```no_run
    /// # let master: std::os::fd::OwnedFd = unimplemented!();
    /// let relay = berth_shim_core::relay::Relay::stdio(master)?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn stdio(master: OwnedFd) -> Result<Relay> {
        // A closed stdin or stdout (EBADF) is a side without bytes, as a failing one is.
        let dup = |fd: BorrowedFd<'_>, call| match dup_cloexec(fd, call) {
            Ok(fd) => Ok(Some(fd)),
            Err(Error::Sys {
                source: Errno::EBADF,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        };
        let stdin = std::io::stdin();
        let input = dup(stdin.as_fd(), "fcntl(stdin, F_DUPFD_CLOEXEC)")?;
        let size = dup(stdin.as_fd(), "fcntl(stdin, F_DUPFD_CLOEXEC)")?;
        let output = dup(std::io::stdout().as_fd(), "fcntl(stdout, F_DUPFD_CLOEXEC)")?;
        let mut relay = Relay::new(master, input, output)?;
        relay.size_source = size;
        Ok(relay)
    }

    /// Makes the pty follow the window size of terminal `tty` on [`Relay::resize`] (and so on
    /// `SIGWINCH` under [`crate::supervise::supervise`]).
    ///
    /// ```no_run
    /// # let (mut relay, tty): (berth_shim_core::relay::Relay, std::os::fd::OwnedFd) = unimplemented!();
    /// relay.set_size_source(tty);
    /// relay.resize()?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn set_size_source(&mut self, tty: OwnedFd) {
        self.size_source = Some(tty);
    }

    /// The pty master (for a shim's ResizePty: [`crate::console::set_winsize`]).
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Whether the master is still open (no hang-up or error seen on it).
    pub fn is_open(&self) -> bool {
        self.master_open
    }

    /// Stops reading the input (a shim's CloseIO). Bytes already read still reach the master.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Copies the window size of the size source (stdin for [`Relay::stdio`]) to the master;
    /// nothing when there is none.
    ///
    /// ```no_run
    /// # let relay: berth_shim_core::relay::Relay = unimplemented!();
    /// relay.resize()?; // on SIGWINCH
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn resize(&self) -> Result<()> {
        match &self.size_source {
            Some(src) => copy_winsize(src, &self.master),
            None => Ok(()),
        }
    }

    /// Adds the descriptors the relay waits for to `fds`; pass the returned slots to
    /// [`Relay::handle`] after `poll`.
    ///
    /// ```no_run
    /// use nix::poll::{PollFd, PollTimeout, poll};
    /// # let mut relay: berth_shim_core::relay::Relay = unimplemented!();
    /// let mut fds = Vec::new();
    /// let slots = relay.register(&mut fds);
    /// poll(&mut fds, PollTimeout::NONE)?;
    /// let revents: Vec<_> = fds.iter().map(|f| f.revents()).collect();
    /// drop(fds);
    /// relay.handle(&revents, slots);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> Slots {
        let mut slots = Slots::default();
        if let Some(input) = &self.input {
            if self.pending.is_empty() {
                slots.input = Some(fds.len());
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
            }
        }
        if self.master_open {
            let mut ev = PollFlags::POLLIN;
            if !self.pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            slots.master = Some(fds.len());
            fds.push(PollFd::new(self.master.as_fd(), ev));
        }
        slots
    }

    /// Moves bytes for what fired: `revents` are the poll results of the whole set, by index.
    pub fn handle(&mut self, revents: &[Option<PollFlags>], slots: Slots) {
        let fired = |i: Option<usize>, want: PollFlags| {
            i.and_then(|i| revents.get(i).copied().flatten())
                .is_some_and(|r| r.intersects(want))
        };
        let input =
            PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        if fired(slots.master, input) {
            self.pump_master();
        }
        if fired(slots.master, PollFlags::POLLOUT) && self.master_open {
            self.flush_pending();
        }
        if fired(slots.input, input) {
            self.pump_input();
            if self.master_open && !self.pending.is_empty() {
                self.flush_pending();
            }
        }
    }

    /// Reads what is left on the master (once the process has exited), at most
    /// [`DRAIN_LIMIT`] bytes, without waiting for more.
    pub fn drain(&mut self) {
        let mut total = 0;
        while self.master_open && total < DRAIN_LIMIT {
            let n = self.pump_master();
            if n == 0 {
                break;
            }
            total += n;
        }
    }

    /// Copies what the master has to the output; returns the number of bytes read.
    fn pump_master(&mut self) -> usize {
        let mut buf = [0u8; CHUNK];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) => {
                self.master_open = false;
                0
            }
            Ok(n) => {
                if let Some(out) = &self.output {
                    // A closed or failing output must not stall the container: keep
                    // reading, drop the output.
                    if write_all(out.as_fd(), buf.get(..n).unwrap_or(&[])).is_err() {
                        self.output = None;
                    }
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

    fn pump_input(&mut self) {
        let Some(input) = &self.input else {
            return;
        };
        let mut buf = [0u8; CHUNK];
        match nix::unistd::read(input, &mut buf) {
            Ok(0) => self.input = None,
            Ok(n) => self
                .pending
                .buf
                .extend_from_slice(buf.get(..n).unwrap_or(&[])),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.input = None,
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
}

/// Writes all of `data` to `fd`, waiting if `fd` is non-blocking.
fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> Result<(), Errno> {
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
