//! `exec`: one more process in a created or running container ([`Runtime::exec`]), as
//! `runc exec` starts one.
//!
//! The parent (the caller of `exec`, possibly multi-threaded) prepares everything: the
//! [`ProcessPlan`], a pidfd of the container's init (checked against the recorded start time,
//! so a recycled pid is never entered), the set of the init's namespaces that differ from
//! ours, the cgroup directories to join and the console socket. Then it clones a child that
//! only runs fragile-child code (docs/DESIGN.md):
//!
//! 1. becomes non-dumpable (container processes can't open `/proc/<pid>/exe|fd|cwd` of the
//!    half set-up process nor ptrace it; `execve` resets the flag), waits for `Go` (the parent
//!    moved it into the container's v1 cgroups; cgroup2 is entered at the clone, with
//!    `clone3(CLONE_INTO_CGROUP)`), closes every inherited fd but stdio, the preserved ones and
//!    its own (no host fd reaches the container);
//! 2. enters all the differing namespaces at once, `setns(pidfd, flags)` (Linux 5.8): the
//!    user namespace first, and after the mount namespace its root and cwd are the
//!    container's;
//! 3. if the pid or time namespace was joined (they apply to children only), forks the real
//!    process with `CLONE_PARENT`, so that it is the caller's child, and exits;
//! 4. the process: console, oom_score_adj, scheduler/ioPriority/personality and the LSM
//!    label, rlimits, credentials and capabilities, the container's seccomp filter, finds the
//!    program, marks every other fd close-on-exec and `execve`s.
//!
//! The child's side is `child/exec.rs`; they talk through `child/sync.rs` (peer
//! [`Peer::Exec`]): `Go` in, then `Pid` (after a fork), `Listener`, `Ready` or `Failed`
//! out. EOF after `Ready` is the exec: only then is the process reported started.

use std::cell::Cell;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use berth_cgroups::{CgroupManager, CgroupPath, Layout};
use berth_namespaces::NamespaceKind;
use oci_spec::runtime::Process;

use crate::child::exec::{ExecContext, exec_main};
use crate::child::init::{self, ChildFailure};
use crate::child::sync::{Channel, Peer, ToChild, ToParent};
use crate::child::sys::{self};
use crate::config::validate::ConfigError;
use crate::error::Error;
use crate::lifecycle::{Cleanup, Runtime, connect_console, kill_and_reap};
use crate::process::ProcessPlan;
use crate::process::home;
use crate::process::security::SecurityPlan;
use crate::seccomp::{self, SeccompPlan};
use crate::state::{self, Status};

/// How to start a process in a container (the flags of `runc exec` that are not about the
/// process itself).
///
/// ```
/// let opts = berth_runtime_core::ExecOptions::default()
///     .cgroup(Some("sub".to_string()))
///     .ignore_paused(true);
/// assert!(opts.ignore_paused);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecOptions {
    /// Unix socket to which the pty master is sent when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Where to write the process' host pid (atomically: temp file + rename).
    pub pid_file: Option<PathBuf>,
    /// Pass this many fds after stdio (3, 4, ...) into the container.
    pub preserve_fds: u32,
    /// runc's `--cgroup`: run in an existing sub-cgroup of the container's, given as `path`
    /// (every hierarchy) or `ctrl[,ctrl]:path` (the v1 hierarchies of those controllers;
    /// `cgroup2` names the unified one). Several entries (one per `--cgroup` flag) are
    /// separated by newlines; an entry with controllers wins over a plain one.
    pub cgroup: Option<String>,
    /// Allow exec in a paused container (the process is frozen with it until `resume`, and
    /// so is this call).
    pub ignore_paused: bool,
    /// The process' stdin, stdout and stderr, where they are not the caller's own 0, 1, 2.
    pub stdio: crate::Stdio,
}

impl ExecOptions {
    /// The socket the pty master goes to (`--console-socket`).
    pub fn console_socket(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.console_socket = path.into();
        self
    }

    /// Where to write the process' pid (`--pid-file`).
    pub fn pid_file(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.pid_file = path.into();
        self
    }

    /// Pass `n` fds after stdio into the container (`--preserve-fds`).
    pub fn preserve_fds(mut self, n: u32) -> Self {
        self.preserve_fds = n;
        self
    }

    /// runc's `--cgroup` entries, newline-separated (see the field).
    pub fn cgroup(mut self, entries: Option<String>) -> Self {
        self.cgroup = entries;
        self
    }

    /// Allow exec in a paused container (`--ignore-paused`).
    pub fn ignore_paused(mut self, on: bool) -> Self {
        self.ignore_paused = on;
        self
    }

    /// The process' own stdin, stdout and stderr (see [`crate::Stdio`]).
    pub fn stdio(mut self, stdio: crate::Stdio) -> Self {
        self.stdio = stdio;
        self
    }
}

/// A process started by [`Runtime::exec`]: our child, so we can wait for it.
#[derive(Debug)]
pub struct ExecProcess {
    id: String,
    pid: i32,
}

impl ExecProcess {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to exit and returns its exit code as a shell reports it
    /// (128 + N when killed by signal N). Only the process that called `exec` can wait.
    pub fn wait(&self) -> Result<i32, Error> {
        crate::lifecycle::wait_exit(self.pid)
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, Error> {
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::sys(format!("pidfd_open({pid})"), nix::Error::last()));
    }
    // SAFETY: a new fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The `CLONE_NEW*` flags of the namespaces of `pid` that differ from the ones our children
/// get, user first (the order does not matter to a pidfd `setns`, which enters them at once).
fn differing_namespaces(pid: i32) -> Result<libc::c_int, Error> {
    let mut flags = 0;
    for k in NamespaceKind::ALL {
        let theirs_path = berth_namespaces::namespace_path(pid, k);
        let theirs = match fs::read_link(&theirs_path) {
            Ok(l) => l,
            // A namespace type this kernel lacks.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read namespace", theirs_path, e)),
        };
        let ours_name = match k {
            NamespaceKind::Pid => "pid_for_children",
            NamespaceKind::Time => "time_for_children",
            k => k.proc_name(),
        };
        let ours_path = PathBuf::from(format!("/proc/self/ns/{ours_name}"));
        let ours =
            fs::read_link(&ours_path).map_err(|e| Error::io("read namespace", &ours_path, e))?;
        if ours != theirs {
            flags |= k.clone_flag();
        }
    }
    Ok(flags)
}

/// Where the process goes: the cgroup2 directory (opened, for clone3) and every directory
/// whose `cgroup.procs` gets its pid from the parent.
struct CgroupTargets {
    v2: Option<(PathBuf, OwnedFd)>,
    v1: Vec<PathBuf>,
}

/// Parses `--cgroup` entries: `(controllers, sub path)`, no controllers for a plain path.
fn parse_cgroup_option(opt: &str) -> Result<Vec<(Vec<String>, PathBuf)>, Error> {
    let bad = |entry: &str, reason: &str| {
        Error::Config(ConfigError {
            field: format!("--cgroup {entry:?}"),
            reason: reason.into(),
        })
    };
    let mut out: Vec<(Vec<String>, PathBuf)> = Vec::new();
    for entry in opt.lines().map(str::trim).filter(|e| !e.is_empty()) {
        let (ctrls, path) = match entry.split_once(':') {
            Some((c, p)) => (
                c.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                p,
            ),
            None => (Vec::new(), entry),
        };
        let path = PathBuf::from(path);
        if path.components().any(|c| matches!(c, Component::ParentDir))
            || path.as_os_str().is_empty()
        {
            return Err(bad(
                entry,
                "must name a sub-cgroup of the container's cgroup (no \"..\")",
            ));
        }
        if ctrls.is_empty() && out.iter().any(|(c, _)| c.is_empty()) {
            return Err(bad(entry, "a second path for every controller"));
        }
        out.push((ctrls, path));
    }
    Ok(out)
}

fn cgroup_targets(cgroup: &CgroupPath, opt: Option<&str>) -> Result<CgroupTargets, Error> {
    let layout = Layout::detect()?;
    let cg = CgroupManager::open(&layout, cgroup)?;
    let subs = parse_cgroup_option(opt.unwrap_or(""))?;
    for (ctrls, _) in &subs {
        for c in ctrls {
            if !cg
                .paths()
                .iter()
                .any(|(names, _)| names.split(',').any(|n| n == c))
            {
                return Err(Error::Config(ConfigError {
                    field: format!("--cgroup {c}:"),
                    reason: format!("no cgroup hierarchy of this host has the controller {c:?}"),
                }));
            }
        }
    }
    let mut targets = CgroupTargets {
        v2: None,
        v1: Vec::new(),
    };
    for (names, dir) in cg.paths() {
        let sub = subs
            .iter()
            .find(|(ctrls, _)| ctrls.iter().any(|c| names.split(',').any(|n| n == c)))
            .or_else(|| subs.iter().find(|(ctrls, _)| ctrls.is_empty()))
            .map(|(_, p)| p.strip_prefix("/").unwrap_or(p));
        let dir = match sub {
            Some(s) => dir.join(s),
            None => dir.to_path_buf(),
        };
        if !dir.is_dir() {
            return Err(Error::io(
                "join sub-cgroup (--cgroup)",
                dir,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        if names == "cgroup2" {
            let fd = fs::File::open(&dir)
                .map_err(|e| Error::io("open cgroup", &dir, e))?
                .into();
            targets.v2 = Some((dir, fd));
        } else {
            targets.v1.push(dir);
        }
    }
    Ok(targets)
}

fn join_cgroup(dir: &Path, pid: i32) -> Result<(), Error> {
    let procs = dir.join("cgroup.procs");
    fs::write(&procs, pid.to_string()).map_err(|e| Error::io("join cgroup", &procs, e))
}

/// Turns a failure record of the exec child into an error naming the container.
fn describe(id: &str, f: ChildFailure, process: &ProcessPlan) -> Error {
    match f {
        ChildFailure::Init(e) => match init::describe_init(e, Some(process)) {
            Error::Init { what, source } => Error::Exec {
                id: id.to_owned(),
                what,
                source,
            },
            other => other,
        },
        other => Error::Protocol(format!("exec child failed: {other:?}")),
    }
}

impl Runtime {
    /// Starts `process` in the container `id` (created, running, or with
    /// [`ExecOptions::ignore_paused`] paused): in all the namespaces of its init, in its
    /// cgroup, with the process' own user, capabilities, rlimits, cwd, env and console.
    /// Returns once the process has exec'd; the process is our child ([`ExecProcess::wait`]).
    ///
    /// `process` is used as given: build it from the container's config.json process (what
    /// `runc exec` does without `--process`) if the container's defaults are wanted.
    ///
    /// ```no_run
    /// use berth_runtime_core::{ExecOptions, Runtime};
    /// use berth_runtime_core::oci_spec::runtime::Process;
    ///
    /// let rt = Runtime::new("/run/berth");
    /// let mut p = Process::default();
    /// p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), "exit 7".into()]));
    /// let proc = rt.exec("web", &p, &ExecOptions::default())?;
    /// assert_eq!(proc.wait()?, 7);
    /// # Ok::<(), berth_runtime_core::Error>(())
    /// ```
    pub fn exec(
        &self,
        id: &str,
        process: &Process,
        opts: &ExecOptions,
    ) -> Result<ExecProcess, Error> {
        crate::config::kernel::check_exec()?;
        let (dir, record) = self.open_record(id, "exec in")?;
        let refuse = |status| Error::InvalidState {
            id: id.to_owned(),
            status,
            op: "exec in",
        };
        // The init, by pidfd: once opened, a recycled pid can't redirect us. Checked after
        // the open against the recorded start time (live_status: a zombie or another
        // process with that pid is Stopped), so that it names the container's init.
        let pidfd = pidfd_open(record.pid).map_err(|_| refuse(Status::Stopped))?;
        match state::live_status(&dir.path, &record) {
            Status::Created | Status::Running => {}
            Status::Paused if opts.ignore_paused => {}
            status => return Err(refuse(status)),
        }
        if !process.cwd().is_absolute() {
            return Err(Error::Config(ConfigError {
                field: "process.cwd".into(),
                reason: format!("{} is not an absolute path", process.cwd().display()),
            }));
        }
        // The container's config as created (saved in the state dir; the bundle's for a
        // container of an older berth): its seccomp profile and personality apply to the
        // exec'd process too, as with runc.
        let spec = dir.config(&record)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let mut warnings = Vec::new();
        let seccomp = linux
            .seccomp()
            .as_ref()
            .map(|s| SeccompPlan::prepare(s, &mut warnings))
            .transpose()
            .map_err(Error::Config)?;
        let security = SecurityPlan::prepare(process, &linux).map_err(Error::Config)?;
        let mut process = process.clone();
        process.set_env(Some(home::with_home(
            process.env().clone().unwrap_or_default(),
            Path::new(&record.rootfs),
            Path::new(&record.bundle),
            spec.mounts().as_deref().unwrap_or_default(),
            process.user().uid(),
        )));
        let process = &process;

        // From here on the pidfd names the init: release the container's lock, so that
        // `resume` can thaw a paused container the process waits in (--ignore-paused), and a
        // concurrent `delete` only makes the setns fail.
        let state_path = dir.path.clone();
        drop(dir);
        let ns_flags = differing_namespaces(record.pid)?;
        let fork = ns_flags & (libc::CLONE_NEWPID | libc::CLONE_NEWTIME) != 0;
        // The init shares our mount namespace (its config has none of its own): its root is
        // a chroot that setns can't give us. Opened after the pidfd and checked against it
        // below, so it is the init's.
        let root = if ns_flags & libc::CLONE_NEWNS == 0 {
            let path = format!("/proc/{}/root", record.pid);
            let fd = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::io("open", Path::new(&path), e))?;
            Some(OwnedFd::from(fd))
        } else {
            None
        };
        if !record.pid_alive() {
            return Err(refuse(Status::Stopped));
        }
        let pplan = ProcessPlan::prepare(process, &[], opts.preserve_fds)?;
        // In a user namespace whose setgroups is "deny", setgroups(2) always fails.
        let setgroups_allowed = pplan
            .setgroups_allowed(Some(Path::new(&format!("/proc/{}/setgroups", record.pid))))
            .map_err(Error::Config)?;
        let console = connect_console(pplan.terminal, opts.console_socket.as_deref())?;
        let targets = match record.cgroup_path() {
            Some(cg) => Some(cgroup_targets(&cg, opts.cgroup.as_deref())?),
            None if opts.cgroup.is_some() => return Err(Error::NoCgroup { id: id.to_owned() }),
            None => None,
        };

        let (parent_sock, child_sock) =
            crate::child::sync::socket_pair().map_err(|e| Error::sys("socketpair", e))?;
        let stdio = opts.stdio.dup_above(3 + opts.preserve_fds as RawFd)?;
        let ctx = ExecContext {
            stdio: crate::lifecycle::raw_stdio(&stdio),
            process: &pplan,
            seccomp: seccomp.as_ref(),
            security: &security,
            sock: child_sock.as_raw_fd(),
            parent_sock: parent_sock.as_raw_fd(),
            pidfd: pidfd.as_raw_fd(),
            ns_flags,
            fork,
            console_socket: console.as_ref().map_or(-1, |c| c.as_raw_fd()),
            root: root.as_ref().map_or(-1, |r| r.as_raw_fd()),
            setgroups_allowed,
            cgroup_sync: targets.is_some(),
        };
        let into = targets
            .as_ref()
            .and_then(|t| t.v2.as_ref())
            .map(|(_, fd)| fd.as_raw_fd());
        // SAFETY: the child runs only exec_main, which follows the fragile-child rules.
        let cloned = unsafe { sys::clone_maybe_into_cgroup(0, into) };
        let (child, in_cgroup2) =
            cloned.map_err(|e| Error::sys("clone", nix::Error::from_raw(e)))?;
        if child == 0 {
            exec_main(&ctx);
        }
        drop(child_sock);
        drop(console);
        drop(pidfd);
        // Whom to kill if anything below fails: the child, then (after a fork) the process.
        let guard_pid = Cell::new(child);
        let mut kill_guard = Cleanup(Some(|| kill_and_reap(guard_pid.get())));

        if let Some(t) = &targets {
            for d in &t.v1 {
                join_cgroup(d, child)?;
            }
            if let (Some((d, _)), false) = (&t.v2, in_cgroup2) {
                join_cgroup(d, child)?;
            }
        }
        let mut sync = Channel::new(parent_sock, Peer::Exec { fork });
        if ctx.cgroup_sync {
            sync.send(ToChild::Go)
                .map_err(|e| Error::io("sync with exec child", &state_path, e))?;
        }
        let mut pid = if fork { 0 } else { child };
        // Read to EOF: every writer (the intermediate, the process) has then exited or exec'd.
        // The process' `Ready` or failure may come before the intermediate's `Pid`.
        let mut failure = None;
        // The seccomp notify listener, until the process' pid is known.
        let mut listener_fd: Option<OwnedFd> = None;
        loop {
            let Some((msg, passed_fd)) = sync.recv().map_err(Error::Protocol)? else {
                break;
            };
            match msg {
                ToParent::Pid(p) => {
                    pid = p;
                    // The intermediate exits right after; the process is our child too.
                    let mut st = 0;
                    // SAFETY: reaping our own child.
                    unsafe { libc::waitpid(child, &mut st, libc::__WALL) };
                    guard_pid.set(pid);
                }
                ToParent::Ready => {}
                ToParent::Listener if passed_fd.is_some() && seccomp.is_some() => {
                    listener_fd = passed_fd
                }
                ToParent::Failed(f) => {
                    failure.get_or_insert_with(|| describe(id, f, &pplan));
                }
                m => {
                    return Err(Error::Protocol(format!(
                        "unexpected message {m:?} from exec child"
                    )));
                }
            }
            // The agent at listenerPath gets the listener with the container's state and
            // the exec'd process' pid (the process may wait on it: don't hold it back).
            if let Some(sc) = &seccomp
                && pid > 0
                && let Some(fd) = listener_fd.take()
            {
                let st = crate::lifecycle::state_value(&record, Status::Running);
                seccomp::send_to_listener(sc, &st, pid, fd.as_raw_fd())?;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !sync.complete() || pid <= 0 {
            // exit_reason reaps it: the guard must not signal that pid again.
            return Err(Error::Protocol(crate::lifecycle::exit_reason(
                guard_pid.replace(0),
                "the exec'd process",
            )));
        }
        if let Some(p) = &opts.pid_file {
            crate::lifecycle::write_pid_file(p, pid)?;
        }
        kill_guard.disarm();
        Ok(ExecProcess {
            id: id.to_owned(),
            pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::init::{InitError, InitStep};

    #[test]
    fn exec_failures_round_trip_and_name_the_step() {
        let mut p = Process::default();
        p.set_args(Some(vec!["true".into()]));
        let plan = ProcessPlan::prepare(&p, &[], 0).unwrap();
        for (step, index, errno, what) in [
            (
                InitStep::Dumpable,
                0,
                libc::EPERM,
                "prctl(PR_SET_DUMPABLE, 0)",
            ),
            (
                InitStep::Setns,
                0,
                libc::EINVAL,
                "setns(pidfd of the container init) into its namespaces (Linux 5.8+)",
            ),
            (
                InitStep::Setns,
                0,
                libc::EPERM,
                "setns(pidfd of the container init) into its namespaces",
            ),
            (
                InitStep::Clone,
                1,
                libc::EAGAIN,
                "fork into the container's pid namespace",
            ),
        ] {
            let f = ChildFailure::from(InitError::new(step, index, errno));
            let back = ChildFailure::decode(&f.encode());
            assert!(
                matches!(back, Some(ChildFailure::Init(e)) if e == InitError::new(step, index, errno)),
                "{step:?}: {back:?}"
            );
            match describe("c1", f, &plan) {
                Error::Exec {
                    id,
                    what: w,
                    source,
                } => {
                    assert_eq!((id.as_str(), w.as_str()), ("c1", what));
                    assert_eq!(source, nix::Error::from_raw(errno));
                }
                other => panic!("{step:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn cgroup_option_entries() {
        let e = parse_cgroup_option("sub\ncpu,memory:/other\npids:p").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], (vec![], PathBuf::from("sub")));
        assert_eq!(
            e[1],
            (
                vec!["cpu".to_string(), "memory".to_string()],
                PathBuf::from("/other")
            )
        );
        for bad in ["../up", "cpu:a/../../b", "a\nb", "cpu:"] {
            let err = parse_cgroup_option(bad).unwrap_err();
            assert!(err.to_string().contains("--cgroup"), "{bad}: {err}");
        }
    }
}
