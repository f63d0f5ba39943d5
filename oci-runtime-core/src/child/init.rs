//! The container init: what the cloned child does between `clone` and `execve`.
//!
//! Everything here is fragile-child code (docs/DESIGN.md): it runs in a copy of one thread of a
//! possibly multi-threaded parent, so it only reads the plans the parent prepared, makes raw
//! syscalls and uses stack buffers. It never allocates, locks, unwinds or touches Rust's stdio.
//!
//! It talks to the parent through the sync protocol of [`crate::child::sync`]; after `Ready`,
//! errors go to exec.fifo instead, where `start` reads them (or, started by `run` without
//! that barrier, on the sync socket still).

use std::ffi::CStr;
use std::os::fd::RawFd;

use berth_namespaces::NamespacePlan;
use berth_rootfs::RootfsPlan;

use crate::child::sync::{self, ToChild, ToParent};
use crate::child::sys::{self, PathBuf4k};
use crate::process::ProcessPlan;
use crate::process::hooks::ChildHook;
use crate::process::security::SecurityPlan;
use crate::seccomp::SeccompPlan;

/// What the init was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum InitStep {
    Sync = 1,
    Clone,
    BecomeRoot,
    Keyring,
    OomScoreAdj,
    Rlimit,
    Chdir,
    KeepCaps,
    BoundingSet,
    Setgroups,
    Setgid,
    Setuid,
    Capset,
    Ambient,
    NoNewPrivs,
    FindProgram,
    SealFds,
    Exec,
    Console,
    ConsoleSocket,
    OpenFifo,
    CreateContainerHook,
    StartContainerHook,
    Chroot,
    SignalMask,
    CgroupNs,
    Personality,
    IoPriority,
    Scheduler,
    ExecLabel,
    Seccomp,
    /// `exec` only: `setns(pidfd, flags)` into the container init's namespaces.
    Setns,
    /// `exec` only: `prctl(PR_SET_DUMPABLE, 0)` (the init ignores its failure).
    Dumpable,
    /// `fchown` of stdio fd `index` (the console) to process.user.uid.
    StdioOwner,
    /// `unshare` of the namespaces the init makes itself (flags in `index`).
    Unshare,
    /// Writing `0` to the `tasks` file of v1 hierarchy `index` (the init joins itself).
    JoinCgroup,
    /// `setns` into the network namespace the parent made (it came with `Go`; index 1: it
    /// did not come).
    JoinNetns,
    /// `dup2` of the given stdio fd `index` onto `index`.
    Stdio,
}

impl InitStep {
    fn from_u8(v: u8) -> Option<Self> {
        use InitStep::*;
        const ALL: [InitStep; 38] = [
            Sync,
            Clone,
            BecomeRoot,
            Keyring,
            OomScoreAdj,
            Rlimit,
            Chdir,
            KeepCaps,
            BoundingSet,
            Setgroups,
            Setgid,
            Setuid,
            Capset,
            Ambient,
            NoNewPrivs,
            FindProgram,
            SealFds,
            Exec,
            Console,
            ConsoleSocket,
            OpenFifo,
            CreateContainerHook,
            StartContainerHook,
            Chroot,
            SignalMask,
            CgroupNs,
            Personality,
            IoPriority,
            Scheduler,
            ExecLabel,
            Seccomp,
            Setns,
            Dumpable,
            StdioOwner,
            Unshare,
            JoinCgroup,
            JoinNetns,
            Stdio,
        ];
        ALL.into_iter().find(|s| *s as u8 == v)
    }
}

/// A failure of the init's own steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitError {
    pub step: InitStep,
    pub index: u32,
    pub errno: i32,
}

impl InitError {
    pub(crate) fn new(step: InitStep, index: u32, errno: i32) -> Self {
        InitError { step, index, errno }
    }
}

/// Any failure in the child, tagged by the crate that knows how to describe it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChildFailure {
    Init(InitError),
    Rootfs(berth_rootfs::ApplyError),
    Namespaces(berth_namespaces::ChildError),
}

impl From<InitError> for ChildFailure {
    fn from(e: InitError) -> Self {
        ChildFailure::Init(e)
    }
}
impl From<berth_rootfs::ApplyError> for ChildFailure {
    fn from(e: berth_rootfs::ApplyError) -> Self {
        ChildFailure::Rootfs(e)
    }
}
impl From<berth_namespaces::ChildError> for ChildFailure {
    fn from(e: berth_namespaces::ChildError) -> Self {
        ChildFailure::Namespaces(e)
    }
}

// By their wire form: what the parent can tell apart is what the child sent.
impl PartialEq for ChildFailure {
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}
impl Eq for ChildFailure {}

/// Wire size of an encoded failure: tag, source, then up to 12 payload bytes.
pub(crate) const FAILURE_LEN: usize = 14;

impl ChildFailure {
    pub(crate) fn encode(&self) -> [u8; FAILURE_LEN] {
        let mut out = [0u8; FAILURE_LEN];
        out[0] = b'E';
        match self {
            ChildFailure::Init(e) => {
                out[1] = 0;
                out[2] = e.step as u8;
                out[3..7].copy_from_slice(&e.index.to_le_bytes());
                out[7..11].copy_from_slice(&e.errno.to_le_bytes());
            }
            ChildFailure::Rootfs(e) => {
                out[1] = 1;
                out[2..14].copy_from_slice(&e.to_bytes());
            }
            ChildFailure::Namespaces(e) => {
                out[1] = 2;
                out[2..10].copy_from_slice(&e.to_bytes());
            }
        }
        out
    }

    pub(crate) fn decode(msg: &[u8]) -> Option<Self> {
        let [b'E', source, step, ..] = *msg else {
            return None;
        };
        if msg.len() < FAILURE_LEN {
            return None;
        }
        let word = |at: usize| -> Option<[u8; 4]> { msg.get(at..at + 4)?.try_into().ok() };
        match source {
            0 => Some(ChildFailure::Init(InitError {
                step: InitStep::from_u8(step)?,
                index: u32::from_le_bytes(word(3)?),
                errno: i32::from_le_bytes(word(7)?),
            })),
            1 => berth_rootfs::ApplyError::from_bytes(msg.get(2..14)?.try_into().ok()?)
                .map(ChildFailure::Rootfs),
            2 => berth_namespaces::ChildError::from_bytes(msg.get(2..10)?.try_into().ok()?)
                .map(ChildFailure::Namespaces),
            _ => None,
        }
    }
}

/// Everything the init needs, prepared by the parent before the clone.
pub(crate) struct InitContext<'a> {
    pub ns: &'a NamespacePlan,
    pub rootfs: &'a RootfsPlan,
    pub process: &'a ProcessPlan,
    /// linux.seccomp, compiled.
    pub seccomp: Option<&'a SeccompPlan>,
    /// personality, ioPriority, scheduler, AppArmor/SELinux labels.
    pub security: &'a SecurityPlan,
    pub create_container_hooks: &'a [ChildHook],
    pub start_container_hooks: &'a [ChildHook],
    /// Our end of the sync socket pair, and the parent's end (closed at once).
    pub sock: RawFd,
    pub parent_sock: RawFd,
    /// O_PATH fd of the container's state dir, for opening exec.fifo (-1 without a start
    /// barrier).
    pub state_dir: RawFd,
    /// Whether the init waits for `start` at exec.fifo after `Ready` (`create`). Without
    /// (`run`, [`crate::Runtime::run`]), it goes on to exec at once and reports a failure
    /// on the sync socket instead, whose EOF (close-on-exec) is then the exec.
    pub start_barrier: bool,
    /// Fds of the parent that must not stay open in a waiting init (the state dir lock).
    pub close_early: RawFd,
    /// Connected console socket, when process.terminal is set.
    pub console_socket: RawFd,
    /// Copies of the init's stdin, stdout, stderr, numbered above the preserved fds (-1:
    /// inherited), put in place first thing (the slow path's intermediate passes them on
    /// to the init it forks).
    pub stdio: [RawFd; 3],
    pub hostname: Option<&'a CStr>,
    pub domainname: Option<&'a CStr>,
    /// Name of the session keyring to join, unless --no-new-keyring.
    pub keyring: Option<&'a CStr>,
    /// Whether the parent runs the runtime-namespace hooks (prestart, createRuntime) or the
    /// init needs the state JSON for its own hooks: enables the `Mounted`/`State` exchange.
    pub hooks_sync: bool,
    /// Buffer for the `S` message (allocated by the parent before the clone).
    pub state_buf: *mut u8,
    pub state_buf_len: usize,
    /// Slow path: clone a plain intermediate that joins/unshares, then forks the init.
    pub intermediate: bool,
    /// Whether a user namespace is created (maps must be written before we go on).
    pub new_user_ns: bool,
    /// setgroups(2) is possible in the container's user namespace.
    pub setgroups_allowed: bool,
    /// The parent opens the bind-mount sources for us (a root runtime and a new user
    /// namespace, whose root may not reach them): ask with `BindSources` before mounting.
    pub bind_sources: bool,
    /// The parent moves the child into the container's cgroup after the clone: wait for
    /// its `Go` (on the fast path without a user namespace, before the first cgroup mount:
    /// `join_cgroup_and_netns`; else before anything else, the slow path's intermediate first thing).
    pub cgroup_sync: bool,
    /// Fast path with a cgroup namespace: `CLONE_NEWCGROUP` was left out of the clone
    /// flags; unshare it after `Go`, so that the container's cgroup is the namespace root.
    pub unshare_cgroup_ns: bool,
    /// Fast path without a user namespace: the mount, network, IPC and UTS namespaces left
    /// out of the clone flags, which the init unshares itself first thing. Their set-up (a
    /// copy of the mount table, a network stack) then runs on the init's CPU while the
    /// parent makes the cgroup, instead of inside the parent's clone.
    pub unshare_first: libc::c_int,
    /// The `tasks` file of the container's cgroup in each v1 hierarchy, where the child joins
    /// them itself after `Go` (without a user namespace to create, as root: the fast path's
    /// init, or the slow path's intermediate before it joins anything): a thread moving
    /// itself skips the kernel's global threadgroup lock, and with it the RCU grace period
    /// the parent's move by pid waits for (0.5 ms when the machine is busy, 5 to 12 ms after
    /// a quiet moment, here). Empty: the parent moves it.
    pub cgroup_tasks: &'a [std::ffi::CString],
    /// Fast path without a user namespace: the new network namespace is made by the parent,
    /// on a thread started before the clone (0.3 to 0.5 ms of the kernel's work here, that
    /// then runs while the parent plans and the init begins instead of on the init's path),
    /// and its fd comes with `Go`. The init joins it before the first mount that sees it
    /// (sysfs: see `join_cgroup_and_netns`); CLONE_NEWNET is then left out of `unshare_first`.
    pub netns_with_go: bool,
}

/// The entry point of the cloned child. Never returns.
pub(crate) fn init_main(ctx: &InitContext<'_>) -> ! {
    // Report to the sync socket (or, after `Ready` with a start barrier, to exec.fifo) and
    // exit.
    let mut report_fd = ctx.sock;
    match run(ctx, &mut report_fd) {
        Ok(never) => match never {},
        Err(f) => {
            let _ = sys::write_all(report_fd, &f.encode());
            sys::exit_now(1)
        }
    }
}

/// Puts the given stdio copies on 0, 1 and 2. They are all numbered above 2 (see
/// `Stdio::dup_above`), so no `dup2` overwrites a copy still to be made; the copies
/// themselves are close-on-exec and go with the other inherited fds.
pub(crate) fn install_stdio(fds: &[RawFd; 3]) -> Result<(), InitError> {
    for (target, &fd) in fds.iter().enumerate() {
        if fd < 0 {
            continue;
        }
        // SAFETY: dup2 only takes two integers; target is 0, 1 or 2.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return Err(InitError::new(InitStep::Stdio, target as u32, sys::errno()));
        }
    }
    Ok(())
}

pub(crate) fn reset_signals() -> Result<(), InitError> {
    // Handlers of the parent point at its code and ignored signals stay ignored across exec
    // (Rust ignores SIGPIPE): give the container default dispositions and an empty mask.
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; errors (EINVAL for
        // signals the C library reserves) are irrelevant.
        unsafe {
            let act: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    // SAFETY: set is a valid sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        sys::check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &set,
            std::ptr::null_mut(),
        ))
        .map_err(|e| InitError::new(InitStep::SignalMask, 0, e))
    }
}

fn run(
    ctx: &InitContext<'_>,
    report_fd: &mut RawFd,
) -> Result<std::convert::Infallible, ChildFailure> {
    // Not dumpable while being set up: processes of the container (they share its user and
    // pid namespace once joined) can't open /proc/<init>/exe, fd/ or cwd, nor ptrace it.
    // execve resets it. Dumpable while the parent writes the id maps, though: the kernel
    // makes a non-dumpable process's /proc/<pid>/{uid_map,setgroups,gid_map} root's, which
    // a rootless parent can't open. On the fast path nothing else can reach this child
    // before then (it has joined no namespace): it goes non-dumpable after the maps.
    let maps_first = ctx.new_user_ns && !ctx.intermediate;
    if !maps_first {
        set_dumpable(false);
    }
    sys::close(ctx.parent_sock);
    sys::close(ctx.close_early);
    reset_signals()?;
    install_stdio(&ctx.stdio)?;
    // If `create` dies before we are ready, die too instead of lingering half set up.
    // Cleared once ready.
    sys::set_pdeathsig(libc::SIGKILL);

    if ctx.intermediate {
        if ctx.cgroup_sync {
            // In the container's cgroup (the parent's clone or move, then the v1 joins here)
            // before any namespace is joined or created: the init forked below inherits it.
            sync::wait_go(ctx.sock)?;
            join_v1_cgroups(ctx)?;
        }
        ctx.ns.join_all()?;
        if ctx.new_user_ns {
            ctx.ns.unshare_user()?;
            set_dumpable(true);
            sync::send(ctx.sock, ToParent::MapIds)?;
            sync::wait_go(ctx.sock)?;
            set_dumpable(false);
        }
        ctx.ns.unshare_rest()?;
        ctx.ns.write_time_offsets()?;
        ctx.ns.close_fds();
        drop_inherited_fds(ctx)?;
        // The init continues with fragile-child code only; its parent is `create`.
        fork_parented(ctx.sock, 0)?;
    } else {
        if ctx.unshare_first != 0 {
            // SAFETY: unshare only reads its integer argument.
            if unsafe { libc::unshare(ctx.unshare_first) } != 0 {
                let flags = ctx.unshare_first as u32;
                return Err(InitError::new(InitStep::Unshare, flags, sys::errno()).into());
            }
        }
        ctx.ns.close_fds();
        drop_inherited_fds(ctx)?;
        // With a user namespace, `Go` says the maps are written (and the cgroup joined)
        // and nothing can go on before. Without one the cgroup is joined while the first
        // mounts are made: see join_cgroup_and_netns.
        if ctx.new_user_ns {
            sync::wait_go(ctx.sock)?;
        }
        if maps_first {
            set_dumpable(false);
        }
    }

    if ctx.new_user_ns {
        // Become root of the new user namespace (the maps are written now).
        sys::set_ids(0, 0).map_err(|(_, e)| InitError::new(InitStep::BecomeRoot, 0, e))?;
    }
    if let Some(h) = ctx.hostname {
        berth_namespaces::set_hostname(h.to_bytes())?;
    }
    if let Some(d) = ctx.domainname {
        berth_namespaces::set_domainname(d.to_bytes())?;
    }
    if let Some(name) = ctx.keyring {
        // KEYCTL_JOIN_SESSION_KEYRING = 1. A kernel without keyrings (ENOSYS) or a policy that
        // forbids it (EACCES in some user namespaces) is not an error, as with runc.
        // SAFETY: name is a valid C string.
        let r = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
        if r < 0 && !matches!(sys::errno(), libc::ENOSYS | libc::EACCES | libc::EPERM) {
            return Err(InitError::new(InitStep::Keyring, 0, sys::errno()).into());
        }
    }
    ctx.process.apply_oom_score_adj()?;
    if ctx.bind_sources {
        receive_bind_sources(ctx.sock, ctx.rootfs)?;
    }
    ctx.rootfs
        .mount_all_joining(|| join_cgroup_and_netns(ctx).map_err(ChildFailure::from))?;

    // Runtime-namespace hooks (parent) then createContainer hooks (here), before pivot_root.
    let mut created: &[u8] = &[];
    if ctx.hooks_sync {
        sync::send(ctx.sock, ToParent::Mounted)?;
        // SAFETY: the parent allocated state_buf with state_buf_len bytes before the clone;
        // this process is the only user of its copy.
        let buf = unsafe { std::slice::from_raw_parts_mut(ctx.state_buf, ctx.state_buf_len) };
        created = sync::recv_state(ctx.sock, buf)?;
        for (i, hook) in ctx.create_container_hooks.iter().enumerate() {
            hook.run(created)
                .map_err(|e| InitError::new(InitStep::CreateContainerHook, i as u32, e))?;
        }
    }

    ctx.rootfs.pivot()?;
    if ctx.process.terminal {
        open_console(
            ctx.console_socket,
            ctx.process.console_size,
            Some(ctx.rootfs),
        )?;
    }
    ctx.rootfs.finish()?;
    // Every CPU our cpuset allows, whatever affinity we inherited: see lifecycle::affinity.
    // Done by the init itself, so that it holds before the program runs (and forks) even
    // where nobody waits at the start barrier; before the credentials, which may install
    // the seccomp filter (a profile need not allow sched_setaffinity).
    crate::lifecycle::affinity::reset(0);
    // The label only takes effect at execve (startContainer hooks exec with it too, as with
    // runc). With SCMP_ACT_NOTIFY, the filter's listener fd must reach the runtime over the
    // sync socket before `Ready` (after it, the parent reads the socket no more, or only for
    // the exec's outcome). Every fd opened from here on is close-on-exec (the fifo, the
    // socket) or closed before the exec (the state dir; the socket with a start barrier).
    let mut seccomp_pending = change_credentials(
        ctx.sock,
        ctx.security,
        ctx.process,
        ctx.seccomp,
        ctx.setgroups_allowed,
    )?;
    if let Some(sc) = seccomp_pending.filter(|sc| sc.uses_notify()) {
        install_seccomp(ctx.sock, sc)?;
        seccomp_pending = None;
    }
    let mut program = PathBuf4k::new();
    ctx.process.resolve_program(&mut program)?;

    // Ready: from here on the parent may be gone; with a start barrier errors go to
    // exec.fifo, without one they stay on the sync socket.
    sys::set_pdeathsig(0);
    exit_on_terminating_signals();
    sync::send(ctx.sock, ToParent::Ready)?;
    if ctx.start_barrier {
        // SAFETY: state_dir is an O_PATH fd of a directory; the name is a C string literal.
        let fifo = unsafe {
            libc::openat(
                ctx.state_dir,
                c"exec.fifo".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fifo < 0 {
            return Err(InitError::new(InitStep::OpenFifo, 0, sys::errno()).into());
        }
        *report_fd = fifo;
        sys::close(ctx.state_dir);
        sys::close(ctx.sock);
    }

    // startContainer hooks run in the container as the process would, under its filter
    // (as with runc): a hook must not be a way around the profile.
    if let Some(sc) = seccomp_pending {
        install_seccomp(ctx.sock, sc)?;
    }
    for (i, hook) in ctx.start_container_hooks.iter().enumerate() {
        hook.run(created)
            .map_err(|e| InitError::new(InitStep::StartContainerHook, i as u32, e))?;
    }
    Err(ctx.process.exec(&program, *report_fd).into())
}

/// # Fragile child
/// Called by the mounts before the first one that needs the init in its final cgroup (a
/// cgroup mount reads `/proc/self/cgroup` or mounts the cgroup namespace) or network
/// namespace (sysfs), or after the last: on the fast path without a user namespace, waits
/// for the parent's `Go` (it makes the cgroup meanwhile, while the first mounts are made),
/// joins the network namespace that came with it, joins the v1 cgroups, then unshares the
/// cgroup namespace, whose root is thus the container's cgroup. Everything that can see or
/// charge the cgroup (the cgroup mounts, the hooks, the process) comes after.
fn join_cgroup_and_netns(ctx: &InitContext<'_>) -> Result<(), InitError> {
    if (ctx.cgroup_sync || ctx.netns_with_go) && !ctx.intermediate && !ctx.new_user_ns {
        if ctx.netns_with_go {
            let fd = sync::wait_go_with_fd(ctx.sock)?.ok_or(InitError::new(
                InitStep::JoinNetns,
                1,
                libc::EPROTO,
            ))?;
            // SAFETY: setns on an fd we received, with a namespace type to check it by.
            let r = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
            let errno = sys::errno();
            sys::close(fd);
            if r != 0 {
                return Err(InitError::new(InitStep::JoinNetns, 0, errno));
            }
        } else {
            sync::wait_go(ctx.sock)?;
        }
        join_v1_cgroups(ctx)?;
    }
    if ctx.unshare_cgroup_ns {
        // SAFETY: unshare only reads its integer argument.
        if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
            return Err(InitError::new(InitStep::CgroupNs, 0, sys::errno()));
        }
    }
    Ok(())
}

/// # Fragile child
/// Joins the container's cgroup in each v1 hierarchy (`ctx.cgroup_tasks`, empty where the
/// parent moves the child): writes `0` to each `tasks` file. The child is single-threaded (a
/// raw clone), so moving this thread moves the process; no allocation.
fn join_v1_cgroups(ctx: &InitContext<'_>) -> Result<(), InitError> {
    for (i, tasks) in (0u32..).zip(ctx.cgroup_tasks) {
        let step = |e| InitError::new(InitStep::JoinCgroup, i, e);
        let fd = sys::open(tasks, libc::O_WRONLY | libc::O_CLOEXEC, 0).map_err(step)?;
        let written = sys::write_all(fd, b"0");
        sys::close(fd);
        written.map_err(step)?;
    }
    Ok(())
}

/// # Fragile child
/// The steps the init and exec's child share around the change of credentials, in order:
/// - scheduling and I/O class, while privileged (real-time classes need CAP_SYS_NICE);
/// - the LSM label for execve, through the container's /proc, before any seccomp filter
///   that might forbid the writes;
/// - the fds sealed, before any filter (a profile may deny close_range: runtime-tools'
///   default one does);
/// - the seccomp filter, here only without no_new_privs: the kernel then requires
///   CAP_SYS_ADMIN, which the credentials may drop (as runc does);
/// - the credentials.
///
/// Returns the filter still to install: as late as the caller can, so that the profile
/// needn't allow what the runtime's child itself does.
pub(crate) fn change_credentials<'a>(
    sock: RawFd,
    security: &SecurityPlan,
    process: &ProcessPlan,
    seccomp: Option<&'a SeccompPlan>,
    setgroups_allowed: bool,
) -> Result<Option<&'a SeccompPlan>, InitError> {
    security.apply_process_attrs()?;
    security.apply_exec_labels()?;
    process.seal_fds(sock)?;
    let mut pending = seccomp;
    if let Some(sc) = pending.filter(|_| !process.no_new_privs()) {
        install_seccomp(sock, sc)?;
        pending = None;
    }
    process.apply_credentials(setgroups_allowed)?;
    Ok(pending)
}

/// # Fragile child
/// Installs the filter; a notify listener fd goes to the parent over `sock` (the init's or
/// exec's sync socket) in a `Listener` message (it hands it to `listenerPath`) and is closed here.
pub(crate) fn install_seccomp(sock: RawFd, sc: &SeccompPlan) -> Result<(), InitError> {
    match sc.install() {
        Ok(None) => Ok(()),
        Ok(Some(fd)) => {
            let r = sync::send_with_fd(sock, ToParent::Listener, fd);
            sys::close(fd);
            r.map_err(|e| InitError::new(InitStep::Seccomp, 1, e))
        }
        Err(e) => Err(InitError::new(InitStep::Seccomp, 0, e)),
    }
}

/// # Fragile child
/// `prctl(PR_SET_DUMPABLE)`; it cannot fail with a 0 or 1 argument.
fn set_dumpable(on: bool) {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
}

/// # Fragile child
/// Forks the process that goes on (a pid or time namespace entered by this one applies to its
/// children only) as a child of our parent (`CLONE_PARENT`), so that the runtime can wait for
/// it. Here, the intermediate reports its pid in a `Pid` message and exits; the returning child
/// dies with the runtime until it clears its parent-death signal. A failed clone is
/// `InitStep::Clone` with `clone_index` (0: the init, 1: exec's process).
pub(crate) fn fork_parented(sock: RawFd, clone_index: u32) -> Result<(), InitError> {
    // SAFETY: the forked process continues with fragile-child code only (the caller's).
    let pid = unsafe { sys::raw_clone((libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong) }
        .map_err(|e| InitError::new(InitStep::Clone, clone_index, e))?;
    if pid > 0 {
        sync::send(sock, ToParent::Pid(pid))?;
        sys::exit_now(0);
    }
    sys::set_pdeathsig(libc::SIGKILL);
    Ok(())
}

/// The clone copied every fd of the (possibly multi-threaded) parent, including the state-dir
/// locks and sync sockets of other containers being created at the same moment. An init
/// waiting for `start` must not hold those (another container's `start` would block on its
/// lock forever): keep only stdio, the preserved fds and our own.
fn drop_inherited_fds(ctx: &InitContext<'_>) -> Result<(), InitError> {
    ctx.process
        .close_inherited_fds(&[ctx.sock, ctx.state_dir, ctx.console_socket])
}

extern "C" fn exit_on_signal(sig: libc::c_int) {
    sys::exit_now(128 + sig)
}

/// While it waits for `start`, the init is pid 1 of its pid namespace, where the kernel drops
/// signals that have no handler: `kill created-container TERM` would do nothing. Catch the
/// usual terminating signals and exit as their default action would (exec resets handlers).
fn exit_on_terminating_signals() {
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTERM,
    ] {
        // SAFETY: a zeroed sigaction plus a handler that only calls _exit, which is
        // async-signal-safe.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = exit_on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// # Fragile child
/// The console steps shared by the init and `exec`, as runc does them: a pty from the
/// (container's) /dev/ptmx, bound on /dev/console when `rootfs` is given (the init only), its
/// master sent to `console_socket` (SCM_RIGHTS, the payload is the pty's path), its slave our
/// controlling terminal and stdio.
pub(crate) fn open_console(
    console_socket: RawFd,
    console_size: Option<(u16, u16)>,
    rootfs: Option<&RootfsPlan>,
) -> Result<(), ChildFailure> {
    let err = |i, e| ChildFailure::Init(InitError::new(InitStep::Console, i, e));
    let master = sys::open(
        c"/dev/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )
    .map_err(|e| err(0, e))?;
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on our pty master with valid out-pointers.
    let r = unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK, &mut unlock) < 0 {
            -1
        } else {
            libc::ioctl(master, libc::TIOCGPTN, &mut n)
        }
    };
    if r < 0 {
        let e = sys::errno();
        sys::close(master);
        return Err(err(1, e));
    }
    let mut path = PathBuf4k::new();
    let mut digits = [0u8; 20];
    path.push(b"/dev/pts/").map_err(|e| err(2, e))?;
    path.push(sys::fmt_u64(u64::from(n), &mut digits))
        .map_err(|e| err(2, e))?;
    // SAFETY: TIOCGPTPEER opens the slave of this master without a path lookup.
    let slave = unsafe {
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        let e = sys::errno();
        sys::close(master);
        return Err(err(3, e));
    }
    // Bind the slave we hold, not its path: /dev/pts may have been swapped (CVE-2025-52565).
    if let Some(rootfs) = rootfs {
        rootfs.mount_console_fd(slave)?;
    }
    if let Some((rows, cols)) = console_size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: ws is a valid winsize.
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
    sys::send_fd(console_socket, master, path.as_bytes())
        .map_err(|e| ChildFailure::Init(InitError::new(InitStep::ConsoleSocket, 0, e)))?;
    sys::close(master);
    sys::close(console_socket);
    // SAFETY: session and terminal setup on fds we own.
    unsafe {
        if libc::setsid() < 0 {
            return Err(err(4, sys::errno()));
        }
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
            return Err(err(5, sys::errno()));
        }
        for fd in 0..3 {
            if libc::dup2(slave, fd) < 0 {
                return Err(err(6, sys::errno()));
            }
        }
    }
    if slave > 2 {
        sys::close(slave);
    }
    Ok(())
}

/// # Fragile child
/// Asks the parent (`B`) for the bind-mount sources, opened in our mount namespace with its
/// credentials, and hands them to the rootfs plan: one `b` message with one fd per bind
/// mount, in order, then `Go`.
fn receive_bind_sources(sock: RawFd, rootfs: &RootfsPlan) -> Result<(), InitError> {
    sync::send(sock, ToParent::BindSources)?;
    let mut k = 0;
    loop {
        match sync::recv(sock)? {
            (ToChild::BindSource, Some(fd)) => {
                if !rootfs.set_bind_source(k, fd) {
                    return Err(InitError::new(InitStep::Sync, 5, libc::EPROTO));
                }
                k += 1;
            }
            (ToChild::Go, None) => return Ok(()),
            (_, fd) => {
                if let Some(fd) = fd {
                    sys::close(fd);
                }
                return Err(InitError::new(InitStep::Sync, 5, libc::EPROTO));
            }
        }
    }
}

/// Turns a failure record into a rich error, using the plans to name paths and fields.
pub(crate) fn describe(
    f: ChildFailure,
    ns: &NamespacePlan,
    rootfs: &RootfsPlan,
    process: &ProcessPlan,
) -> crate::Error {
    match f {
        ChildFailure::Rootfs(e) => crate::Error::Rootfs(e.describe(rootfs)),
        ChildFailure::Namespaces(e) => crate::Error::Namespaces(e.describe(ns)),
        ChildFailure::Init(e) => describe_init(e, Some(process)),
    }
}

pub(crate) fn describe_init(e: InitError, process: Option<&ProcessPlan>) -> crate::Error {
    let program = process.map(|p| p.program_name().to_string_lossy());
    describe_init_named(e, program.as_deref())
}

/// As [`describe_init`], with only `process.args[0]` known (`start` reads it from the saved
/// config).
pub(crate) fn describe_init_named(e: InitError, program: Option<&str>) -> crate::Error {
    use InitStep::*;
    let source = nix::Error::from_raw(e.errno.max(0));
    let what = match e.step {
        Sync => "sync with runtime".to_string(),
        Clone if e.index == 1 => "fork into the container's pid namespace".into(),
        Clone => "clone the container init".into(),
        BecomeRoot => "become root in the new user namespace".into(),
        Keyring => "join a new session keyring".into(),
        OomScoreAdj => "write process.oomScoreAdj".into(),
        Rlimit => format!("set process.rlimits[{}]", e.index),
        Chdir => "chdir to process.cwd".into(),
        KeepCaps => "prctl(PR_SET_KEEPCAPS)".into(),
        BoundingSet => format!("drop capability {} from the bounding set", e.index),
        Setgroups => "setgroups(process.user.additionalGids)".into(),
        Setgid => format!("setresgid({})", e.index),
        Setuid => format!("setresuid({})", e.index),
        Capset => "capset(process.capabilities)".into(),
        Ambient => format!("raise ambient capability {}", e.index),
        NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)".into(),
        FindProgram => match program {
            Some(p) => format!("exec: {p:?}: executable file not found in $PATH or not executable"),
            None => "find process.args[0]".into(),
        },
        SealFds => "close_range(CLOSE_RANGE_CLOEXEC)".into(),
        Exec if e.index == 1 => "execveat(exe-guard memfd) for process.args".into(),
        // The exe-guard stub's own execve (see crate::process::exe_guard).
        Exec if e.index == 2 => match program {
            Some(p) => format!("exec {p:?} (from the exe guard)"),
            None => "execve(process.args) from the exe guard".into(),
        },
        Exec => match program {
            Some(p) => format!("exec {p:?}"),
            None => "execve(process.args)".into(),
        },
        Console => format!("set up the console (step {})", e.index),
        ConsoleSocket => "send the pty master to --console-socket".into(),
        Stdio => format!("dup2 the given stdio onto fd {}", e.index),
        OpenFifo => "open exec.fifo".into(),
        CreateContainerHook | StartContainerHook => {
            let kind = if e.step == CreateContainerHook {
                "createContainer"
            } else {
                "startContainer"
            };
            return crate::Error::Hook {
                kind,
                index: e.index as usize,
                path: Default::default(),
                reason: crate::process::hooks::describe_child_hook_failure(e.errno),
            };
        }
        Chroot => "chroot".into(),
        SignalMask => "reset the signal mask".into(),
        CgroupNs => "unshare(CLONE_NEWCGROUP) after joining the container's cgroup".into(),
        Unshare => format!("unshare({:#x}) of the container's namespaces", e.index),
        JoinCgroup => format!(
            "join the container's cgroup: write 0 to the tasks file of v1 hierarchy {}",
            e.index
        ),
        JoinNetns if e.index == 1 => "receive the network namespace made for the container".into(),
        JoinNetns => "setns(CLONE_NEWNET) into the network namespace made for the container".into(),
        Personality => format!("personality({:#x}) for linux.personality", e.index),
        IoPriority => format!("ioprio_set(class {}) for process.ioPriority", e.index),
        Scheduler => crate::process::security::describe_sched_failure(e.index, e.errno),
        ExecLabel => crate::process::security::describe_exec_label_failure(e.index),
        Seccomp if e.index == 1 => "send the seccomp listener fd to the runtime".into(),
        Seccomp => "seccomp(SECCOMP_SET_MODE_FILTER) for linux.seccomp".into(),
        Setns if e.index == 1 => "chroot into the root of the container init".into(),
        Setns if e.errno == libc::EINVAL => {
            "setns(pidfd of the container init) into its namespaces (Linux 5.8+)".into()
        }
        Setns => "setns(pidfd of the container init) into its namespaces".into(),
        Dumpable => "prctl(PR_SET_DUMPABLE, 0)".into(),
        StdioOwner => format!("fchown(fd {}) to process.user.uid", e.index),
    };
    crate::Error::Init { what, source }
}
