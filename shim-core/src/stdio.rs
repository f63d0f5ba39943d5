//! A container process' stdio from the paths a manager gives (containerd's `stdin`,
//! `stdout`, `stderr` of Create and Exec): fifos, files, or nothing.
//!
//! * A fifo (a plain path or `fifo://path` naming one): for stdout and stderr the shim opens
//!   a read side of its own first and keeps it, so that when the manager (the reader)
//!   restarts, the container's writes never meet a fifo without readers (`SIGPIPE`,
//!   `EPIPE`); the container gets a write side. Stdin is a pipe, fed from the fifo by a small
//!   thread: it waits for the client to open its end (so the container never reads an EOF
//!   before the client was there), copies until the client closes it, then closes the pipe:
//!   the container reads EOF then, or at once on [`ProcessIo::close_stdin`] (CloseIO).
//! * A regular file, or a path that does not exist (`file://path` too): opened for appending
//!   (created 0640).
//! * `crilog://<absolute path>` (stdout and stderr only): the shim writes the process' output
//!   itself into that file in the CRI log format, through pipes and a copier thread (see
//!   [`crate::crilog`]); stdout and stderr naming the same path share one open file. With a
//!   terminal, the pty's one output stream is logged as `stdout`.
//! * Empty: `/dev/null`. The shim's own stdio (its log) never reaches a container.
//!
//! With a terminal the container's stdio is the pty (see [`crate::console`]); the paths are
//! then the two ends of the relay: [`ProcessIo::relay_ends`].
//!
//! ```no_run
//! use berth_shim_core::stdio::ProcessIo;
//! let io = ProcessIo::open("", "/run/c1/stdout", "/run/c1/stderr")?;
//! let [stdin, stdout, stderr] = io.container_fds();
//! # Ok::<(), berth_shim_core::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::crilog::{self, CriLog, Drain};
use crate::error::{Error, Result};

/// The write end of a stdin copy thread's pipe: taken (closed) by CloseIO; the thread
/// holds a reference only for the length of one write.
type SharedWriter = Arc<Mutex<Option<Arc<OwnedFd>>>>;

/// The descriptors of one process' stdio: the container's ends, and what the shim keeps.
#[derive(Debug, Default)]
pub struct ProcessIo {
    stdin: Option<Arc<OwnedFd>>,
    stdout: Option<Arc<OwnedFd>>,
    stderr: Option<Arc<OwnedFd>>,
    /// Our write side of a stdin fifo (a tty relay's input), dropped by `close_stdin`.
    stdin_keep: Option<OwnedFd>,
    /// The stdin copy thread's pipe, closed by `close_stdin`, and its fifo.
    stdin_pipe: Option<(SharedWriter, PathBuf)>,
    /// Our read sides of the stdout and stderr fifos.
    keep: Vec<OwnedFd>,
    /// The copier of the `crilog://` outputs.
    log: Option<CriLog>,
}

/// A path as containerd gives it: its scheme and the path.
enum Target<'a> {
    None,
    Fifo(&'a Path),
    File(&'a Path),
    CriLog(&'a Path),
}

fn target(spec: &str) -> Result<Target<'_>> {
    if spec.is_empty() {
        return Ok(Target::None);
    }
    let (scheme, rest) = match spec.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", spec),
    };
    let path = Path::new(rest);
    match scheme {
        "fifo" => Ok(Target::Fifo(path)),
        "file" => Ok(Target::File(path)),
        "crilog" => crilog::check_path(spec, path).map(Target::CriLog),
        "" => match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_fifo() => Ok(Target::Fifo(path)),
            Ok(_) => Ok(Target::File(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::File(path)),
            Err(e) => Err(Error::io("stat stdio path", path, e)),
        },
        _ => Err(Error::Stdio {
            path: spec.to_owned(),
            reason: "only fifos, files and CRI logs (plain paths, fifo://, file://, crilog://) \
                     are supported",
        }),
    }
}

fn open(path: &Path, flags: i32, op: &'static str) -> Result<OwnedFd> {
    let mut o = OpenOptions::new();
    let acc = flags & libc::O_ACCMODE;
    o.read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE);
    o.open(path)
        .map(File::into)
        .map_err(|e| Error::io(op, path, e))
}

fn set_blocking(fd: &OwnedFd) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl(F_GETFL)", e))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::sys("fcntl(F_SETFL)", e))?;
    Ok(())
}

fn not_input(spec: &str) -> Error {
    Error::Stdio {
        path: spec.to_owned(),
        reason: "crilog:// is for stdout and stderr only",
    }
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    let flags = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    open(Path::new("/dev/null"), flags, "open")
}

impl ProcessIo {
    /// Opens the three stdio paths of a process without a terminal.
    /// On a failure nothing is left open (a CRI log file may have been created).
    pub fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<ProcessIo> {
        let mut io = ProcessIo::default();
        // Every path checked first: a bad one fails before anything is opened.
        let (out_target, err_target) = (target(stdout)?, target(stderr)?);
        if let Target::CriLog(_) = target(stdin)? {
            return Err(not_input(stdin));
        }
        let log_path = |t: &Target<'_>| match t {
            Target::CriLog(p) => Some(p.to_path_buf()),
            _ => None,
        };
        let (out_log, err_log) = (log_path(&out_target), log_path(&err_target));
        let [mut out_end, mut err_end] = [None, None];
        if out_log.is_some() || err_log.is_some() {
            let (log, ends) = CriLog::start(out_log.as_deref(), err_log.as_deref())?;
            [out_end, err_end] = ends;
            io.log = Some(log);
        }
        io.stdin = Some(Arc::new(io.open_input(stdin)?));
        io.stdout = Some(Arc::new(match out_end {
            Some(w) => w,
            None => io.open_output(stdout)?,
        }));
        io.stderr = Some(Arc::new(match err_end {
            Some(w) => w,
            None => io.open_output(stderr)?,
        }));
        Ok(io)
    }

    /// For a process with a terminal: the relay's input (from `stdin`) and output (to
    /// `stdout`; a tty has one output stream), both `None` where the path is empty. Call
    /// on an empty `ProcessIo`, which then only keeps what the fifos need.
    pub fn relay_ends(
        &mut self,
        stdin: &str,
        stdout: &str,
    ) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
        let input = self.open_relay_input(stdin)?;
        let output = match target(stdout)? {
            Target::None => None,
            Target::CriLog(p) => {
                let (log, [out, _]) = CriLog::start(Some(p), None)?;
                self.log = Some(log);
                out
            }
            _ => Some(self.open_output(stdout)?),
        };
        Ok((input, output))
    }

    fn open_input(&mut self, spec: &str) -> Result<OwnedFd> {
        match target(spec)? {
            Target::None => dev_null(false),
            Target::CriLog(_) => Err(not_input(spec)),
            Target::Fifo(p) => self.stdin_copy(p),
            Target::File(p) => open(p, libc::O_RDONLY | libc::O_CLOEXEC, "open stdin file"),
        }
    }

    /// A relay's input from a stdin fifo: our write side first, so the read side opens
    /// without waiting and reads block (never EOF) until the client wrote, or CloseIO.
    fn open_relay_input(&mut self, spec: &str) -> Result<Option<OwnedFd>> {
        let p = match target(spec)? {
            Target::None => return Ok(None),
            Target::CriLog(_) => return Err(not_input(spec)),
            Target::File(p) => {
                return open(p, libc::O_RDONLY | libc::O_CLOEXEC, "open stdin file").map(Some);
            }
            Target::Fifo(p) => p,
        };
        self.stdin_keep = Some(open(p, libc::O_RDWR | libc::O_CLOEXEC, "open stdin fifo")?);
        let fd = open(
            p,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            "open stdin fifo",
        )?;
        set_blocking(&fd)?;
        Ok(Some(fd))
    }

    /// The container's stdin as a pipe fed from the fifo `p` by a thread (see the module).
    fn stdin_copy(&mut self, p: &Path) -> Result<OwnedFd> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        let writer = Arc::new(Mutex::new(Some(Arc::new(w))));
        let fifo = p.to_owned();
        let (thread_writer, thread_fifo) = (Arc::clone(&writer), fifo.clone());
        std::thread::Builder::new()
            .name("stdin".into())
            .stack_size(64 * 1024)
            .spawn(move || copy_stdin(&thread_fifo, &thread_writer))
            .map_err(|e| Error::io("spawn stdin thread", p, e))?;
        self.stdin_pipe = Some((writer, fifo));
        Ok(r)
    }

    fn open_output(&mut self, spec: &str) -> Result<OwnedFd> {
        match target(spec)? {
            Target::None => dev_null(true),
            Target::Fifo(p) => {
                // Our read side first: the write side opens without waiting for a reader,
                // and never meets a fifo without one.
                let keep = open(
                    p,
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                    "open output fifo",
                )?;
                let fd = open(p, libc::O_WRONLY | libc::O_CLOEXEC, "open output fifo")?;
                self.keep.push(keep);
                Ok(fd)
            }
            // Started by `open` and `relay_ends`, which know both outputs.
            Target::CriLog(_) => Err(Error::Stdio {
                path: spec.to_owned(),
                reason: "a CRI log is opened with both outputs",
            }),
            Target::File(p) => {
                let mut o = OpenOptions::new();
                o.append(true).create(true).mode(0o640);
                o.open(p)
                    .map(File::into)
                    .map_err(|e| Error::io("open output file", p, e))
            }
        }
    }

    /// The copier of the `crilog://` outputs, if there is one: for
    /// [`CriLog::reopen`].
    pub fn cri_log(&self) -> Option<&CriLog> {
        self.log.as_ref()
    }

    /// Tells when the `crilog://` outputs are all written (`None`: no CRI log).
    pub fn drain(&self) -> Option<Drain> {
        self.log.as_ref().map(CriLog::drain)
    }

    /// The container's ends, for `berth_runtime_core::Stdio`.
    pub fn container_fds(&self) -> [Option<Arc<OwnedFd>>; 3] {
        [self.stdin.clone(), self.stdout.clone(), self.stderr.clone()]
    }

    /// Drops the container's ends held here (once the process has them).
    pub fn release_container_fds(&mut self) {
        self.stdin = None;
        self.stdout = None;
        self.stderr = None;
    }

    /// CloseIO: drops our write side of the stdin fifo, so the process reads EOF once the
    /// client has closed its own.
    pub fn close_stdin(&mut self) {
        self.stdin_keep = None;
        if let Some((w, _)) = &self.stdin_pipe {
            w.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        // A copy thread still waiting for the client to open the fifo: our own write side
        // (non-blocking: its pending reader counts) wakes it to an EOF, and it ends.
        if let Some((w, fifo)) = self.stdin_pipe.take() {
            w.lock().unwrap_or_else(|p| p.into_inner()).take();
            let _ = open(
                &fifo,
                libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                "open",
            );
        }
    }
}

/// The stdin copy thread: waits for a writer on the fifo, copies into the pipe until EOF,
/// a failed write (the process closed its stdin) or CloseIO, then closes the pipe.
fn copy_stdin(fifo: &Path, writer: &Mutex<Option<Arc<OwnedFd>>>) {
    // Blocks until the client opens its end.
    let Ok(input) = open(fifo, libc::O_RDONLY | libc::O_CLOEXEC, "open stdin fifo") else {
        writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        return;
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = match nix::unistd::read(&input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        // A reference for this write, the lock not held: a write into a full pipe (the
        // process not reading) must not block CloseIO, which then only takes the shared
        // end; the pipe closes when this write is done.
        let Some(w) = writer.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            break;
        };
        let mut off = 0;
        while off < n {
            match nix::unistd::write(&*w, &buf[off..n]) {
                Ok(k) => off += k,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
    writer.lock().unwrap_or_else(|p| p.into_inner()).take();
}
