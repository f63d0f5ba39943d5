//! Exec's child: what the process cloned by [`Runtime::exec`](crate::Runtime::exec) does
//! between `clone` and `execve` (fragile-child code, see `docs/DESIGN.md`): it waits for the
//! cgroup join, seals the inherited fds, enters the container's namespaces with one
//! `setns(pidfd)`, forks where a pid or time namespace is entered, then sets the process up
//! as the init does (console, security attributes, credentials, seccomp) and `execve`s. The
//! parent's side is in `lifecycle/exec.rs`.

use std::os::fd::RawFd;

use crate::child::init::{self, ChildFailure, InitError, InitStep};
use crate::child::sync::{self, ToParent};
use crate::child::sys::{self, PathBuf4k};
use crate::process::ProcessPlan;
use crate::process::security::SecurityPlan;
use crate::seccomp::SeccompPlan;

/// Everything the exec child needs, prepared by the parent before the clone.
pub(crate) struct ExecContext<'a> {
    /// Copies of the process' stdin, stdout, stderr, numbered above the preserved fds (-1:
    /// inherited), put in place first thing.
    pub stdio: [RawFd; 3],
    pub process: &'a ProcessPlan,
    /// The container's linux.seccomp, compiled.
    pub seccomp: Option<&'a SeccompPlan>,
    /// personality, ioPriority, scheduler, AppArmor/SELinux labels.
    pub security: &'a SecurityPlan,
    pub sock: RawFd,
    pub parent_sock: RawFd,
    /// pidfd of the container's init, and the `CLONE_NEW*` flags of its namespaces to enter.
    pub pidfd: RawFd,
    pub ns_flags: libc::c_int,
    /// A pid or time namespace is joined: fork the real process after `setns`.
    pub fork: bool,
    pub console_socket: RawFd,
    /// O_PATH fd of the init's root (`/proc/<pid>/root`) where its mount namespace is ours
    /// (a container without one of its own is only chrooted): entered with `chroot`, so the
    /// process never sees the runtime's `/`. -1 otherwise.
    pub root: RawFd,
    pub setgroups_allowed: bool,
    /// Wait for `Go` (the parent moves us into v1 cgroups, or cgroup2 without clone3).
    pub cgroup_sync: bool,
}

/// The entry point of the cloned child. Never returns.
pub(crate) fn exec_main(ctx: &ExecContext<'_>) -> ! {
    match run(ctx) {
        Ok(never) => match never {},
        Err(f) => {
            let _ = sys::write_all(ctx.sock, &f.encode());
            sys::exit_now(1)
        }
    }
}

fn run(ctx: &ExecContext<'_>) -> Result<std::convert::Infallible, ChildFailure> {
    // Before anything of the container can see us.
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(InitError::new(InitStep::Dumpable, 0, sys::errno()).into());
    }
    sys::close(ctx.parent_sock);
    // If `exec` dies before the process runs, don't linger half set up.
    sys::set_pdeathsig(libc::SIGKILL);
    init::reset_signals()?;
    init::install_stdio(&ctx.stdio)?;
    if ctx.cgroup_sync {
        sync::wait_go(ctx.sock)?;
    }
    // No host fd may reach the container (CVE-2024-21626): only stdio, the preserved fds,
    // and ours (the sync socket, the pidfd, the console socket, the exe guard).
    ctx.process
        .close_inherited_fds(&[ctx.sock, ctx.pidfd, ctx.console_socket, ctx.root])?;
    if ctx.ns_flags != 0 {
        // SAFETY: setns only reads its two integer arguments.
        if unsafe { libc::setns(ctx.pidfd, ctx.ns_flags) } != 0 {
            return Err(InitError::new(InitStep::Setns, 0, sys::errno()).into());
        }
    }
    sys::close(ctx.pidfd);
    if ctx.root >= 0 {
        // SAFETY: fchdir/chroot/chdir with a directory fd of ours and C string literals.
        let r = unsafe {
            if libc::fchdir(ctx.root) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                -1
            } else {
                libc::chdir(c"/".as_ptr())
            }
        };
        if r != 0 {
            return Err(InitError::new(InitStep::Setns, 1, sys::errno()).into());
        }
        sys::close(ctx.root);
    }
    if ctx.fork {
        // The process continues with fragile-child code only; its parent is the caller of
        // `exec`.
        init::fork_parented(ctx.sock, 1)?;
    }
    if ctx.process.terminal {
        init::open_console(ctx.console_socket, ctx.process.console_size, None)?;
    }
    ctx.process.apply_oom_score_adj()?;
    // As in the init.
    let seccomp_pending = init::change_credentials(
        ctx.sock,
        ctx.security,
        ctx.process,
        ctx.seccomp,
        ctx.setgroups_allowed,
    )?;
    let mut program = PathBuf4k::new();
    ctx.process.resolve_program(&mut program)?;
    if let Some(sc) = seccomp_pending {
        init::install_seccomp(ctx.sock, sc)?;
    }
    // The process must outlive `exec` (e.g. `berth exec -d`).
    sys::set_pdeathsig(0);
    sync::send(ctx.sock, ToParent::Ready)?;
    Err(ctx.process.exec(&program, ctx.sock).into())
}
