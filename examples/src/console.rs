//! Receiving a container's pty master over a console socket, and the caller's terminal.
//!
//! The runtime connects to the `--console-socket` unix socket and sends one message whose
//! `SCM_RIGHTS` control data carries the pty master (the payload, the pty's name, is ignored).
//! `berth run` in the foreground plays the receiver itself when the config asks for a terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::error::CliError;

/// A listening unix socket in a private (0700) temporary directory; both are removed on drop.
#[derive(Debug)]
pub(crate) struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Creates `$TMPDIR/berth-console-<pid>-<n>/console.sock` and listens on it.
    pub(crate) fn bind() -> Result<ConsoleSocket, CliError> {
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
                Err(e) => return Err(CliError::io("create directory", dir, e)),
            }
        };
        let path = dir.join("console.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(ConsoleSocket {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(CliError::io("bind console socket", path, e))
            }
        }
    }

    /// The socket path to hand to the runtime.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and returns the pty master it sends, waiting at most
    /// `timeout_ms` for each step.
    pub(crate) fn receive(&self, timeout_ms: u16) -> Result<OwnedFd, CliError> {
        let console_err = |reason| CliError::Console {
            path: self.path.clone(),
            reason,
        };
        if !wait_readable(self.listener.as_fd(), timeout_ms)? {
            return Err(console_err(
                "the runtime did not connect to send the console",
            ));
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| CliError::io("accept on console socket", &self.path, e))?;
        if !wait_readable(stream.as_fd(), timeout_ms)? {
            return Err(console_err("the runtime connected but sent no console"));
        }
        let mut payload = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = loop {
            match recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other.map_err(|e| CliError::sys("recvmsg(console socket)", e))?,
            }
        };
        let mut fds = Vec::new();
        for c in msg
            .cmsgs()
            .map_err(|e| CliError::sys("recvmsg(console socket)", e))?
        {
            if let ControlMessageOwned::ScmRights(received) = c {
                for raw in received {
                    // SAFETY: SCM_RIGHTS installed `raw` as a new descriptor in this process;
                    // nobody else owns it, so wrapping it transfers ownership to us (and closes
                    // it on drop).
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(console_err(
                "the console message carried too many descriptors",
            ));
        }
        let mut fds = fds.into_iter();
        let (Some(master), None) = (fds.next(), fds.next()) else {
            return Err(console_err(
                "the console message did not carry exactly one descriptor",
            ));
        };
        if !nix::unistd::isatty(&master).unwrap_or(false) {
            return Err(console_err("the descriptor received is not a terminal"));
        }
        Ok(master)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Polls one descriptor for input; false on timeout.
fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: u16) -> Result<bool, CliError> {
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(timeout_ms)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(CliError::sys("poll(console socket)", e)),
        }
    }
}

/// The caller's terminal on stdin switched to raw mode; the saved mode is restored on drop.
pub(crate) struct RawTty {
    stdin: std::io::Stdin,
    saved: Termios,
}

impl RawTty {
    /// Puts stdin in raw mode when it is a terminal (`None` when it is not).
    pub(crate) fn enable() -> Result<Option<RawTty>, CliError> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd()).map_err(|e| CliError::sys("tcgetattr(stdin)", e))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| CliError::sys("tcsetattr(stdin)", e))?;
        Ok(Some(RawTty { stdin, saved }))
    }
}

impl Drop for RawTty {
    fn drop(&mut self) {
        let _ = tcsetattr(self.stdin.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// How long to wait for the runtime to hand over the console, per step (milliseconds).
pub(crate) const CONSOLE_TIMEOUT_MS: u16 = 10_000;

/// The foreground side of `-t` without `--console-socket`: takes the pty master the runtime
/// sent to `console` (if any), sizes it like our terminal and puts our terminal in raw mode
/// (restored when the returned guard drops).
pub(crate) fn take_console(
    console: Option<ConsoleSocket>,
    log: &crate::logging::Logger,
) -> Result<(Option<OwnedFd>, Option<RawTty>), CliError> {
    let master = console
        .as_ref()
        .map(|c| c.receive(CONSOLE_TIMEOUT_MS))
        .transpose()?;
    drop(console);
    let raw = match &master {
        Some(m) => {
            let stdin = std::io::stdin();
            if nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
                if let Err(e) = copy_winsize(stdin.as_fd(), m.as_fd()) {
                    log.debug(|| format!("console size: {e}"));
                }
            }
            RawTty::enable()?
        }
        None => None,
    };
    Ok((master, raw))
}

/// Copies the window size of terminal `from` to terminal `to` (for the pty master).
pub(crate) fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), CliError> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points to a live,
    // properly aligned local of that type.
    let r = unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(r).map_err(|e| CliError::sys("ioctl(TIOCGWINSZ)", e))?;
    // SAFETY: TIOCSWINSZ only reads one `winsize` through the pointer, which points to a live
    // local of that type.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(r).map_err(|e| CliError::sys("ioctl(TIOCSWINSZ)", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::{OpenptyResult, openpty};
    use nix::sys::socket::{ControlMessage, sendmsg};
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    #[test]
    fn socket_lives_in_a_private_directory_removed_on_drop() {
        let sock = ConsoleSocket::bind().unwrap();
        let dir = sock.path().parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        assert!(sock.path().exists());
        drop(sock);
        assert!(!dir.exists());
    }

    #[test]
    fn receives_a_pty_master() {
        let sock = ConsoleSocket::bind().unwrap();
        let OpenptyResult { master, slave } = openpty(None, None).unwrap();
        let client = UnixStream::connect(sock.path()).unwrap();
        let fds = [master.as_raw_fd()];
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"/dev/pts/x")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let got = sock.receive(2000).unwrap();
        // The received descriptor is the same pty: what the slave writes, it reads.
        nix::unistd::write(&slave, b"ping").unwrap();
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(&got, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
    }

    #[test]
    fn times_out_without_a_connection() {
        let sock = ConsoleSocket::bind().unwrap();
        let err = sock.receive(50).unwrap_err();
        assert!(err.to_string().contains("did not connect"), "{err}");
        assert!(err.to_string().contains(sock.path().to_str().unwrap()));
    }

    #[test]
    fn rejects_a_message_without_descriptor() {
        let sock = ConsoleSocket::bind().unwrap();
        let mut client = UnixStream::connect(sock.path()).unwrap();
        std::io::Write::write_all(&mut client, b"no fd").unwrap();
        let err = sock.receive(2000).unwrap_err();
        assert!(err.to_string().contains("exactly one descriptor"), "{err}");
    }

    #[test]
    fn rejects_a_descriptor_that_is_not_a_terminal() {
        let sock = ConsoleSocket::bind().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let client = UnixStream::connect(sock.path()).unwrap();
        let fds = [file.as_raw_fd()];
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let err = sock.receive(2000).unwrap_err();
        assert!(err.to_string().contains("not a terminal"), "{err}");
    }

    #[test]
    fn window_size_is_copied() {
        let a = openpty(None, None).unwrap();
        let b = openpty(None, None).unwrap();
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: test-only TIOCSWINSZ reading a live local winsize.
        let r = unsafe { libc::ioctl(a.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
        copy_winsize(a.master.as_fd(), b.master.as_fd()).unwrap();
        let mut got = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: test-only TIOCGWINSZ writing into a live local winsize.
        let r = unsafe { libc::ioctl(b.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut got) };
        assert_eq!(r, 0);
        assert_eq!((got.ws_row, got.ws_col), (33, 101));
    }

    #[test]
    fn copy_winsize_from_a_non_terminal_names_the_ioctl() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let b = openpty(None, None).unwrap();
        let err = copy_winsize(file.as_fd(), b.master.as_fd()).unwrap_err();
        assert!(err.to_string().contains("TIOCGWINSZ"), "{err}");
    }
}
