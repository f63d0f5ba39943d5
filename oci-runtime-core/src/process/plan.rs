//! The container process: everything of `process` in config.json, prepared in the parent as a
//! [`ProcessPlan`] and applied by the fragile child right before `execve`.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Process};

use crate::child::init::{InitError, InitStep};
use crate::child::sys::{self, PathBuf4k};
use crate::config::validate::ConfigError;
use crate::process::exe_guard::{self, ExeGuard};

/// Capability sets as 64-bit masks (bit n = capability number n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// A NULL-terminated array of C strings for execve, owning its strings.
pub(crate) struct CStrArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    pub(crate) fn new(items: &[String], field: &str) -> Result<Self, ConfigError> {
        let strings = items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                CString::new(s.as_bytes()).map_err(|_| ConfigError {
                    field: format!("{field}[{i}]"),
                    reason: "contains a NUL byte".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CStrArray {
            _strings: strings,
            ptrs,
        })
    }

    pub(crate) fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// `process` of the config, ready for the fragile child.
pub(crate) struct ProcessPlan {
    pub argv: CStrArray,
    pub envp: CStrArray,
    arg0: CString,
    /// PATH entries of the container env, when args[0] has no '/'.
    search_dirs: Vec<CString>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    umask: Option<libc::mode_t>,
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
    caps: Option<CapSets>,
    last_cap: u32,
    no_new_privs: bool,
    /// False for a config without `process`: the init is made, but never execs.
    runnable: bool,
    oom_score_adj: Option<Vec<u8>>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub preserve_fds: u32,
    /// The CVE-2019-5736 guard: the stub in a sealed memfd the init execs first.
    guard: ExeGuard,
    /// The stub's argv: `[MARKER, <report fd>, <program>, argv..., NULL]`; slots 1 and 2 are
    /// filled in by the child right before the exec (the strings are owned by `argv`).
    guard_argv: Vec<Cell<*const libc::c_char>>,
}

fn cstring(s: &str, field: &str) -> Result<CString, ConfigError> {
    CString::new(s).map_err(|_| ConfigError {
        field: field.into(),
        reason: "contains a NUL byte".into(),
    })
}

/// Capability name ("CAP_KILL") to its number, for the caps this build knows.
fn cap_mask(set: &Option<Capabilities>, field: &str) -> Result<u64, ConfigError> {
    let mut mask = 0u64;
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let c = caps::Capability::from_str(&name).map_err(|_| ConfigError {
            field: field.into(),
            reason: format!("unknown capability {name}"),
        })?;
        mask |= 1u64 << c.index();
    }
    Ok(mask)
}

/// The highest capability number the running kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as libc::c_int)
}

impl ProcessPlan {
    /// Prepares `process`, with `extra_env` appended (e.g. LISTEN_FDS) and `preserve_fds`
    /// descriptors after stdio passed through.
    pub(crate) fn prepare(
        process: &Process,
        extra_env: &[String],
        preserve_fds: u32,
    ) -> Result<Self, crate::Error> {
        let args = process.args().clone().unwrap_or_default();
        let first = args.first().ok_or_else(|| ConfigError {
            field: "process.args".into(),
            reason: "is empty".into(),
        })?;
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(extra_env.iter().cloned());
        let search_dirs = if first.contains('/') {
            Vec::new()
        } else {
            let path = env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| cstring(d, "process.env PATH"))
                .collect::<Result<_, _>>()?
        };
        let user = process.user();
        // (uid_t)-1 tells setresuid/setresgid "leave this id unchanged": the process would
        // keep the runtime's ids (root) instead of the one asked for.
        for (field, id) in [
            ("process.user.uid", user.uid()),
            ("process.user.gid", user.gid()),
        ]
        .into_iter()
        .chain(
            user.additional_gids()
                .iter()
                .flatten()
                .map(|g| ("process.user.additionalGids", *g)),
        ) {
            if id == u32::MAX {
                return Err(ConfigError {
                    field: field.into(),
                    reason: "4294967295 is (uid_t)-1, which the kernel reads as \"unchanged\""
                        .into(),
                }
                .into());
            }
        }
        let mut rlimits = Vec::new();
        for (i, r) in process.rlimits().iter().flatten().enumerate() {
            let name = r.typ().to_string();
            let res = rlimit_resource(&name).ok_or_else(|| ConfigError {
                field: format!("process.rlimits[{i}].type"),
                reason: format!("unknown rlimit {name}"),
            })?;
            rlimits.push((
                res,
                libc::rlimit {
                    rlim_cur: r.soft(),
                    rlim_max: r.hard(),
                },
            ));
        }
        // Absent capabilities are empty sets, not the runtime's own (as runc and crun).
        let caps = match process.capabilities() {
            None => Some(CapSets::default()),
            Some(c) => {
                let mut sets = CapSets {
                    bounding: cap_mask(c.bounding(), "process.capabilities.bounding")?,
                    effective: cap_mask(c.effective(), "process.capabilities.effective")?,
                    permitted: cap_mask(c.permitted(), "process.capabilities.permitted")?,
                    inheritable: cap_mask(c.inheritable(), "process.capabilities.inheritable")?,
                    ambient: cap_mask(c.ambient(), "process.capabilities.ambient")?,
                };
                // The kernel only lets a capability into the ambient set if it is both
                // permitted and inheritable (capabilities(7)); like runc, raise those and
                // leave the rest (the default `spec` config lists some) out.
                sets.ambient &= sets.permitted & sets.inheritable;
                // A capability this kernel does not have can't be granted (capset would
                // fail with EPERM): configs written for newer kernels run, as with runc.
                let known = match last_cap() {
                    n if n >= 63 => u64::MAX,
                    n => (1u64 << (n + 1)) - 1,
                };
                for set in [
                    &mut sets.bounding,
                    &mut sets.effective,
                    &mut sets.permitted,
                    &mut sets.inheritable,
                    &mut sets.ambient,
                ] {
                    *set &= known;
                }
                Some(sets)
            }
        };
        let argv = CStrArray::new(&args, "process.args")?;
        let guard = ExeGuard::new(3 + preserve_fds as RawFd)?;
        let mut guard_argv = Vec::with_capacity(args.len() + 4);
        guard_argv.push(Cell::new(exe_guard::MARKER.as_ptr()));
        guard_argv.push(Cell::new(std::ptr::null()));
        guard_argv.push(Cell::new(std::ptr::null()));
        // argv's pointers, its NULL terminator included.
        guard_argv.extend(argv.ptrs.iter().copied().map(Cell::new));
        Ok(ProcessPlan {
            argv,
            envp: CStrArray::new(&env, "process.env")?,
            arg0: cstring(first, "process.args[0]")?,
            search_dirs,
            cwd: cstring(&process.cwd().to_string_lossy(), "process.cwd")?,
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().map(|m| m as libc::mode_t),
            rlimits,
            caps,
            last_cap: last_cap(),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            runnable: true,
            oom_score_adj: process.oom_score_adj().map(|v| v.to_string().into_bytes()),
            terminal: process.terminal().unwrap_or(false),
            console_size: process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16)),
            preserve_fds,
            guard,
            guard_argv,
        })
    }

    /// The stand-in for an absent `process`, which the spec allows at create (`start` then
    /// MUST fail): root, no capabilities, no rlimits, no terminal, `/` as cwd, and no program,
    /// so the init waits at the start barrier like any other and can never exec.
    pub(crate) fn absent() -> Process {
        let mut p = Process::default();
        p.set_args(Some(vec!["/".into()]));
        p.set_env(Some(Vec::new()));
        p.set_capabilities(None);
        p.set_rlimits(None);
        p.set_terminal(Some(false));
        p.set_no_new_privileges(Some(true));
        p
    }

    /// Marks the plan of [`ProcessPlan::absent`]'s process as one that must never exec.
    pub(crate) fn never_exec(&mut self) {
        self.runnable = false;
    }

    /// Whether the fragile child calls setgroups(2) with `process.user.additionalGids`, as runc
    /// decides: never for a runtime that is not root (rootless: its user namespace denies
    /// setgroups, so additionalGids are an error then), nor in a user namespace whose
    /// `setgroups` file (`/proc/<pid>/setgroups` of a process in it, when known) says "deny".
    /// Parent side.
    pub(crate) fn setgroups_allowed(
        &self,
        setgroups_file: Option<&std::path::Path>,
    ) -> Result<bool, ConfigError> {
        if !nix::unistd::geteuid().is_root() {
            if !self.groups.is_empty() {
                return Err(ConfigError {
                    field: "process.user.additionalGids".into(),
                    reason: "cannot be set in a rootless container (setgroups(2) is denied \
                             in the user namespace of a non-root runtime)"
                        .into(),
                });
            }
            return Ok(false);
        }
        Ok(setgroups_file
            .and_then(|f| std::fs::read_to_string(f).ok())
            .is_none_or(|s| s.trim() != "deny"))
    }

    /// The exe-guard memfd (-1 where there is no stub): the child must keep it open (it is
    /// close-on-exec) until [`ProcessPlan::exec`].
    pub(crate) fn guard_fd(&self) -> RawFd {
        self.guard.raw()
    }

    /// # Fragile child
    /// Writes oom_score_adj through the host's /proc (call before pivot_root).
    pub(crate) fn apply_oom_score_adj(&self) -> Result<(), InitError> {
        let Some(v) = &self.oom_score_adj else {
            return Ok(());
        };
        let err = |errno| InitError::new(InitStep::OomScoreAdj, 0, errno);
        let fd = sys::open(
            c"/proc/self/oom_score_adj",
            libc::O_WRONLY | libc::O_CLOEXEC,
            0,
        )
        .map_err(err)?;
        let r = sys::write_all(fd, v);
        sys::close(fd);
        r.map_err(err)
    }

    /// # Fragile child
    /// rlimits, cwd, no_new_privs, groups/gid/uid, capabilities and umask, in the order the
    /// kernel needs: everything needing privilege before the uid change, the capability sets
    /// after it (PR_SET_KEEPCAPS keeps the permitted set across setresuid).
    pub(crate) fn apply_credentials(&self, setgroups_allowed: bool) -> Result<(), InitError> {
        for (i, (res, lim)) in self.rlimits.iter().enumerate() {
            // SAFETY: lim is a valid rlimit struct.
            sys::check(unsafe { libc::setrlimit(*res as _, lim) })
                .map_err(|e| InitError::new(InitStep::Rlimit, i as u32, e))?;
        }
        // SAFETY: cwd is a valid C string.
        sys::check(unsafe { libc::chdir(self.cwd.as_ptr()) })
            .map_err(|e| InitError::new(InitStep::Chdir, 0, e))?;
        if let Some(caps) = &self.caps {
            // SAFETY: plain prctl with integer arguments.
            sys::check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
                .map_err(|e| InitError::new(InitStep::KeepCaps, 0, e))?;
            for cap in 0..=self.last_cap.min(63) {
                if caps.bounding & (1u64 << cap) == 0 {
                    // SAFETY: plain prctl with integer arguments.
                    let r = unsafe {
                        libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
                    };
                    // EINVAL: the kernel doesn't know this capability; nothing to drop.
                    if r < 0 && sys::errno() != libc::EINVAL {
                        return Err(InitError::new(InitStep::BoundingSet, cap, sys::errno()));
                    }
                }
            }
        }
        self.give_stdio_to_user()?;
        if setgroups_allowed {
            // SAFETY: groups points to groups.len() valid gid_t values. The raw syscall, not
            // glibc's wrapper: glibc broadcasts id changes to the threads it believes exist,
            // which in a clone of a multi-threaded parent are not there (it would hang).
            sys::check(unsafe {
                libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr())
                    as libc::c_int
            })
            .map_err(|e| InitError::new(InitStep::Setgroups, 0, e))?;
        }
        sys::set_ids(self.uid, self.gid).map_err(|(is_uid, e)| {
            if is_uid {
                InitError::new(InitStep::Setuid, self.uid, e)
            } else {
                InitError::new(InitStep::Setgid, self.gid, e)
            }
        })?;
        if let Some(caps) = &self.caps {
            // SAFETY: plain prctl with integer arguments.
            sys::check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })
                .map_err(|e| InitError::new(InitStep::KeepCaps, 0, e))?;
            capset(caps).map_err(|e| InitError::new(InitStep::Capset, 0, e))?;
            for cap in 0..=self.last_cap.min(63) {
                if caps.ambient & (1u64 << cap) != 0 {
                    // SAFETY: plain prctl with integer arguments.
                    let r = unsafe {
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                            cap as libc::c_ulong,
                            0,
                            0,
                        )
                    };
                    sys::check(r).map_err(|e| InitError::new(InitStep::Ambient, cap, e))?;
                }
            }
        }
        if self.no_new_privs {
            // SAFETY: plain prctl with integer arguments.
            sys::check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
                .map_err(|e| InitError::new(InitStep::NoNewPrivs, 0, e))?;
        }
        if let Some(m) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(m) };
        }
        Ok(())
    }

    /// # Fragile child
    /// Finds the program to exec as execvp would, with the container's PATH, into `out`.
    /// Call after pivot_root and chdir. Fails with ENOENT/EACCES like a shell would.
    pub(crate) fn resolve_program(&self, out: &mut PathBuf4k) -> Result<(), InitError> {
        if !self.runnable {
            return Ok(());
        }
        let err = |e| InitError::new(InitStep::FindProgram, 0, e);
        let arg0 = self.arg0.to_bytes();
        if self.search_dirs.is_empty() {
            out.clear();
            out.push(arg0).map_err(err)?;
            return executable(out.as_ptr()).map_err(err);
        }
        let mut last = libc::ENOENT;
        for dir in &self.search_dirs {
            out.clear();
            out.push(dir.to_bytes()).map_err(err)?;
            out.push(b"/").map_err(err)?;
            out.push(arg0).map_err(err)?;
            match executable(out.as_ptr()) {
                Ok(()) => return Ok(()),
                Err(libc::ENOENT) | Err(libc::ENOTDIR) => {}
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    /// # Fragile child
    /// Makes process.user.uid the owner of stdin, stdout and stderr (the console's pty, which
    /// the init opened as root), as runc does, so that a non-root process can use its
    /// terminal: each fd not already that uid's and not `/dev/null` (a character device 1:3)
    /// is `fchown`ed, its group left alone. `EPERM` (an owner not mapped in the user
    /// namespace), `EROFS` and `EINVAL` leave the fd as it is.
    fn give_stdio_to_user(&self) -> Result<(), InitError> {
        for fd in 0..3 {
            // SAFETY: an all-zero stat is a valid value of this plain C struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: st is a valid, writable stat buffer; a closed fd gives EBADF.
            if unsafe { libc::fstat(fd, &mut st) } != 0 {
                if sys::errno() == libc::EBADF {
                    continue;
                }
                return Err(InitError::new(
                    InitStep::StdioOwner,
                    fd as u32,
                    sys::errno(),
                ));
            }
            let dev_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR
                && libc::major(st.st_rdev) == 1
                && libc::minor(st.st_rdev) == 3;
            if st.st_uid == self.uid || dev_null {
                continue;
            }
            // SAFETY: fchown only reads its integer arguments; gid -1 leaves the group.
            if unsafe { libc::fchown(fd, self.uid, libc::gid_t::MAX) } != 0
                && !matches!(sys::errno(), libc::EPERM | libc::EROFS | libc::EINVAL)
            {
                return Err(InitError::new(
                    InitStep::StdioOwner,
                    fd as u32,
                    sys::errno(),
                ));
            }
        }
        Ok(())
    }

    /// # Fragile child
    /// Closes every fd but stdio, the preserved ones, the exe guard's memfd and `ours` (at
    /// most 7): the clone copied every fd of the (possibly multi-threaded) parent.
    pub(crate) fn close_inherited_fds(&self, ours: &[RawFd]) -> Result<(), InitError> {
        // -1 (below 3) is ignored by close_fds_except.
        let mut keep = [self.guard_fd(), -1, -1, -1, -1, -1, -1, -1];
        for (slot, &fd) in keep.iter_mut().skip(1).zip(ours) {
            *slot = fd;
        }
        sys::close_fds_except(3 + self.preserve_fds as RawFd, &keep)
            .map_err(|e| InitError::new(InitStep::SealFds, 1, e))
    }

    /// # Fragile child
    /// Marks every fd from 3 + preserve_fds up close-on-exec, and clears close-on-exec on the
    /// preserved ones, so that exactly stdio and the preserved fds reach the container.
    /// `ours` (the sync socket) stays close-on-exec even if it landed in the preserved
    /// range because the caller asked to preserve fds it did not have open. Runs before any
    /// seccomp filter goes in: fds opened after it must be close-on-exec themselves.
    pub(crate) fn seal_fds(&self, ours: RawFd) -> Result<(), InitError> {
        let first_closed = 3 + self.preserve_fds;
        sys::cloexec_from(first_closed as RawFd)
            .map_err(|e| InitError::new(InitStep::SealFds, 0, e))?;
        // (The exe guard's memfd is never in this range: ExeGuard::new places it at
        // 3 + preserve_fds or above.)
        for fd in (3..first_closed as RawFd).filter(|fd| *fd != ours) {
            // SAFETY: fcntl on an fd number; EBADF (not open) is ignored.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        Ok(())
    }

    /// # Fragile child
    /// Replaces the process image: through the exe-guard stub (`execveat` of the sealed memfd,
    /// which then `execve`s `program`, see [`crate::process::exe_guard`]), or with a plain `execve`
    /// where there is no stub. Returns only on failure.
    ///
    /// `report` is where the caller reports failures (exec.fifo for the init, the sync socket
    /// for `exec`; close-on-exec, -1 for none): the stub gets it open, as `argv[1]`, and
    /// writes the failure record of its own `execve` there (`InitStep::Exec`, index 2), or
    /// marks it close-on-exec and lets the successful `execve` close it. It is close-on-exec
    /// again when this returns.
    pub(crate) fn exec(&self, program: &PathBuf4k, report: RawFd) -> InitError {
        if !self.runnable {
            // Someone opened exec.fifo of a container without a process (`start` refuses
            // one without opening it): nothing to run.
            return InitError::new(InitStep::Exec, 0, libc::ENOENT);
        }
        let guard = self.guard.raw();
        if let (true, Some(fd_slot), Some(slot)) =
            (guard >= 0, self.guard_argv.get(1), self.guard_argv.get(2))
        {
            // The report fd in decimal, NUL-terminated; empty (no report) when there is none.
            let mut fd_arg = [0u8; 21];
            if report >= 0 {
                let mut digits = [0u8; 20];
                let d = sys::fmt_u64(report as u64, &mut digits);
                if let Some(dst) = fd_arg.get_mut(..d.len()) {
                    dst.copy_from_slice(d);
                }
                // SAFETY: fcntl on an fd number with integer arguments; it only changes the
                // flags of our report fd.
                unsafe { libc::fcntl(report, libc::F_SETFD, 0) };
            }
            fd_slot.set(fd_arg.as_ptr().cast());
            slot.set(program.as_ptr());
            // SAFETY: guard is our open memfd; the path is an empty C string (AT_EMPTY_PATH);
            // guard_argv is a NULL-terminated array of pointers to C strings owned by self
            // (Cell has the layout of a raw pointer), `fd_arg` and `program`, which
            // outlive the call; envp likewise.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    guard,
                    c"".as_ptr(),
                    self.guard_argv.as_ptr().cast::<*const libc::c_char>(),
                    self.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            let first = sys::errno();
            // A seccomp profile may allow execve but not execveat (runc's init only needs
            // execve): the same memfd through the container's /proc, as plain execve.
            let mut path = PathBuf4k::new();
            let mut digits = [0u8; 20];
            if path.push(b"/proc/self/fd/").is_ok()
                && path.push(sys::fmt_u64(guard as u64, &mut digits)).is_ok()
            {
                // SAFETY: as above; path is NUL-terminated.
                unsafe {
                    libc::execve(
                        path.as_ptr(),
                        self.guard_argv.as_ptr().cast::<*const libc::c_char>(),
                        self.envp.as_ptr(),
                    )
                };
            }
            if report >= 0 {
                // SAFETY: as above.
                unsafe { libc::fcntl(report, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            return InitError::new(InitStep::Exec, 1, first);
        }
        // SAFETY: program is NUL-terminated; argv/envp are NULL-terminated arrays of valid C
        // strings owned by self.
        unsafe { libc::execve(program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        InitError::new(InitStep::Exec, 0, sys::errno())
    }

    pub(crate) fn program_name(&self) -> &CStr {
        &self.arg0
    }

    /// process.noNewPrivileges.
    pub(crate) fn no_new_privs(&self) -> bool {
        self.no_new_privs
    }
}

fn executable(path: *const libc::c_char) -> Result<(), i32> {
    // SAFETY: path is NUL-terminated; st is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    sys::check(unsafe { libc::stat(path, &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(libc::EACCES);
    }
    // SAFETY: path is NUL-terminated.
    sys::check(unsafe { libc::access(path, libc::X_OK) })
}

fn capset(c: &CapSets) -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
    let data = [0, 1].map(|i| Data {
        effective: word(c.effective, i),
        permitted: word(c.permitted, i),
        inheritable: word(c.inheritable, i),
    });
    // SAFETY: hdr and data are valid for the v3 layout (one header, two data structs).
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    if r < 0 { Err(sys::errno()) } else { Ok(()) }
}
