//! The console: receiving a pty master over a console socket, the caller's terminal in raw
//! mode, window sizes.
//!
//! An OCI runtime given `--console-socket PATH` connects to that unix socket and sends one
//! message whose `SCM_RIGHTS` control data carries the container's pty master (the payload,
//! the pty's name, is ignored). [`ConsoleSocket`] is the receiving end: `berth run -t` in the
//! foreground binds one in a private temporary directory, a shim binds one where it likes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::error::{Error, Result};

/// A listening unix socket for the runtime to send a pty master to. The socket file (and the
/// private directory made by [`ConsoleSocket::bind`]) is removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    /// The private directory to remove, when we made it.
    dir: Option<PathBuf>,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Creates `$TMPDIR/berth-console-<pid>-<n>/console.sock` in a fresh 0700 directory and
    /// listens on it.
    ///
    /// ```no_run
    /// let sock = berth_shim_core::console::ConsoleSocket::bind()?;
    /// // pass sock.path() to the runtime as --console-socket, then:
    /// let master = sock.receive(std::time::Duration::from_secs(10))?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn bind() -> Result<ConsoleSocket> {
        let base = std::env::temp_dir();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut attempt = 0u32;
        let dir = loop {
            let dir = base.join(format!(
                "berth-console-{}-{}",
                std::process::id(),
                seed.wrapping_add(attempt)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 64 => {
                    attempt += 1;
                }
                Err(e) => return Err(Error::io("create directory", dir, e)),
            }
        };
        let path = dir.join("console.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(ConsoleSocket {
                dir: Some(dir),
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(Error::io("bind console socket", path, e))
            }
        }
    }

    /// Listens on `path` (which must not exist; its directory should be private to the
    /// caller). Only the socket file is removed on drop.
    ///
    /// ```no_run
    /// let sock = berth_shim_core::console::ConsoleSocket::bind_at("/run/shim/c1/console.sock")?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn bind_at(path: impl Into<PathBuf>) -> Result<ConsoleSocket> {
        let path = path.into();
        let listener =
            UnixListener::bind(&path).map_err(|e| Error::io("bind console socket", &path, e))?;
        Ok(ConsoleSocket {
            dir: None,
            path,
            listener,
        })
    }

    /// The socket path to hand to the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and returns the pty master it sends, waiting at most
    /// `timeout` for each of the two steps (the connection, the message).
    ///
    /// ```no_run
    /// # let sock = berth_shim_core::console::ConsoleSocket::bind()?;
    /// let master = sock.receive(std::time::Duration::from_millis(2000))?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn receive(&self, timeout: Duration) -> Result<OwnedFd> {
        if !wait_readable(self.listener.as_fd(), timeout)? {
            return Err(self.err("the runtime did not connect to send the console"));
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| Error::io("accept on console socket", &self.path, e))?;
        if !wait_readable(stream.as_fd(), timeout)? {
            return Err(self.err("the runtime connected but sent no console"));
        }
        receive_master(&stream).map_err(|e| match e {
            Error::Console { reason, .. } => self.err(reason),
            other => other,
        })
    }

    fn err(&self, reason: &'static str) -> Error {
        Error::Console {
            path: self.path.clone(),
            reason,
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Reads one console message from a connected stream: exactly one descriptor, a terminal,
/// received close-on-exec. Blocks until the message arrives.
///
/// ```no_run
/// use std::os::unix::net::UnixStream;
/// # let stream: UnixStream = unimplemented!();
/// let master = berth_shim_core::console::receive_master(&stream)?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn receive_master(stream: &UnixStream) -> Result<OwnedFd> {
    let console_err = |reason| Error::Console {
        path: stream
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_default(),
        reason,
    };
    let mut payload = [0u8; 4096];
    // One descriptor is taken (any more are closed); truncated control data is EPROTO.
    let (_, master) = berth_sys::recv_fd_owned(stream.as_fd(), &mut payload).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPROTO) {
            console_err("the console message carried too many descriptors")
        } else {
            Error::sys(
                "recvmsg(console socket)",
                Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        }
    })?;
    let Some(master) = master else {
        return Err(console_err(
            "the console message did not carry exactly one descriptor",
        ));
    };
    if !nix::unistd::isatty(&master).unwrap_or(false) {
        return Err(console_err("the descriptor received is not a terminal"));
    }
    Ok(master)
}

/// Polls one descriptor for input; false on timeout.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<bool> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll(console socket)", e)),
        }
    }
}

/// A terminal switched to raw mode; the saved mode is restored on drop.
#[derive(Debug)]
pub struct RawTty {
    fd: OwnedFd,
    saved: Termios,
}

impl RawTty {
    /// Puts the terminal `fd` (usually stdin) in raw mode; `None` when `fd` is not a terminal.
    ///
    /// ```no_run
    /// let raw = berth_shim_core::console::RawTty::enable(std::io::stdin())?;
    /// // ... relay; the terminal's mode comes back when `raw` drops.
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn enable(fd: impl AsFd) -> Result<Option<RawTty>> {
        let fd = fd.as_fd();
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return Ok(None);
        }
        let fd = dup_cloexec(fd, "fcntl(terminal, F_DUPFD_CLOEXEC)")?;
        let saved = tcgetattr(&fd).map_err(|e| Error::sys("tcgetattr(terminal)", e))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&fd, SetArg::TCSANOW, &raw).map_err(|e| Error::sys("tcsetattr(terminal)", e))?;
        Ok(Some(RawTty { fd, saved }))
    }
}

impl Drop for RawTty {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>, call: &'static str) -> Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| Error::sys(call, e))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl WinSize {
    /// A size of `rows` × `cols`.
    ///
    /// ```
    /// let ws = berth_shim_core::console::WinSize::new(24, 80);
    /// assert_eq!((ws.rows, ws.cols), (24, 80));
    /// ```
    pub fn new(rows: u16, cols: u16) -> WinSize {
        WinSize { rows, cols }
    }
}

fn get_raw_winsize(fd: BorrowedFd<'_>) -> Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points to a live,
    // properly aligned local of that type.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(r).map_err(|e| Error::sys("ioctl(TIOCGWINSZ)", e))?;
    Ok(ws)
}

fn set_raw_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> Result<()> {
    // SAFETY: TIOCSWINSZ only reads one `winsize` through the pointer, which points to a live
    // value of that type.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) };
    Errno::result(r).map_err(|e| Error::sys("ioctl(TIOCSWINSZ)", e))?;
    Ok(())
}

/// The window size of terminal `fd` (`TIOCGWINSZ`).
///
/// ```no_run
/// let ws = berth_shim_core::console::winsize(std::io::stdin())?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn winsize(fd: impl AsFd) -> Result<WinSize> {
    let ws = get_raw_winsize(fd.as_fd())?;
    Ok(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of terminal `fd` (`TIOCSWINSZ`; on a pty master the kernel sends
/// `SIGWINCH` to the slave's foreground process group). A shim's ResizePty.
///
/// ```no_run
/// # let master: std::os::fd::OwnedFd = unimplemented!();
/// berth_shim_core::console::set_winsize(&master, berth_shim_core::console::WinSize::new(50, 132))?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn set_winsize(fd: impl AsFd, size: WinSize) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    set_raw_winsize(fd.as_fd(), &ws)
}

/// Copies the window size (pixels included) of terminal `from` to terminal `to`: the
/// caller's terminal to the pty master.
///
/// ```no_run
/// # let master: std::os::fd::OwnedFd = unimplemented!();
/// berth_shim_core::console::copy_winsize(std::io::stdin(), &master)?;
/// # Ok::<(), berth_shim_core::Error>(())
/// ```
pub fn copy_winsize(from: impl AsFd, to: impl AsFd) -> Result<()> {
    let ws = get_raw_winsize(from.as_fd())?;
    set_raw_winsize(to.as_fd(), &ws)
}
