//! The lifecycle operations of the OCI runtime spec, one file each: [`Runtime::create`]
//! (`create.rs`, with [`Runtime::run`]: create and start in one step), [`Runtime::start`]
//! (`start.rs`), [`Runtime::kill`] (`kill.rs`), [`Runtime::delete`] (`delete.rs`, with
//! [`Runtime::delete_container`]), the read-only `state`/`list`/`config` (`inspect.rs`),
//! the cgroup operations `pause`/`resume`/`update`/`ps`/`stats` (`cgroup.rs`) and
//! [`Runtime::exec`] (`exec.rs`). This file holds the [`Runtime`] and [`Container`] types and
//! the helpers they share.

pub(crate) mod affinity;
mod cgroup;
mod create;
mod delete;
pub(crate) mod exec;
mod inspect;
mod kill;
mod start;

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_cgroups::CgroupManager;
use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::child::sys;
use crate::error::Error;
use crate::state::{self, ContainerDir, Record, Status};
/// How to create a container (the flags of `runc create`): [`CreateOptions::new`] with the
/// bundle, then a setter per flag.
///
/// ```
/// let opts = berth_runtime_core::CreateOptions::new("/srv/bundles/web")
///     .pid_file(std::path::PathBuf::from("/run/web.pid"))
///     .preserve_fds(2);
/// assert_eq!(opts.preserve_fds, 2);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateOptions {
    /// The bundle directory (relative paths are taken against the current directory).
    pub bundle: PathBuf,
    /// Where to write the init's pid (atomically: temp file + rename).
    pub pid_file: Option<PathBuf>,
    /// Unix socket to which the pty master is sent when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (for ramdisk roots).
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of creating one for the container.
    pub no_new_keyring: bool,
    /// Pass this many fds after stdio (3, 4, ...) into the container.
    pub preserve_fds: u32,
    /// The init's stdin, stdout and stderr, where they are not the caller's own 0, 1, 2.
    pub stdio: Stdio,
}

/// A container process' stdin, stdout and stderr: each one given here replaces the caller's
/// own descriptor 0, 1 or 2 in that process (a shim gives every container its own fifos,
/// files or pipes); each one left out is inherited. The descriptors are shared, not taken:
/// the caller may close its copies once `create` or `exec` returned.
///
/// ```
/// use std::sync::Arc;
/// let null = Arc::new(std::fs::File::open("/dev/null")?.into());
/// let stdio = berth_runtime_core::Stdio::default().stdin(null);
/// assert!(stdio.stdin.is_some() && stdio.stdout.is_none());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stdio {
    /// Becomes the process' fd 0.
    pub stdin: Option<Arc<OwnedFd>>,
    /// Becomes the process' fd 1.
    pub stdout: Option<Arc<OwnedFd>>,
    /// Becomes the process' fd 2.
    pub stderr: Option<Arc<OwnedFd>>,
}

impl Stdio {
    /// Sets the process' stdin.
    pub fn stdin(mut self, fd: impl Into<Option<Arc<OwnedFd>>>) -> Self {
        self.stdin = fd.into();
        self
    }

    /// Sets the process' stdout.
    pub fn stdout(mut self, fd: impl Into<Option<Arc<OwnedFd>>>) -> Self {
        self.stdout = fd.into();
        self
    }

    /// Sets the process' stderr.
    pub fn stderr(mut self, fd: impl Into<Option<Arc<OwnedFd>>>) -> Self {
        self.stderr = fd.into();
        self
    }

    /// Copies of the given descriptors numbered at least `min` (close-on-exec), so that the
    /// fragile child can `dup2` them onto 0, 1 and 2 in any order without one overwriting
    /// another still to be copied, and never onto a preserved fd (`3..min`).
    pub(crate) fn dup_above(&self, min: RawFd) -> Result<[Option<OwnedFd>; 3], Error> {
        let dup = |fd: &Option<Arc<OwnedFd>>, which: &str| -> Result<Option<OwnedFd>, Error> {
            let Some(fd) = fd else { return Ok(None) };
            // SAFETY: F_DUPFD_CLOEXEC on an open descriptor we borrow; the result is new.
            let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
            if r < 0 {
                return Err(Error::sys(
                    format!("fcntl(F_DUPFD_CLOEXEC) of {which}"),
                    nix::Error::last(),
                ));
            }
            // SAFETY: fcntl returned a new descriptor that nobody else owns.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(r) }))
        };
        Ok([
            dup(&self.stdin, "stdin")?,
            dup(&self.stdout, "stdout")?,
            dup(&self.stderr, "stderr")?,
        ])
    }
}

/// The raw numbers of [`Stdio::dup_above`]'s copies, -1 where inherited.
pub(crate) fn raw_stdio(fds: &[Option<OwnedFd>; 3]) -> [RawFd; 3] {
    [0, 1, 2].map(|i| fds[i].as_ref().map_or(-1, |f| f.as_raw_fd()))
}

impl CreateOptions {
    /// Options for creating a container from `bundle`, every flag off.
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        CreateOptions {
            bundle: bundle.into(),
            ..Default::default()
        }
    }

    /// Where to write the init's pid (`--pid-file`).
    pub fn pid_file(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.pid_file = path.into();
        self
    }

    /// The socket the pty master goes to (`--console-socket`).
    pub fn console_socket(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.console_socket = path.into();
        self
    }

    /// `MS_MOVE` + `chroot` instead of `pivot_root` (`--no-pivot`).
    pub fn no_pivot(mut self, on: bool) -> Self {
        self.no_pivot = on;
        self
    }

    /// Keep the caller's session keyring (`--no-new-keyring`).
    pub fn no_new_keyring(mut self, on: bool) -> Self {
        self.no_new_keyring = on;
        self
    }

    /// Pass `n` fds after stdio into the container (`--preserve-fds`).
    pub fn preserve_fds(mut self, n: u32) -> Self {
        self.preserve_fds = n;
        self
    }

    /// The init's own stdin, stdout and stderr (see [`Stdio`]).
    pub fn stdio(mut self, stdio: Stdio) -> Self {
        self.stdio = stdio;
        self
    }
}

/// A runtime: a state root directory under which containers live.
///
/// ```no_run
/// use berth_runtime_core::{CreateOptions, Runtime};
/// let rt = Runtime::new("/run/berth");
/// let c = rt.create("demo", &CreateOptions::new("/tmp/bundle"))?;
/// rt.start("demo")?;
/// let code = c.wait()?;
/// rt.delete("demo", false)?;
/// # Ok::<(), berth_runtime_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    root: PathBuf,
    warn: Arc<dyn Fn(&str) + Send + Sync>,
    rootless_cgroups: Option<bool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A container created by this process: its init is our child, so we can wait for it.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: i32,
    warnings: Vec<String>,
    /// What create opened and [`Runtime::delete_container`] reuses.
    kept: Kept,
}

/// What `create` keeps of a container for its `delete` in the same process.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The cgroup create made, opened.
    pub cgroup: Option<CgroupManager>,
    /// The record's `created` time (nanoseconds): another container with the same id (this
    /// one deleted and the id taken again meanwhile) is not this one.
    pub created: String,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container init.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What `create` adjusted in the config rather than failing (e.g. ambient capabilities
    /// the kernel can't raise because they are not also permitted and inheritable).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Waits for the init to exit and returns its exit code as a shell reports it (128 + N
    /// when killed by signal N). Only the process that created the container can wait.
    pub fn wait(&self) -> Result<i32, Error> {
        wait_exit(self.pid)
    }
}

/// Waits for our child `pid` and returns its exit code as a shell reports it (128 + N when
/// killed by signal N).
pub(crate) fn wait_exit(pid: i32) -> Result<i32, Error> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Ok(libc::WEXITSTATUS(status));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(128 + libc::WTERMSIG(status));
            }
            continue;
        }
        let e = nix::Error::last();
        if e != nix::Error::EINTR {
            return Err(Error::sys(format!("waitpid({pid})"), e));
        }
    }
}

/// Runs `f` unless dropped after `disarm`.
pub(crate) struct Cleanup<F: FnMut()>(pub(crate) Option<F>);
impl<F: FnMut()> Cleanup<F> {
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}
impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.as_mut() {
            f();
        }
    }
}

fn abs_path(p: &Path) -> Result<PathBuf, Error> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("get current dir", ".", e))?
            .join(p)
    };
    // Normalise `.` and `..` lexically, as runc does for the bundle path.
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

pub(crate) fn state_json(record: &Record, status: Status) -> Vec<u8> {
    serde_json::to_vec(&state_value(record, status)).unwrap_or_default()
}

/// The spec's state for hooks and the seccomp agent: ociVersion, id, status, pid, bundle,
/// annotations.
pub(crate) fn state_value(record: &Record, status: Status) -> serde_json::Value {
    let s = record.to_state(status);
    let mut v = serde_json::json!({
        "ociVersion": s.oci_version,
        "id": s.id,
        "status": s.status,
        "bundle": s.bundle,
    });
    // A stopped container has no pid (runc leaves the field out).
    if status != Status::Stopped {
        v["pid"] = serde_json::json!(record.pid);
    }
    if !s.annotations.is_empty() {
        v["annotations"] = serde_json::json!(s.annotations);
    }
    v
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let path = abs_path(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("write pid file", &tmp, e))?;
    f.write_all(pid.to_string().as_bytes())
        .map_err(|e| Error::io("write pid file", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("rename pid file", &path, e)
    })
}

/// The connected console socket a process with `process.terminal` sends its pty master
/// to (none without a terminal); a terminal without a socket is a config error.
pub(crate) fn connect_console(
    terminal: bool,
    socket: Option<&Path>,
) -> Result<Option<std::os::unix::net::UnixStream>, Error> {
    if !terminal {
        return Ok(None);
    }
    let path = socket.ok_or_else(|| {
        Error::Config(crate::config::validate::ConfigError::new(
            "process.terminal",
            "is set but no console socket was given (--console-socket)",
        ))
    })?;
    std::os::unix::net::UnixStream::connect(path)
        .map(Some)
        .map_err(|e| Error::io("connect console socket", path, e))
}

/// SIGKILLs our child `pid` and reaps it (nothing for a pid of 0 or less).
pub(crate) fn kill_and_reap(pid: i32) {
    if pid > 0 {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut st = 0;
            while libc::waitpid(pid, &mut st, libc::__WALL) < 0 && sys::errno() == libc::EINTR {}
        }
    }
}

fn hooks_of(spec: &Spec) -> Hooks {
    spec.hooks().clone().unwrap_or_default()
}

fn list(h: &Option<Vec<Hook>>) -> &[Hook] {
    h.as_deref().unwrap_or(&[])
}
impl Runtime {
    /// A runtime keeping container state under `root` (created on first use, mode 0700).
    /// Warnings (failed poststart/poststop hooks, which the spec says must not fail the
    /// operation) go to stderr until [`Runtime::on_warning`] sends them elsewhere.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            warn: Arc::new(|w| eprintln!("berth: warning: {w}")),
            rootless_cgroups: None,
        }
    }

    /// Whether cgroup permission errors are ignored for containers that ask for no limits
    /// and name no `linux.cgroupsPath` (runc's `--rootless`): `None` (the default) decides as
    /// runc's `auto` does, yes unless this process is root in the initial user namespace.
    pub fn rootless_cgroups(mut self, rootless: Option<bool>) -> Self {
        self.rootless_cgroups = rootless;
        self
    }

    /// Sends the runtime's warnings to `sink` (a logger, say) instead of stderr.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// let rt = berth_runtime_core::Runtime::new("/run/berth")
    ///     .on_warning(move |w| sink.lock().unwrap().push(w.to_owned()));
    /// ```
    pub fn on_warning(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.warn = Arc::new(sink);
        self
    }

    /// The state root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens container `id`'s state dir (locked) and its record; a container still being
    /// created (no record yet) can't be the subject of `op`.
    fn open_record(&self, id: &str, op: &'static str) -> Result<(ContainerDir, Record), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op,
        })?;
        Ok((dir, record))
    }

    /// Opens a container's record and cgroup, checking that its status is one of `allowed`.
    fn live(
        &self,
        id: &str,
        op: &'static str,
        allowed: &[Status],
    ) -> Result<(Record, CgroupManager), Error> {
        let (dir, record) = self.open_record(id, op)?;
        let status = state::live_status(&dir.path, &record);
        if !allowed.contains(&status) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                status,
                op,
            });
        }
        let cg = record
            .cgroup()?
            .ok_or_else(|| Error::NoCgroup { id: id.to_owned() })?;
        Ok((record, cg))
    }
}

/// Why our child `pid` (`who`: "init", "the exec'd process") ended during setup without
/// reporting anything; reaps it.
pub(crate) fn exit_reason(pid: i32, who: &str) -> String {
    let mut st = 0;
    // SAFETY: reaping our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
    if r != pid {
        format!("{who} exited during setup")
    } else if libc::WIFSIGNALED(st) {
        format!(
            "{who} was killed by signal {} during setup",
            libc::WTERMSIG(st)
        )
    } else {
        format!(
            "{who} exited with status {} during setup",
            libc::WEXITSTATUS(st)
        )
    }
}
