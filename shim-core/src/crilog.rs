//! A container's stdout and stderr written by the shim itself as a CRI log file
//! (`crilog://<absolute path>` as a stdio path, see [`crate::stdio`]).
//!
//! The kubelet reads a container's output from a file it names, one entry a line:
//!
//! ```text
//! 2026-12-02T15:04:05.123456789Z stdout F a complete line
//! 2026-12-02T15:04:05.12345Z stderr P the first 16 KiB of a longer line...
//! ```
//!
//! The time the line was written (RFC 3339 in UTC, nanoseconds with their trailing zeros
//! dropped, no fraction at all on a whole second: Go's `RFC3339Nano`), the stream, `F` for a
//! full line or `P` for a part of one, the content without its `\n` (nor a `\r` before it),
//! and a `\n`. A line longer than [`MAX_LINE`] is cut into `P` entries of exactly
//! [`MAX_LINE`] bytes, the last piece an `F`; what is left without a newline when the
//! stream ends is a `P`. That is what containerd's CRI plugin writes; here the shim writes
//! it, so no line is lost while the manager restarts.
//!
//! One copier thread per process (a small stack, `poll(2)` on both pipes, its buffers
//! allocated once when it starts) reads the pipes the container writes to and appends each
//! entry with one `write(2)` to files opened `O_APPEND`: stdout and stderr naming the same
//! path share one open file, and entries never interleave mid-line.
//!
//! The copier tells when it has written everything: [`Drain::then`] runs once both pipes
//! reached end of file (every writer gone) or, when something else (a grandchild) keeps a
//! pipe open, [`DRAIN_TIMEOUT`] after the call, so the caller can report a process' exit
//! only after its output is in the file, and never waits forever. [`CriLog::reopen`] opens the
//! paths again (after the kubelet renamed the file to rotate it) between two entries.
//!
//! ```no_run
//! use berth_shim_core::crilog::CriLog;
//! let path = std::path::Path::new("/var/log/pods/p/c/0.log");
//! let (log, [stdout, stderr]) = CriLog::start(Some(path), Some(path))?;
//! // ... give `stdout` and `stderr` to the container (dup2), then drop them here.
//! drop((stdout, stderr));
//! log.drain().then(|| println!("all the output is in the file"));
//! # Ok::<(), berth_shim_core::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::{Error, Result};

/// The scheme of a CRI log stdio path: `crilog:///var/log/pods/.../0.log`.
pub const SCHEME: &str = "crilog://";

/// The longest content of one entry (containerd's and the kubelet's default): a longer line
/// is cut into `P` entries of this many bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// How long [`Drain::then`] waits for the pipes' end of file before running anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The copier's stack: its frames are small, and it may report an exit (the caller's
/// callback) from there.
const STACK: usize = 128 * 1024;

/// A stream's buffer: a line of [`MAX_LINE`] bytes and its `\r\n`, so that a full line is
/// told from a longer one without waiting for more.
const LINE_BUF: usize = MAX_LINE + 2;

/// The longest header: `2026-12-02T15:04:05.123456789Z stdout P `.
const HEADER_MAX: usize = 30 + 1 + 6 + 1 + 1 + 1;

/// Most bytes read at once: a stream's buffer is made valid (zeroed) as far as a read may
/// fill it, so memory is only touched for output that came.
const READ_CHUNK: usize = 4096;

/// Which of a process' outputs an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// Its name in an entry: `stdout` or `stderr`.
    ///
    /// ```
    /// assert_eq!(berth_shim_core::crilog::Stream::Stderr.as_str(), "stderr");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct DrainState {
    /// Both pipes reached end of file: everything is written.
    done: bool,
    /// [`DRAIN_TIMEOUT`] passed after the first [`Drain::then`].
    gave_up: bool,
    /// A [`Drain::then`] came: the copier counts down from when it sees it.
    waited: bool,
    /// The [`CriLog`] was dropped: the copier writes what it has and ends.
    stop: bool,
    callbacks: Vec<Callback>,
}

struct Shared {
    /// The open files: a path and its file, one per distinct path. Held for each entry's
    /// write and for a reopen's swap.
    files: Mutex<Vec<(PathBuf, File)>>,
    state: Mutex<DrainState>,
    /// Wakes the copier: a [`Drain::then`], or the stop.
    wake: EventFd,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, DrainState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> MutexGuard<'_, Vec<(PathBuf, File)>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

/// The copier of one process' outputs into CRI log files (see the module). Dropping it stops
/// the copier: what the pipes hold then is written, and it ends.
pub struct CriLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CriLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<PathBuf> = self.paths();
        f.debug_struct("CriLog").field("paths", &paths).finish()
    }
}

/// Tells when a [`CriLog`] has written all its process' output (see [`Drain::then`]). Cheap
/// to clone; it does not keep the copier running.
#[derive(Clone)]
pub struct Drain {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain").finish_non_exhaustive()
    }
}

/// Checks a `crilog://` path: absolute, with a file name.
pub(crate) fn check_path<'a>(spec: &str, path: &'a Path) -> Result<&'a Path> {
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(Error::Stdio {
            path: spec.to_owned(),
            reason: "crilog:// needs an absolute path to a file (crilog:///var/log/pods/...)",
        });
    }
    Ok(path)
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let op = if e.kind() == std::io::ErrorKind::NotFound {
                "open CRI log file (its directory must exist)"
            } else {
                "open CRI log file"
            };
            Error::io(op, path, e)
        })
}

impl CriLog {
    /// Opens the log file of each output that has a path (absolute; created 0640, its
    /// directory must exist; both the same path: one open file) and starts the copier.
    /// Returns the write ends of the pipes to give the process as its stdout and stderr
    /// (`None` where no path was given). Drop them here once the process has them: the
    /// copier sees the end of file only when every write end is closed.
    ///
    /// ```no_run
    /// use berth_shim_core::crilog::CriLog;
    /// let (log, [stdout, _]) = CriLog::start(Some("/var/log/c1.log".as_ref()), None)?;
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn start(
        stdout: Option<&Path>,
        stderr: Option<&Path>,
    ) -> Result<(CriLog, [Option<OwnedFd>; 2])> {
        let mut files: Vec<(PathBuf, File)> = Vec::with_capacity(2);
        let mut streams = Vec::with_capacity(2);
        let mut ends: [Option<OwnedFd>; 2] = [None, None];
        for (slot, (stream, path)) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)]
            .into_iter()
            .enumerate()
        {
            let Some(path) = path else { continue };
            let shown = path.to_string_lossy();
            check_path(&shown, path)?;
            let file = match files.iter().position(|(p, _)| p == path) {
                Some(i) => i,
                None => {
                    files.push((path.to_owned(), open_log(path)?));
                    files.len() - 1
                }
            };
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| Error::sys("pipe2 (CRI log)", e))?;
            set_nonblocking(&r)?;
            streams.push(Input {
                fd: Some(r),
                stream,
                file,
                buf: Vec::with_capacity(LINE_BUF),
            });
            ends[slot] = Some(w);
        }
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::sys("eventfd (CRI log)", e))?;
        let shared = Arc::new(Shared {
            files: Mutex::new(files),
            state: Mutex::new(DrainState::default()),
            wake,
        });
        let copier = Copier {
            shared: Arc::clone(&shared),
            streams,
            out: Vec::with_capacity(HEADER_MAX + MAX_LINE + 1),
            deadline: None,
        };
        let where_ = stdout.or(stderr).unwrap_or(Path::new("crilog"));
        std::thread::Builder::new()
            .name("crilog".into())
            .stack_size(STACK)
            .spawn(move || copier.run())
            .map_err(|e| Error::io("spawn CRI log copier", where_, e))?;
        Ok((CriLog { shared }, ends))
    }

    /// Opens every path again (the file was renamed: a new one is created) and writes the
    /// next entries there. Atomic for the copier: each entry goes whole to the old file or
    /// the new one. On a failure the old files stay in use.
    ///
    /// ```no_run
    /// # let (log, _) = berth_shim_core::crilog::CriLog::start(Some("/var/log/c.log".as_ref()), None)?;
    /// std::fs::rename("/var/log/c.log", "/var/log/c.log.1")?;
    /// log.reopen()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reopen(&self) -> Result<()> {
        let mut files = self.shared.files();
        let mut new = Vec::with_capacity(files.len());
        for (path, _) in files.iter() {
            new.push(open_log(path)?);
        }
        for ((_, old), file) in files.iter_mut().zip(new) {
            *old = file;
        }
        Ok(())
    }

    /// The log files' paths.
    ///
    /// ```no_run
    /// # let (log, _) = berth_shim_core::crilog::CriLog::start(Some("/var/log/c.log".as_ref()), None)?;
    /// assert_eq!(log.paths(), [std::path::PathBuf::from("/var/log/c.log")]);
    /// # Ok::<(), berth_shim_core::Error>(())
    /// ```
    pub fn paths(&self) -> Vec<PathBuf> {
        self.shared.files().iter().map(|(p, _)| p.clone()).collect()
    }

    /// A handle telling when everything is written.
    pub fn drain(&self) -> Drain {
        Drain {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for CriLog {
    fn drop(&mut self) {
        self.shared.state().stop = true;
        self.shared.wake();
    }
}

impl Drain {
    /// Runs `f` once the copier has written everything the pipes carried up to their end of
    /// file, or [`DRAIN_TIMEOUT`] after this call if a pipe is still open then (the copier
    /// goes on copying), or when the copier stops: at once if one of those happened already,
    /// else on the copier's thread (keep `f` short; it must not wait for the copier).
    ///
    /// ```no_run
    /// # let (log, _) = berth_shim_core::crilog::CriLog::start(Some("/var/log/c.log".as_ref()), None)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// log.drain().then(move || { let _ = tx.send(()); });
    /// rx.recv()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn then(&self, f: impl FnOnce() + Send + 'static) {
        let mut st = self.shared.state();
        if st.done || st.gave_up {
            drop(st);
            f();
            return;
        }
        st.callbacks.push(Box::new(f));
        st.waited = true;
        drop(st);
        self.shared.wake();
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl(F_GETFL)", e))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::sys("fcntl(F_SETFL)", e))?;
    Ok(())
}

/// One pipe and the start of a line read from it.
struct Input {
    /// `None` once it reached end of file.
    fd: Option<OwnedFd>,
    stream: Stream,
    /// Index into the shared files.
    file: usize,
    /// What was read and not written yet (never more than [`LINE_BUF`]: its capacity).
    buf: Vec<u8>,
}

/// Full or partial: the tag of an entry.
#[derive(Clone, Copy)]
enum Tag {
    Full,
    Partial,
}

/// What one read gave.
enum Read {
    Data,
    Nothing,
    Eof,
}

struct Copier {
    shared: Arc<Shared>,
    streams: Vec<Input>,
    /// One entry as written.
    out: Vec<u8>,
    /// When waiting for the end of file ends, counted from the first [`Drain::then`].
    deadline: Option<Instant>,
}

impl Copier {
    fn run(mut self) {
        loop {
            let timeout = match self.deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Rounded up: a poll that ends a little early would spin.
                    let ms = left.as_millis().saturating_add(1).min(60_000) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let (woken, ready) = {
                // No allocation here: slot 0 the eventfd, then one per stream; a stream
                // that ended polls the eventfd for nothing (no events asked, none it can
                // raise unasked) and is not looked at.
                let wake = self.shared.wake.as_fd();
                let mut fds = [
                    PollFd::new(wake, PollFlags::POLLIN),
                    PollFd::new(wake, PollFlags::empty()),
                    PollFd::new(wake, PollFlags::empty()),
                ];
                for (slot, s) in fds[1..].iter_mut().zip(&self.streams) {
                    if let Some(fd) = &s.fd {
                        *slot = PollFd::new(fd.as_fd(), PollFlags::POLLIN);
                    }
                }
                let used = 1 + self.streams.len();
                match poll(&mut fds[..used], timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        // Nothing sensible to wait on: write what we have and end, so no
                        // exit waits on us.
                        eprintln!("berth-shim-core crilog: poll: {e}");
                        self.stop();
                        return;
                    }
                }
                let fired = |i: usize| {
                    fds.get(i)
                        .and_then(PollFd::revents)
                        .is_some_and(|r| !r.is_empty())
                };
                (fired(0), [fired(1), fired(2)])
            };
            if woken {
                let _ = self.shared.wake.read();
                let st = self.shared.state();
                if st.stop {
                    drop(st);
                    self.stop();
                    return;
                }
                if st.waited && self.deadline.is_none() && !st.gave_up {
                    self.deadline = Some(Instant::now() + DRAIN_TIMEOUT);
                }
            }
            for (i, ready) in ready.into_iter().enumerate().take(self.streams.len()) {
                let open = self.streams[i].fd.is_some();
                if ready && open {
                    if let Read::Eof = self.read(i) {
                        self.end_of(i);
                    }
                }
            }
            if self.streams.iter().all(|s| s.fd.is_none()) {
                self.finish(true);
                return;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.deadline = None;
                self.finish(false);
            }
        }
    }

    /// Reads what stream `i` has (at most what its buffer can take) and writes its lines.
    fn read(&mut self, i: usize) -> Read {
        let s = &mut self.streams[i];
        let Some(fd) = &s.fd else {
            return Read::Eof;
        };
        let len = s.buf.len();
        let want = (LINE_BUF - len).min(READ_CHUNK);
        s.buf.resize(len + want, 0);
        let r = loop {
            match nix::unistd::read(fd, &mut s.buf[len..]) {
                Err(Errno::EINTR) => continue,
                r => break r,
            }
        };
        let got = match r {
            Ok(0) => {
                s.buf.truncate(len);
                return Read::Eof;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                s.buf.truncate(len);
                return Read::Nothing;
            }
            Err(_) => {
                s.buf.truncate(len);
                return Read::Eof;
            }
        };
        s.buf.truncate(len + got);
        self.lines(i);
        Read::Data
    }

    /// Writes the complete lines (and the parts of over-long ones) of stream `i`'s buffer,
    /// keeping the start of an unfinished line.
    fn lines(&mut self, i: usize) {
        let mut at = 0;
        loop {
            let rest = &self.streams[i].buf[at..];
            let window = &rest[..rest.len().min(LINE_BUF)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                let end = if nl > 0 && window[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                if end <= MAX_LINE {
                    self.entry(i, Tag::Full, at, at + end);
                    at += nl + 1;
                    continue;
                }
            }
            if rest.len() >= LINE_BUF {
                self.entry(i, Tag::Partial, at, at + MAX_LINE);
                at += MAX_LINE;
                continue;
            }
            break;
        }
        self.streams[i].buf.drain(..at);
    }

    /// Stream `i` ended: what is left is written as partial entries.
    fn end_of(&mut self, i: usize) {
        let len = self.streams[i].buf.len();
        let mut at = 0;
        while at < len {
            let end = (at + MAX_LINE).min(len);
            self.entry(i, Tag::Partial, at, end);
            at = end;
        }
        let s = &mut self.streams[i];
        s.buf.clear();
        s.fd = None;
    }

    /// Formats and writes one entry: bytes `from..to` of stream `i`'s buffer.
    fn entry(&mut self, i: usize, tag: Tag, from: usize, to: usize) {
        let s = &self.streams[i];
        self.out.clear();
        timestamp(SystemTime::now(), &mut self.out);
        self.out.push(b' ');
        self.out.extend_from_slice(s.stream.as_str().as_bytes());
        self.out.extend_from_slice(match tag {
            Tag::Full => b" F ",
            Tag::Partial => b" P ",
        });
        self.out.extend_from_slice(&s.buf[from..to]);
        self.out.push(b'\n');
        let files = self.shared.files();
        if let Some((path, file)) = files.get(s.file) {
            // One write(2) for the entry (a regular file takes it whole unless it fails);
            // a failed write loses the entry, the copier goes on draining the pipe.
            let mut f: &File = file;
            if let Err(e) = f.write_all(&self.out) {
                eprintln!(
                    "berth-shim-core crilog: write {}: {e}",
                    path.to_string_lossy()
                );
            }
        }
    }

    /// The [`CriLog`] is gone: writes what the pipes hold now (a bounded amount: a writer
    /// that goes on writing does not keep the copier), and ends.
    fn stop(&mut self) {
        const MAX_READS: usize = 64;
        for i in 0..self.streams.len() {
            for _ in 0..MAX_READS {
                match self.read(i) {
                    Read::Data => {}
                    Read::Nothing | Read::Eof => break,
                }
            }
            self.end_of(i);
        }
        self.finish(true);
    }

    /// Runs the waiting callbacks: everything written (`done`), or the wait given up.
    fn finish(&mut self, done: bool) {
        let callbacks = {
            let mut st = self.shared.state();
            if done {
                st.done = true;
            } else {
                st.gave_up = true;
            }
            std::mem::take(&mut st.callbacks)
        };
        for f in callbacks {
            f();
        }
    }
}

/// Appends `t` as RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's
/// `RFC3339Nano`): `2026-12-02T15:04:05.1234Z`, `2026-12-02T15:04:05Z`.
fn timestamp(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil(days as i64);
    digits(out, y.max(0) as u64, 4);
    out.push(b'-');
    digits(out, m as u64, 2);
    out.push(b'-');
    digits(out, dd as u64, 2);
    out.push(b'T');
    digits(out, day_secs / 3600, 2);
    out.push(b':');
    digits(out, day_secs / 60 % 60, 2);
    out.push(b':');
    digits(out, day_secs % 60, 2);
    let mut nanos = d.subsec_nanos();
    if nanos != 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        out.push(b'.');
        digits(out, u64::from(nanos), width);
    }
    out.push(b'Z');
}

/// `n` in decimal, zero-padded to `width` digits.
fn digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut v = n;
    let mut k = tmp.len();
    while v > 0 {
        k -= 1;
        tmp[k] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let used = tmp.len() - k;
    let start = tmp.len() - used.max(width).min(tmp.len());
    out.extend_from_slice(&tmp[start..]);
}

/// The proleptic Gregorian date of `days` after 1970-01-01: (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    // Counted from 0000-03-01, so that a leap day ends its year; eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: u64, nanos: u32) -> String {
        let mut v = Vec::new();
        timestamp(UNIX_EPOCH + Duration::new(secs, nanos), &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339nano_utc() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            ts(1_796_223_845, 123_456_789),
            "2026-12-02T15:04:05.123456789Z"
        );
        assert_eq!(ts(1_796_223_845, 120_000_000), "2026-12-02T15:04:05.12Z");
        assert_eq!(ts(4_107_542_399, 100), "2100-02-28T23:59:59.0000001Z");
        assert_eq!(ts(4_107_542_400, 0), "2100-03-01T00:00:00Z");
    }
}
