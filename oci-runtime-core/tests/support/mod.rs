//! Harness for the runtime's integration tests (next to `common`, which the benches share and
//! which therefore may only use std, the runtime and serde_json).
//!
//! - [`Harness`]: a `Runtime` on its own temp root. Every container it creates is recorded, and
//!   on drop (also when an assertion failed) it force-deletes them, reaps their inits and then
//!   checks that no state dir and no mount under this process' temp dirs is left.
//! - Tests that look at process-wide things (our children, our fds) take the harness
//!   [`Harness::exclusive`]ly: every other test of the same binary takes it shared, so they
//!   never run at the same time.
//! - Helpers to make a container "print what it sees" into a bind-mounted host dir (`/out`),
//!   and to read what the kernel shows about processes in /proc.
//! - [`console`]: the test side of a console socket (receive the pty master, read it).

#![allow(dead_code)]

pub mod console;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use berth_runtime_core::oci_spec::runtime::{Mount, Spec};
use berth_runtime_core::{Container, CreateOptions, Error, Runtime, State};

use crate::common::{Bundle, TempDir, unique};

/// Taken shared by ordinary tests, exclusively by tests that inspect process-wide state.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

/// The runtime of a harness.
pub struct Rt {
    inner: Runtime,
}

impl Rt {
    /// The runtime itself.
    pub fn raw(&self) -> &Runtime {
        &self.inner
    }
    pub fn root(&self) -> &Path {
        self.inner.root()
    }
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        self.inner.create(id, opts)
    }
    pub fn start(&self, id: &str) -> Result<(), Error> {
        self.inner.start(id)
    }
    pub fn run(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        self.inner.run(id, opts)
    }
    pub fn delete_container(&self, c: Container, force: bool) -> Result<(), Error> {
        self.inner.delete_container(c, force)
    }
    pub fn state(&self, id: &str) -> Result<State, Error> {
        self.inner.state(id)
    }
    pub fn list(&self) -> Result<Vec<State>, Error> {
        self.inner.list()
    }
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        self.inner.kill(id, signal, all)
    }
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        self.inner.delete(id, force)
    }
}

/// How long a container may run before the harness kills it and fails the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

enum Lock {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A runtime on a private temp root that cleans up after the test, even on failure.
///
/// Declare it *after* the bundles and temp dirs of the test, so that it is dropped (and kills
/// the containers) before their files go away.
pub struct Harness {
    pub rt: Rt,
    root: TempDir,
    ids: Mutex<Vec<String>>,
    /// Inits created through the harness and not reaped yet, with a pidfd each (which
    /// names exactly that process, even once it is reaped and its pid reused).
    unreaped: Mutex<Vec<(i32, Option<OwnedFd>)>>,
    /// What the runtime reported through `Runtime::on_warning`.
    warnings: std::sync::Arc<Mutex<Vec<String>>>,
    _lock: Lock,
}

impl Harness {
    /// The warnings the runtime reported so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An ordinary test's harness.
    pub fn new() -> Self {
        let g = EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner());
        Self::with_lock(Lock::Shared(g))
    }

    /// A harness for a test that must be alone in this test binary.
    pub fn exclusive() -> Self {
        let g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
        Self::with_lock(Lock::Exclusive(g))
    }

    fn with_lock(lock: Lock) -> Self {
        // The runtime creates its root itself: give it a path that does not exist yet.
        let root = TempDir::new("berth-root");
        let warnings = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&warnings);
        Harness {
            rt: Rt {
                inner: Runtime::new(root.path().join("state")).on_warning(move |w| {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(w.to_owned())
                }),
            },
            root,
            ids: Mutex::new(Vec::new()),
            unreaped: Mutex::new(Vec::new()),
            warnings,
            _lock: lock,
        }
    }

    /// The runtime's state root.
    pub fn state_root(&self) -> &Path {
        self.rt.root()
    }

    /// The state dir a container id would have.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.rt.root().join(id)
    }

    /// A fresh container id, deleted (forcibly) when the harness is dropped.
    pub fn id(&self, prefix: &str) -> String {
        let id = unique(prefix);
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        id
    }

    /// Writes the bundle's config.json and creates a container from it.
    pub fn create(&self, id: &str, bundle: &Bundle) -> Result<Container, Error> {
        bundle.write();
        self.create_opts(id, &CreateOptions::new(bundle.path().to_path_buf()))
    }

    /// Writes the bundle's config.json and creates and starts a container in one step
    /// (`Runtime::run`).
    pub fn run_started(&self, id: &str, bundle: &Bundle) -> Result<Container, Error> {
        bundle.write();
        self.track(id, |rt| {
            rt.run(id, &CreateOptions::new(bundle.path().to_path_buf()))
        })
    }

    /// Creates a container with explicit options (config.json must be written).
    pub fn create_opts(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        self.track(id, |rt| rt.create(id, opts))
    }

    /// Records `id` and the init of the container `make` returns, for the clean-up.
    fn track(
        &self,
        id: &str,
        make: impl FnOnce(&Rt) -> Result<Container, Error>,
    ) -> Result<Container, Error> {
        {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
        let c = make(&self.rt)?;
        // The init is our unreaped child: its pid can't have been reused yet.
        let pidfd = pidfd_open(c.pid());
        self.unreaped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((c.pid(), pidfd));
        Ok(c)
    }

    /// Writes the bundle's config.json (whose `process.terminal` must be true) and creates a
    /// container from it with its console socket on a fresh [`ConsoleSocket`]; returns the
    /// container, the pty master the runtime sent and the payload with it (the pty's name).
    pub fn create_with_console(&self, id: &str, bundle: &Bundle) -> (Container, OwnedFd, Vec<u8>) {
        bundle.write();
        let sock = ConsoleSocket::new();
        let c = self
            .create_opts(
                id,
                &CreateOptions::new(bundle.path().to_path_buf())
                    .console_socket(Some(sock.path.clone())),
            )
            .expect("create with a console socket");
        let (conn, _) = sock.listener.accept().expect("accept");
        let (master, payload) = console::recv_fd(&conn);
        (c, master, payload)
    }

    /// SIGKILLs every container init created through the harness and not reaped yet (from
    /// any thread: a watchdog's way out of a deadlock).
    pub fn kill_all(&self) {
        for (_, fd) in self
            .unreaped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some(fd) = fd {
                pidfd_kill(fd, libc::SIGKILL);
            }
        }
    }

    /// [`Container::wait`], but a container still running after [`WAIT_LIMIT`] is killed and
    /// the test fails.
    pub fn wait(&self, c: &Container) -> i32 {
        self.wait_limit(c, WAIT_LIMIT)
    }

    /// As [`Harness::wait`] with an explicit limit.
    pub fn wait_limit(&self, c: &Container, limit: Duration) -> i32 {
        let pid = c.pid();
        // Signal through a pidfd: it can never hit a recycled pid.
        let pidfd = pidfd_open(pid);
        let done = std::sync::atomic::AtomicBool::new(false);
        let killed = std::sync::atomic::AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let deadline = Instant::now() + limit;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if Instant::now() >= deadline {
                        if let Some(fd) = &pidfd {
                            pidfd_kill(fd, libc::SIGKILL);
                            killed.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let r = c.wait();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        if result.is_ok() {
            self.unreaped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(p, _)| *p != pid);
        }
        assert!(
            !killed.load(std::sync::atomic::Ordering::SeqCst),
            "container {} (pid {pid}) still ran after {limit:?}: killed",
            c.id()
        );
        result.expect("Container::wait")
    }

    /// create + start + wait + delete; returns the exit code.
    pub fn run(&self, bundle: &Bundle) -> i32 {
        let id = self.id("run");
        let c = self.create(&id, bundle).expect("create");
        self.rt.start(&id).expect("start");
        let code = self.wait(&c);
        self.rt.delete(&id, false).expect("delete");
        code
    }

    /// Names of the entries left under the state root.
    pub fn leftover_state(&self) -> Vec<String> {
        match fs::read_dir(self.rt.root()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in &ids {
            let _ = self.rt.delete(id, true);
        }
        let pids = std::mem::take(&mut *self.unreaped.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, fd) in pids {
            // The pid is our unreaped child, so it cannot have been recycled.
            match &fd {
                Some(fd) => pidfd_kill(fd, libc::SIGKILL),
                // SAFETY: kill of our own unreaped child.
                None => unsafe {
                    libc::kill(pid, libc::SIGKILL);
                },
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut st = 0;
                // SAFETY: waitpid on our own child with a valid status pointer.
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
                if r != 0 || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if std::thread::panicking() {
            return;
        }
        let left = self.leftover_state();
        assert!(
            left.is_empty(),
            "state dirs left under {:?}: {left:?}",
            self.rt.root()
        );
        assert_no_test_mounts();
        let _ = &self.root;
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new fd the kernel just gave us.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_kill(fd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<u8>(),
            0,
        )
    };
}

/// A listening console socket in a temp dir of its own.
pub struct ConsoleSocket {
    pub path: PathBuf,
    pub listener: UnixListener,
    _dir: TempDir,
}

impl ConsoleSocket {
    pub fn new() -> Self {
        let dir = TempDir::new("berth-console");
        let path = dir.path().join("console.sock");
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        ConsoleSocket {
            path,
            listener,
            _dir: dir,
        }
    }
}

/// Fails if /proc/self/mountinfo shows a mount under one of this process' temp dirs.
///
/// Mounts under a `berth-runc-root-*` dir are runc's, not ours: runc (Debian's 1.1.5+deb12u1,
/// upstream 1.1.12 and later) bind-mounts its own binary read-only onto a file in its state
/// dir while a container starts (its CVE-2019-5736 guard) and removes it itself. The tests
/// that compare with runc run beside the others, so any of them can see that mount in passing.
pub fn assert_no_test_mounts() {
    let tmp = std::env::temp_dir();
    let tag = format!("-{}-", std::process::id());
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let bad: Vec<&str> = info
        .lines()
        .filter(|l| {
            l.split(' ').nth(4).is_some_and(|mp| {
                Path::new(mp).starts_with(&tmp)
                    && mp.contains(&tag)
                    && !mp.contains("/berth-runc-root-")
            })
        })
        .collect();
    assert!(
        bad.is_empty(),
        "mounts left in the host namespace: {bad:#?}"
    );
}

/// A mount entry.
pub fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// Appends a mount to the spec.
pub fn add_mount(spec: &mut Spec, m: Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(m);
    spec.set_mounts(Some(mounts));
}

/// A host dir, writable by anyone, bind-mounted read-write on `/out` in the container.
pub fn bind_out(bundle: &mut Bundle) -> TempDir {
    let out = TempDir::new("berth-out");
    fs::set_permissions(out.path(), fs::Permissions::from_mode(0o777)).expect("chmod out");
    fs::create_dir_all(bundle.rootfs().join("out")).expect("mkdir rootfs/out");
    let src = out.path().to_string_lossy().into_owned();
    add_mount(
        &mut bundle.spec,
        mount("/out", "bind", &src, &["rbind", "rw"]),
    );
    out
}

/// Sets process.args to `sh -c script`.
pub fn sh(bundle: &mut Bundle, script: &str) {
    bundle.args(&["/bin/sh", "-c", script]);
}

/// A bundle whose container runs `script` with `/out` bound to the returned dir.
pub fn sh_bundle(script: &str) -> (Bundle, TempDir) {
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    sh(&mut b, script);
    (b, out)
}

/// Reads a file the container wrote, trimmed; panics with the path if it is missing.
pub fn read(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Polls `cond` every few ms until it holds; false after `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `readlink /proc/<pid>/ns/<name>` (e.g. `mnt:[4026531841]`).
pub fn ns_id(pid: impl std::fmt::Display, name: &str) -> String {
    let p = format!("/proc/{pid}/ns/{name}");
    fs::read_link(&p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The state letter of /proc/<pid>/stat, `None` if the process is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.chars().next()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Processes (zombies included) whose parent is this process.
pub fn children() -> Vec<i32> {
    // Not the cp(1) of another test's bundle being made meanwhile.
    let _copying = crate::common::COPYING
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| ppid(*p) == Some(me))
        .collect()
}

/// Live processes in the pid namespace of `pid` (its own included).
pub fn pids_in_pidns_of(pid: i32) -> Vec<i32> {
    let target = ns_id(pid, "pid");
    all_pids()
        .into_iter()
        .filter(|p| {
            fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l.to_string_lossy() == target)
        })
        .filter(|p| alive(*p))
        .collect()
}

/// A line `Key:\tvalue` of /proc/<pid>/status (or of a saved copy), value trimmed.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The mount points and options of a saved mountinfo: (mount point, per-mount options,
/// fs type, super options).
pub struct MountInfo {
    pub point: String,
    pub opts: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_opts: Vec<String>,
}

/// Parses /proc/<pid>/mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                point: f.get(4)?.to_string(),
                opts: f.get(5)?.split(',').map(str::to_string).collect(),
                fstype: r.first()?.to_string(),
                source: r.get(1)?.to_string(),
                super_opts: r.get(2)?.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The last (topmost) mount on `point`.
pub fn mount_at<'a>(mounts: &'a [MountInfo], point: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.point == point)
}

/// Fails unless `err`'s message contains every one of `needles`.
#[track_caller]
pub fn assert_err_contains(err: &Error, needles: &[&str]) {
    let msg = err.to_string();
    for n in needles {
        assert!(
            msg.contains(n),
            "error {msg:?} does not mention {n:?} ({err:?})"
        );
    }
}

/// Writes an executable host shell script.
///
/// The text is written to a side file and copied into place by cp(1): a script this process
/// wrote itself could fail to execute with ETXTBSY (see [`crate::common::copy_executable`]).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    let text = dir.join(format!(".{name}.text"));
    fs::write(&text, format!("#!/bin/sh\n{body}\n")).expect("write script");
    crate::common::copy_executable(&text, &p);
    fs::remove_file(&text).expect("rm script text");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}
