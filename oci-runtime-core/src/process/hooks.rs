//! OCI hooks. `prestart`, `createRuntime`, `poststart` and `poststop` run in the runtime's
//! namespaces from the runtime process (here: may allocate); `createContainer` and
//! `startContainer` run from the container init, in the container's namespaces, through the
//! allocation-free [`ChildHook`] path.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::child::sys;
use crate::config::validate::ConfigError;
use crate::error::Error;
use crate::process::CStrArray;

/// Runs hooks of one kind in order with `state` (the state JSON) on stdin. Stops at the first
/// failure and returns it.
pub(crate) fn run_hooks(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<(), Error> {
    for (index, hook) in hooks.iter().enumerate() {
        run_hook(hook, state).map_err(|reason| Error::Hook {
            kind,
            index,
            path: hook.path().clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Like [`run_hooks`] but every hook runs and failures are returned as warnings (the spec's
/// rule for poststart and poststop).
pub(crate) fn run_hooks_warn(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Vec<String> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| {
            run_hook(hook, state).err().map(|reason| {
                format!(
                    "{kind} hook #{index} ({}) failed: {reason}",
                    hook.path().display()
                )
            })
        })
        .collect()
}

fn run_hook(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .envs(
            hook.env()
                .iter()
                .flatten()
                .filter_map(|e| e.split_once('=')),
        )
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that doesn't read its stdin is fine: ignore EPIPE, and don't die of SIGPIPE
        // where the program restored its default (the berth CLI does, as runc behaves).
        let old = ignore_sigpipe();
        let _ = stdin.write_all(state);
        restore_sigpipe(&old);
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            ));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// A hook prepared for the fragile child.
pub(crate) struct ChildHook {
    path: CString,
    argv: CStrArray,
    envp: CStrArray,
    timeout_ms: libc::c_int,
}

impl ChildHook {
    pub(crate) fn prepare(hooks: &[Hook], field: &str) -> Result<Vec<ChildHook>, ConfigError> {
        hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let f = format!("{field}[{i}]");
                let path = CString::new(h.path().as_os_str().as_encoded_bytes()).map_err(|_| {
                    ConfigError {
                        field: format!("{f}.path"),
                        reason: "contains a NUL byte".into(),
                    }
                })?;
                let mut args = h.args().clone().unwrap_or_default();
                if args.is_empty() {
                    args.push(h.path().to_string_lossy().into_owned());
                }
                Ok(ChildHook {
                    path,
                    argv: CStrArray::new(&args, &format!("{f}.args"))?,
                    envp: CStrArray::new(
                        &h.env().clone().unwrap_or_default(),
                        &format!("{f}.env"),
                    )?,
                    timeout_ms: h
                        .timeout()
                        .map(|t| (t.clamp(1, i64::from(i32::MAX) / 1000) * 1000) as libc::c_int)
                        .unwrap_or(-1),
                })
            })
            .collect()
    }

    /// # Fragile child
    /// Forks, execs the hook with `state` on its stdin and waits for it (killing it at the
    /// timeout). `Err(errno)` for a syscall failure, `Err(-status)` (negative or zero) for a
    /// hook that failed, timed out (`ETIME` as errno) or could not be executed.
    pub(crate) fn run(&self, state: &[u8]) -> Result<(), i32> {
        let mut fds = [-1; 2];
        // SAFETY: fds is a valid 2-element array.
        sys::check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: the hook child only calls dup2, execve and _exit.
        let pid = match unsafe { sys::raw_clone(libc::SIGCHLD as libc::c_ulong) } {
            Ok(p) => p,
            Err(e) => {
                sys::close(fds[0]);
                sys::close(fds[1]);
                return Err(e);
            }
        };
        if pid == 0 {
            // SAFETY: dup2 then execve of prepared C strings; _exit on failure.
            unsafe {
                libc::dup2(fds[0], 0);
                libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            }
            sys::exit_now(127);
        }
        sys::close(fds[0]);
        // The hook may exit without reading stdin: don't die of SIGPIPE meanwhile.
        let old = ignore_sigpipe();
        let _ = sys::write_all(fds[1], state);
        restore_sigpipe(&old);
        sys::close(fds[1]);
        let timed_out = wait_timeout(pid, self.timeout_ms);
        if timed_out {
            // SAFETY: kill of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        loop {
            // SAFETY: status is a valid out-pointer; pid is our child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 || sys::errno() != libc::EINTR {
                break;
            }
        }
        if timed_out {
            return Err(libc::ETIME);
        }
        if status == 0 { Ok(()) } else { Err(-status) }
    }
}

/// Waits up to `timeout_ms` (-1: forever) for `pid` to exit without reaping it. True if the
/// timeout passed.
fn wait_timeout(pid: libc::pid_t, timeout_ms: libc::c_int) -> bool {
    if timeout_ms < 0 {
        return false;
    }
    // SAFETY: pidfd_open on our own child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    if pidfd < 0 {
        return false;
    }
    let mut pfd = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    let r = loop {
        // SAFETY: pfd is a valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r >= 0 || sys::errno() != libc::EINTR {
            break r;
        }
    };
    sys::close(pidfd);
    r == 0
}

fn ignore_sigpipe() -> libc::sigaction {
    // SAFETY: zeroed sigaction is a valid "SIG_DFL, empty mask" value; sigaction is
    // async-signal-safe.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = libc::SIG_IGN;
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, &new, &mut old);
        old
    }
}

fn restore_sigpipe(old: &libc::sigaction) {
    // SAFETY: restoring a disposition obtained from sigaction.
    unsafe { libc::sigaction(libc::SIGPIPE, old, std::ptr::null_mut()) };
}

/// Describes the result of [`ChildHook::run`].
pub(crate) fn describe_child_hook_failure(code: i32) -> String {
    if code == libc::ETIME {
        "timed out".into()
    } else if code > 0 {
        std::io::Error::from_raw_os_error(code).to_string()
    } else {
        let status = -code;
        if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                127 => "could not be executed (exit status 127)".into(),
                c => format!("exited with status {c}"),
            }
        } else if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("wait status {status}")
        }
    }
}
