//! The containers of one shim and their processes, run by berth's runtime in this process:
//! what containerd's task service asks of a shim, without the protocol.
//!
//! [`Tasks`] creates each container with `berth_runtime_core::Runtime::create` (no runtime
//! binary, no re-exec), so the container's init and every exec'd process are children of
//! this process. Their exits come from the process' [`Monitor`]: each one is recorded as soon
//! as it is reaped (the init's also in the bundle, see [`saved_exit`]), stays queryable by
//! [`Tasks::wait`] and [`Tasks::state`] until [`Tasks::delete`], and is reported as an
//! [`Event`] in the order a manager needs: a container's create and a process' start before
//! its exit (an init that dies before it is started has a create and an exit, no start),
//! every exec's exit before its container's init's, and the init's exit before its delete.
//!
//! A process whose stdout or stderr is a CRI log (`crilog://`, see [`crate::crilog`]) has
//! its exit recorded and reported once the shim has written all its output into the file
//! (or `crilog::DRAIN_TIMEOUT` after it was reaped, if a pipe stays open), so a manager that
//! reads the log on the exit finds every line; [`Tasks::reopen_log`] reopens those files.
//!
//! ```no_run
//! use berth_runtime_core::Runtime;
//! use berth_shim_core::monitor::Monitor;
//! use berth_shim_core::task::{CreateTask, Tasks};
//!
//! let monitor = Monitor::start()?; // before any other thread
//! let tasks = Tasks::new(Runtime::new("/run/berth-shim"), monitor, |event| println!("{event:?}"));
//! let pid = tasks.create(CreateTask::new("c1", "/srv/bundles/c1"))?;
//! tasks.start("c1", None)?;
//! let exit = tasks.wait("c1", None)?;
//! println!("{pid} exited with {}", exit.status);
//! tasks.delete("c1", None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_runtime_core::oci_spec::runtime::{LinuxResources, Process};
use berth_runtime_core::{Container, CreateOptions, ExecOptions, Runtime, Stdio};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::console::{ConsoleSocket, WinSize, set_winsize};
use crate::crilog::Drain;
use crate::monitor::{Monitor, Reaped};
use crate::mounts::{self, Mount};
use crate::oom::OomEvents;
use crate::reap::Pidfd;
use crate::relay::Relay;
use crate::stdio::ProcessIo;

/// Why a task operation failed, with the kind a protocol maps to its status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No such container or process.
    #[error("{0}")]
    NotFound(String),
    /// The id or exec id is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not possible in the process' state (delete while running, exec after the init's
    /// exit, start twice).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bad request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] berth_runtime_core::Error),
    /// Supervision (stdio, mounts, the monitor) failed.
    #[error(transparent)]
    Shim(#[from] crate::Error),
}

type Result<T, E = TaskError> = std::result::Result<T, E>;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Its host pid.
    pub pid: i32,
    /// Exit code, or 128 + N when killed by signal N.
    pub status: u32,
    /// When it was reaped.
    pub at: SystemTime,
}

/// The life of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Its container is paused.
    Paused,
    /// Exited.
    Stopped,
}

/// What [`Tasks`] reports to its manager, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A container was created.
    Create {
        /// Container id.
        id: String,
        /// Its bundle.
        bundle: PathBuf,
        /// The init's pid.
        pid: i32,
        /// Its rootfs mounts, stdio and terminal, as requested.
        request: CreateTask,
    },
    /// A container's init started.
    Start {
        /// Container id.
        id: String,
        /// The init's pid.
        pid: i32,
    },
    /// An exec was registered (not started yet).
    ExecAdded {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
    },
    /// An exec started.
    ExecStarted {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
        /// Its pid.
        pid: i32,
    },
    /// A process exited: `exec_id` `None` for the init.
    Exit {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: Option<String>,
        /// How.
        exit: ExitInfo,
    },
    /// A container was deleted.
    Delete {
        /// Container id.
        id: String,
        /// How its init ended.
        exit: ExitInfo,
    },
    /// A container was paused.
    Paused {
        /// Container id.
        id: String,
    },
    /// A container was resumed.
    Resumed {
        /// Container id.
        id: String,
    },
    /// A process of the container was killed by the kernel's OOM killer.
    Oom {
        /// Container id.
        id: String,
    },
}

/// A container to create: the bundle, and how to fill it and connect it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateTask {
    /// Container id.
    pub id: String,
    /// The bundle (with config.json).
    pub bundle: PathBuf,
    /// Mounted in order on `<bundle>/rootfs` first, when not empty.
    pub rootfs: Vec<Mount>,
    /// Whether the init gets a pty (config.json's process.terminal must agree).
    pub terminal: bool,
    /// Stdio paths (see [`crate::stdio`]).
    pub stdin: String,
    /// Stdout path.
    pub stdout: String,
    /// Stderr path.
    pub stderr: String,
    /// `MS_MOVE` + `chroot` instead of `pivot_root` (runc's `--no-pivot`).
    pub no_pivot: bool,
    /// Keep the shim's session keyring (runc's `--no-new-keyring`).
    pub no_new_keyring: bool,
}

impl CreateTask {
    /// A container `id` from `bundle`, without rootfs mounts, stdio or terminal.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> CreateTask {
        CreateTask {
            id: id.into(),
            bundle: bundle.into(),
            ..Default::default()
        }
    }
}

/// What [`Tasks::state`] tells of a process.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessState {
    /// Container id.
    pub id: String,
    /// The container's bundle.
    pub bundle: PathBuf,
    /// Host pid (0 before an exec started).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// The stdio paths as given.
    pub stdin: String,
    /// Stdout path.
    pub stdout: String,
    /// Stderr path.
    pub stderr: String,
    /// Whether it has a pty.
    pub terminal: bool,
    /// How it ended, once it has.
    pub exit: Option<ExitInfo>,
}

/// The pty of a process: its master (for resizes) and the relay thread's stop switch.
struct Terminal {
    master: OwnedFd,
    /// Written to close the relay's input (CloseIO).
    control: OwnedFd,
}

struct Proc {
    pid: i32,
    pidfd: Option<Pidfd>,
    status: Status,
    exit: Option<ExitInfo>,
    io: ProcessIo,
    terminal: Option<Terminal>,
    paths: [String; 3],
    tty: bool,
    /// An exec's process, kept from Exec to Start.
    spec: Option<Process>,
}

impl Proc {
    fn new(paths: [String; 3], tty: bool) -> Proc {
        Proc {
            pid: 0,
            pidfd: None,
            status: Status::Created,
            exit: None,
            io: ProcessIo::default(),
            terminal: None,
            paths,
            tty,
            spec: None,
        }
    }
}

struct CtrState {
    container: Option<Container>,
    init: Proc,
    execs: HashMap<String, Proc>,
    paused: bool,
    /// The init's exit, held back until the running execs have reported theirs.
    init_exit_held: bool,
    /// Whether the Create event was sent: an init that exits before is recorded, and its
    /// exit reported right after the Create.
    announced: bool,
    rootfs_mounted: bool,
}

struct Ctr {
    id: String,
    bundle: PathBuf,
    state: Mutex<CtrState>,
    exited: Condvar,
    /// The init's CRI log drain, set as soon as its stdio is open: its exit, even one that
    /// comes while `create` is still running, is told once its output is written.
    init_drain: OnceLock<Drain>,
}

impl Ctr {
    fn lock(&self) -> MutexGuard<'_, CtrState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    runtime: Runtime,
    monitor: Monitor,
    events: Box<dyn Fn(Event) + Send + Sync>,
    containers: Mutex<HashMap<String, Arc<Ctr>>>,
    /// The OOM thread, started with the first container that has a memory cgroup.
    oom: OnceLock<Option<OomEvents>>,
}

/// The containers of a shim (see the module). Cheap to clone.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").finish_non_exhaustive()
    }
}

/// The file in a bundle where the init's exit is saved as soon as it is reaped.
pub const EXIT_FILE: &str = "berth-exit.json";

/// The init's exit saved in `bundle` by a shim (for a `delete` after the shim died), if it
/// exited before.
///
/// ```no_run
/// if let Some(exit) = berth_shim_core::task::saved_exit("/run/bundles/c1".as_ref()) {
///     println!("exited with {}", exit.status);
/// }
/// ```
pub fn saved_exit(bundle: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(bundle.join(EXIT_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = v.get("exited_at_ns")?.as_u64()?;
    Some(ExitInfo {
        pid: i32::try_from(v.get("pid")?.as_i64()?).ok()?,
        status: u32::try_from(v.get("exit_status")?.as_u64()?).ok()?,
        at: UNIX_EPOCH + Duration::from_nanos(ns),
    })
}

fn save_exit(bundle: &Path, exit: &ExitInfo) -> std::io::Result<()> {
    let ns = exit
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let text = serde_json::json!({"pid": exit.pid, "exit_status": exit.status, "exited_at_ns": ns});
    let tmp = bundle.join(format!(".{EXIT_FILE}.tmp"));
    std::fs::write(&tmp, text.to_string())?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE))
}

fn not_found(id: &str, exec_id: Option<&str>) -> TaskError {
    match exec_id {
        Some(e) => TaskError::NotFound(format!("process {e} of container {id} does not exist")),
        None => TaskError::NotFound(format!("container {id} does not exist")),
    }
}

fn proc_of<'a>(st: &'a mut CtrState, id: &str, exec_id: Option<&str>) -> Result<&'a mut Proc> {
    match exec_id {
        None => Ok(&mut st.init),
        Some(e) => st.execs.get_mut(e).ok_or_else(|| not_found(id, Some(e))),
    }
}

impl Tasks {
    /// Containers run by `runtime` (its root holds their state), their exits from `monitor`,
    /// every [`Event`] passed to `events` in order (it must not block: queue it).
    pub fn new(
        runtime: Runtime,
        monitor: Monitor,
        events: impl Fn(Event) + Send + Sync + 'static,
    ) -> Tasks {
        Tasks {
            inner: Arc::new(Inner {
                runtime,
                monitor,
                events: Box::new(events),
                containers: Mutex::new(HashMap::new()),
                oom: OnceLock::new(),
            }),
        }
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Arc<Ctr>>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Ctr>> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id, None))
    }

    /// How many containers are left (a shim exits at Shutdown only when none is).
    pub fn len(&self) -> usize {
        self.containers().len()
    }

    /// Whether no container is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The init's pid of `id` (0 if unknown).
    pub fn init_pid(&self, id: &str) -> i32 {
        self.get(id).map(|c| c.lock().init.pid).unwrap_or(0)
    }

    /// Creates a container: mounts its rootfs, opens its stdio, creates it with the runtime
    /// (its init waits for [`Tasks::start`]) and watches the init. Returns the init's pid.
    /// On a failure nothing is left: no mount, no state, no process.
    pub fn create(&self, req: CreateTask) -> Result<i32> {
        let id = req.id.clone();
        if self.containers().contains_key(&id) {
            return Err(TaskError::AlreadyExists(format!(
                "container {id} already exists"
            )));
        }
        let rootfs = req.bundle.join("rootfs");
        let mut mounted = false;
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| crate::Error::io("create directory", &rootfs, e))?;
            mounts::mount_all(&req.rootfs, &rootfs)?;
            mounted = true;
        }
        let unmount = |on: bool| {
            if on {
                let _ = mounts::unmount_all(&rootfs);
            }
        };
        let paths = [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()];
        let mut init = Proc::new(paths, req.terminal);
        let console = match prepare_io(&mut init, req.terminal) {
            Ok(c) => c,
            Err(e) => {
                unmount(mounted);
                return Err(e);
            }
        };
        let ctr = Arc::new(Ctr {
            id: id.clone(),
            bundle: req.bundle.clone(),
            state: Mutex::new(CtrState {
                container: None,
                init: Proc::new(Default::default(), false),
                execs: HashMap::new(),
                paused: false,
                init_exit_held: false,
                announced: false,
                rootfs_mounted: mounted,
            }),
            exited: Condvar::new(),
            init_drain: OnceLock::new(),
        });
        if let Some(d) = init.io.drain() {
            let _ = ctr.init_drain.set(d);
        }
        let mut opts = CreateOptions::new(&req.bundle)
            .stdio(runtime_stdio(&init.io))
            .no_pivot(req.no_pivot)
            .no_new_keyring(req.no_new_keyring)
            // As runc's shim: the init's pid in the bundle, for a `delete` after we died.
            .pid_file(req.bundle.join("init.pid"));
        if let Some(c) = &console {
            opts = opts.console_socket(c.path().to_owned());
        }
        let created = {
            let spawning = self.inner.monitor.spawning();
            match self.inner.runtime.create(&id, &opts) {
                Ok(c) => {
                    let pid = c.pid();
                    // Opened while nothing is reaped: the pid can't have been reused yet.
                    init.pidfd = Pidfd::open(pid).ok();
                    let tasks = self.clone();
                    let watched = Arc::clone(&ctr);
                    match spawning.watch(pid, move |r| tasks.exited(&watched, None, r)) {
                        Ok(()) => Ok(c),
                        Err(e) => {
                            let _ = self.inner.runtime.delete_container(c, true);
                            Err(TaskError::from(e))
                        }
                    }
                }
                Err(e) => Err(TaskError::from(e)),
            }
        };
        let container = match created {
            Ok(c) => c,
            Err(e) => {
                unmount(mounted);
                return Err(e);
            }
        };
        init.pid = container.pid();
        init.io.release_container_fds();
        if let Some(console) = console {
            if let Err(e) = attach_terminal(&mut init, &console) {
                let _ = self.inner.runtime.delete_container(container, true);
                unmount(mounted);
                return Err(e);
            }
            if let Some(d) = init.io.drain() {
                let _ = ctr.init_drain.set(d);
            }
        }
        let pid = init.pid;
        // Stored, made visible and announced under the container's lock: no request on
        // the id and no exit is handled in between (lock order: a container's state, then
        // the map; nothing takes them the other way round).
        let mut st = ctr.lock();
        // The init may have died already (it is watched since the runtime created it):
        // its exit, recorded on the placeholder, is kept.
        let early = st.init.exit.take();
        st.init = init;
        if let Some(exit) = early {
            st.init.exit = Some(exit);
            st.init.status = Status::Stopped;
            st.init.pidfd = None;
        }
        st.container = Some(container);
        self.containers().insert(id.clone(), Arc::clone(&ctr));
        (self.inner.events)(Event::Create {
            id: id.clone(),
            bundle: req.bundle.clone(),
            pid,
            request: req,
        });
        st.announced = true;
        if let Some(exit) = st.init.exit {
            (self.inner.events)(Event::Exit {
                id: id.clone(),
                exec_id: None,
                exit,
            });
        }
        drop(st);
        ctr.exited.notify_all();
        self.watch_oom(&id);
        Ok(pid)
    }

    fn watch_oom(&self, id: &str) {
        let Ok(watcher) = self.inner.runtime.oom_watcher(id) else {
            return;
        };
        let oom = self.inner.oom.get_or_init(|| {
            // Weak: the thread must not keep the containers alive.
            let (on_oom, alive) = (Arc::downgrade(&self.inner), Arc::downgrade(&self.inner));
            OomEvents::start(
                move |id| {
                    if let Some(inner) = on_oom.upgrade() {
                        (inner.events)(Event::Oom { id: id.to_owned() });
                    }
                },
                move |id| {
                    alive.upgrade().is_some_and(|inner| {
                        let containers = inner.containers.lock();
                        containers
                            .unwrap_or_else(|p| p.into_inner())
                            .contains_key(id)
                    })
                },
            )
            .ok()
        });
        if let Some(oom) = oom {
            oom.watch(id, watcher);
        }
    }

    /// Starts the init (`exec_id` `None`) or a registered exec. Returns its pid.
    pub fn start(&self, id: &str, exec_id: Option<&str>) -> Result<i32> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        let Some(exec_id) = exec_id else {
            if st.init.status != Status::Created {
                return Err(TaskError::FailedPrecondition(format!(
                    "container {id} is not in the created state"
                )));
            }
            {
                let _spawning = self.inner.monitor.spawning();
                self.inner.runtime.start(id)?;
            }
            if st.init.exit.is_none() {
                st.init.status = Status::Running;
            }
            let pid = st.init.pid;
            // Under the container's lock: its exit can't be reported before this.
            (self.inner.events)(Event::Start {
                id: id.to_owned(),
                pid,
            });
            return Ok(pid);
        };
        if st.init.exit.is_some() {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id} has exited: no process can be started in it"
            )));
        }
        let p = proc_of(&mut st, id, Some(exec_id))?;
        if p.status != Status::Created {
            return Err(TaskError::FailedPrecondition(format!(
                "process {exec_id} was started already"
            )));
        }
        let spec = p.spec.clone().ok_or_else(|| not_found(id, Some(exec_id)))?;
        let console = if p.tty {
            Some(ConsoleSocket::bind()?)
        } else {
            None
        };
        let mut opts = ExecOptions::default().stdio(runtime_stdio(&p.io));
        if let Some(c) = &console {
            opts = opts.console_socket(c.path().to_owned());
        }
        let (pid, pidfd) = {
            let spawning = self.inner.monitor.spawning();
            let proc = self.inner.runtime.exec(id, &spec, &opts)?;
            let pid = proc.pid();
            // Opened while nothing is reaped: the pid can't have been reused yet.
            let pidfd = Pidfd::open(pid).ok();
            let tasks = self.clone();
            let watched = Arc::clone(&ctr);
            let exec = exec_id.to_owned();
            spawning.watch(pid, move |r| tasks.exited(&watched, Some(&exec), r))?;
            (pid, pidfd)
        };
        p.pid = pid;
        p.pidfd = pidfd;
        p.status = Status::Running;
        p.io.release_container_fds();
        if let Some(console) = console {
            attach_terminal(p, &console)?;
        }
        (self.inner.events)(Event::ExecStarted {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            pid,
        });
        Ok(pid)
    }

    /// On the reaper thread: saves the init's exit and kills what its container has left,
    /// then records and reports the exit, at once or, for a process with a CRI log, once
    /// its output is written (on the copier's thread; at most `crilog::DRAIN_TIMEOUT` later,
    /// so the reaper never waits for it and no exit is held for ever).
    fn exited(&self, ctr: &Arc<Ctr>, exec_id: Option<&str>, r: Reaped) {
        let exit = ExitInfo {
            pid: r.exit.pid,
            status: r.exit.status.code() as u32,
            at: r.at,
        };
        let drain = match exec_id {
            None => {
                // On disk first: a `delete` after this shim died reports the real status.
                let _ = save_exit(&ctr.bundle, &exit);
                // The container's other processes die with it: by the kernel in its own pid
                // namespace, here otherwise (a shared or the host's pid namespace). Their
                // ends of the log pipes close with them.
                let _ = self.inner.runtime.kill(&ctr.id, libc::SIGKILL, true);
                ctr.init_drain.get().cloned()
            }
            Some(e) => ctr.lock().execs.get(e).and_then(|p| p.io.drain()),
        };
        match drain {
            None => self.record_exit(ctr, exec_id, exit),
            Some(d) => {
                let (tasks, ctr) = (self.clone(), Arc::clone(ctr));
                let exec_id = exec_id.map(str::to_owned);
                d.then(move || tasks.record_exit(&ctr, exec_id.as_deref(), exit));
            }
        }
    }

    /// Records an exit and reports it in order (see [`Tasks::exited`]).
    fn record_exit(&self, ctr: &Ctr, exec_id: Option<&str>, exit: ExitInfo) {
        let mut st = ctr.lock();
        let events = &self.inner.events;
        match exec_id {
            None => {
                st.init.exit = Some(exit);
                st.init.status = Status::Stopped;
                st.init.pidfd = None;
                let running = st.execs.values().any(|p| p.status == Status::Running);
                if running {
                    st.init_exit_held = true;
                } else if st.announced {
                    events(Event::Exit {
                        id: ctr.id.clone(),
                        exec_id: None,
                        exit,
                    });
                }
            }
            Some(e) => {
                if let Some(p) = st.execs.get_mut(e) {
                    p.exit = Some(exit);
                    p.status = Status::Stopped;
                    p.pidfd = None;
                }
                events(Event::Exit {
                    id: ctr.id.clone(),
                    exec_id: Some(e.to_owned()),
                    exit,
                });
                let running = st.execs.values().any(|p| p.status == Status::Running);
                if st.init_exit_held && !running {
                    st.init_exit_held = false;
                    if let Some(exit) = st.init.exit {
                        events(Event::Exit {
                            id: ctr.id.clone(),
                            exec_id: None,
                            exit,
                        });
                    }
                }
            }
        }
        drop(st);
        ctr.exited.notify_all();
    }

    /// Waits until the process has exited (at once if it has) and returns how. With a CRI
    /// log, its output is in the file by then (see the module).
    pub fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitInfo> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        loop {
            let held = st.init_exit_held;
            let p = proc_of(&mut st, id, exec_id)?;
            // The init's exit is told once its execs' are (the order of the events).
            if let Some(exit) = p.exit {
                if exec_id.is_some() || !held {
                    return Ok(exit);
                }
            }
            st = ctr.exited.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Sends `signal` to the process; `all`: to every process of the container. An exited
    /// process is [`TaskError::NotFound`] ("process already finished").
    pub fn kill(&self, id: &str, exec_id: Option<&str>, signal: i32, all: bool) -> Result<()> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        let p = proc_of(&mut st, id, exec_id)?;
        if p.exit.is_some() || (exec_id.is_some() && p.status == Status::Created) {
            return Err(TaskError::NotFound("process already finished".into()));
        }
        if exec_id.is_none() {
            return self
                .inner
                .runtime
                .kill(id, signal, all)
                .map_err(|e| match e {
                    // Gone, or exited and not reaped yet (reaping is held off while another
                    // thread spawns): finished either way, as runc's "container not running".
                    berth_runtime_core::Error::NotFound { .. }
                    | berth_runtime_core::Error::InvalidState {
                        status: berth_runtime_core::Status::Stopped,
                        ..
                    } => TaskError::NotFound("process already finished".into()),
                    e => e.into(),
                });
        }
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| TaskError::InvalidArgument(format!("invalid signal {signal}")))?;
        match &p.pidfd {
            Some(fd) => fd.send_signal(sig).map_err(|e| match e {
                crate::Error::Sys {
                    source: nix::errno::Errno::ESRCH,
                    ..
                } => TaskError::NotFound("process already finished".into()),
                e => e.into(),
            }),
            None => Err(TaskError::NotFound("process already finished".into())),
        }
    }

    /// Deletes an exited exec, or the container once its init has exited (a created
    /// container is killed first): its state, its rootfs mounts, its stdio. Returns how its
    /// process ended.
    pub fn delete(&self, id: &str, exec_id: Option<&str>) -> Result<ExitInfo> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        if let Some(e) = exec_id {
            let p = proc_of(&mut st, id, Some(e))?;
            if p.status == Status::Running {
                return Err(TaskError::FailedPrecondition(
                    "cannot delete a running process".into(),
                ));
            }
            let exit = p.exit.unwrap_or(ExitInfo {
                pid: 0,
                status: 0,
                at: SystemTime::now(),
            });
            st.execs.remove(e);
            return Ok(exit);
        }
        match st.init.status {
            Status::Running | Status::Paused => {
                return Err(TaskError::FailedPrecondition(
                    "cannot delete a running process".into(),
                ));
            }
            Status::Created => {
                // Never started: killed, and its exit (reaped by the monitor) awaited.
                let _ = self.inner.runtime.kill(id, libc::SIGKILL, true);
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while st.init.exit.is_none() {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(TaskError::FailedPrecondition(format!(
                            "the init of {id} did not die within 10 s of SIGKILL"
                        )));
                    }
                    st = ctr
                        .exited
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            Status::Stopped => {}
        }
        if st.execs.values().any(|p| p.status == Status::Running) {
            return Err(TaskError::FailedPrecondition(
                "processes of the container are still running".into(),
            ));
        }
        let exit = st.init.exit.unwrap_or(ExitInfo {
            pid: st.init.pid,
            status: 0,
            at: SystemTime::now(),
        });
        {
            let _spawning = self.inner.monitor.spawning();
            let r = match st.container.take() {
                Some(c) => self.inner.runtime.delete_container(c, true),
                None => self.inner.runtime.delete(id, true),
            };
            match r {
                Ok(()) | Err(berth_runtime_core::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if st.rootfs_mounted {
            mounts::unmount_all(&ctr.bundle.join("rootfs"))?;
            st.rootfs_mounted = false;
        }
        st.execs.clear();
        // Closes the kept fifo ends and stops the relays.
        st.init.io = ProcessIo::default();
        st.init.terminal = None;
        drop(st);
        self.containers().remove(id);
        (self.inner.events)(Event::Delete {
            id: id.to_owned(),
            exit,
        });
        Ok(exit)
    }

    /// Registers an exec (started by [`Tasks::start`] with its id): opens its stdio now.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: Process,
        terminal: bool,
        stdio: [String; 3],
    ) -> Result<()> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        if st.execs.contains_key(exec_id) {
            return Err(TaskError::AlreadyExists(format!(
                "process {exec_id} of container {id} already exists"
            )));
        }
        if st.init.exit.is_some() {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id} has exited: no process can be added"
            )));
        }
        let mut p = Proc::new(stdio, terminal);
        if !terminal {
            p.io = ProcessIo::open(&p.paths[0], &p.paths[1], &p.paths[2])?;
        }
        p.spec = Some(process);
        st.execs.insert(exec_id.to_owned(), p);
        drop(st);
        (self.inner.events)(Event::ExecAdded {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        });
        Ok(())
    }

    /// The state of the init or an exec.
    pub fn state(&self, id: &str, exec_id: Option<&str>) -> Result<ProcessState> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        let paused = st.paused;
        let p = proc_of(&mut st, id, exec_id)?;
        let status = match p.status {
            Status::Running if paused => Status::Paused,
            s => s,
        };
        Ok(ProcessState {
            id: id.to_owned(),
            bundle: ctr.bundle.clone(),
            pid: p.pid,
            status,
            stdin: p.paths[0].clone(),
            stdout: p.paths[1].clone(),
            stderr: p.paths[2].clone(),
            terminal: p.tty,
            exit: p.exit,
        })
    }

    /// Every process of the container (its cgroup), with the exec id of those that are
    /// execs.
    pub fn pids(&self, id: &str) -> Result<Vec<(i32, Option<String>)>> {
        let ctr = self.get(id)?;
        let pids = self.inner.runtime.ps(id)?;
        let st = ctr.lock();
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec = st
                    .execs
                    .iter()
                    .find(|(_, p)| p.pid == pid && p.status == Status::Running)
                    .map(|(e, _)| e.clone());
                (pid, exec)
            })
            .collect())
    }

    /// Freezes the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let ctr = self.get(id)?;
        self.inner.runtime.pause(id)?;
        ctr.lock().paused = true;
        (self.inner.events)(Event::Paused { id: id.to_owned() });
        Ok(())
    }

    /// Thaws the container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let ctr = self.get(id)?;
        self.inner.runtime.resume(id)?;
        ctr.lock().paused = false;
        (self.inner.events)(Event::Resumed { id: id.to_owned() });
        Ok(())
    }

    /// Reopens the CRI log file(s) of the container's init (its `crilog://` stdout and
    /// stderr, see [`crate::crilog`]): CRI's ReopenContainerLog, after the kubelet renamed
    /// the file to rotate it. A new file is created at the same path; every entry goes whole
    /// to the old file or the new one. A container without a CRI log is
    /// [`TaskError::FailedPrecondition`]; a path that can't be opened again leaves the old
    /// file in use.
    ///
    /// ```no_run
    /// # fn f(tasks: &berth_shim_core::task::Tasks) -> Result<(), Box<dyn std::error::Error>> {
    /// std::fs::rename("/var/log/pods/p/c/0.log", "/var/log/pods/p/c/0.log.1")?;
    /// tasks.reopen_log("c1")?;
    /// # Ok(()) }
    /// ```
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let ctr = self.get(id)?;
        let st = ctr.lock();
        let log = st.init.io.cri_log().ok_or_else(|| {
            TaskError::FailedPrecondition(format!(
                "container {id} has no crilog:// stdout or stderr: no log to reopen"
            ))
        })?;
        log.reopen()?;
        Ok(())
    }

    /// Applies new resources to the container's cgroup.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.get(id)?;
        self.inner.runtime.update(id, resources)?;
        Ok(())
    }

    /// The container's cgroup statistics.
    pub fn stats(&self, id: &str) -> Result<berth_runtime_core::berth_cgroups::Stats> {
        self.get(id)?;
        Ok(self.inner.runtime.stats(id)?)
    }

    /// CloseIO: the process' stdin reaches EOF once the client closed its end.
    pub fn close_stdin(&self, id: &str, exec_id: Option<&str>) -> Result<()> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        let p = proc_of(&mut st, id, exec_id)?;
        p.io.close_stdin();
        if let Some(t) = &p.terminal {
            let _ = nix::unistd::write(&t.control, &[1]);
        }
        Ok(())
    }

    /// Resizes the process' pty.
    pub fn resize_pty(
        &self,
        id: &str,
        exec_id: Option<&str>,
        width: u16,
        height: u16,
    ) -> Result<()> {
        let ctr = self.get(id)?;
        let mut st = ctr.lock();
        let p = proc_of(&mut st, id, exec_id)?;
        let t = p.terminal.as_ref().ok_or_else(|| {
            TaskError::FailedPrecondition(format!("process of {id} has no terminal"))
        })?;
        set_winsize(&t.master, WinSize::new(height, width))?;
        Ok(())
    }
}

/// The runtime's view of a process' stdio.
fn runtime_stdio(io: &ProcessIo) -> Stdio {
    let [i, o, e] = io.container_fds();
    Stdio::default().stdin(i).stdout(o).stderr(e)
}

/// Opens a process' stdio (without a terminal), or binds the console socket (with one).
fn prepare_io(p: &mut Proc, terminal: bool) -> Result<Option<ConsoleSocket>> {
    if terminal {
        return Ok(Some(ConsoleSocket::bind()?));
    }
    p.io = ProcessIo::open(&p.paths[0], &p.paths[1], &p.paths[2])?;
    Ok(None)
}

/// Receives the pty master and starts its relay to and from the stdio fifos.
fn attach_terminal(p: &mut Proc, console: &ConsoleSocket) -> Result<()> {
    let master = console.receive(Duration::from_secs(10))?;
    let (input, output) = p.io.relay_ends(&p.paths[0], &p.paths[1])?;
    let keep = master
        .try_clone()
        .map_err(|e| crate::Error::io("dup pty master", "ptmx", e))?;
    let (control_r, control_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| crate::Error::sys("pipe2", e))?;
    let relay = Relay::new(master, input, output)?;
    std::thread::Builder::new()
        .name("pty".into())
        .stack_size(128 * 1024)
        .spawn(move || relay_loop(relay, control_r))
        .map_err(|e| crate::Error::io("spawn relay thread", "pty", e))?;
    p.terminal = Some(Terminal {
        master: keep,
        control: control_w,
    });
    Ok(())
}

/// Moves the pty's bytes until the process side is gone (every slave closed), then drains.
/// A byte (or EOF) on `control` closes the input.
fn relay_loop(mut relay: Relay, control: OwnedFd) {
    let mut control = Some(control);
    while relay.is_open() {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
        let ctl_slot = control.as_ref().map(|c| {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            0
        });
        let slots = relay.register(&mut fds);
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        let revents: Vec<Option<PollFlags>> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        let ctl = ctl_slot
            .and_then(|i| revents.get(i).copied().flatten())
            .is_some_and(|r| !r.is_empty());
        relay.handle(&revents, slots);
        if ctl {
            relay.close_input();
            control = None;
        }
    }
    relay.drain();
}
