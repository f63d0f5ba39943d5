//! `start`: the init released from the start barrier (exec.fifo), then the poststart hooks.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use oci_spec::runtime::Hooks;

use crate::child::init::{self, ChildFailure};
use crate::error::Error;
use crate::process::hooks::{self};
use crate::state::{self, ContainerDir, Record, Status};

use super::kill::kill_and_wait;
use super::{Runtime, list, state_json};

impl Runtime {
    /// Starts a created container: releases its init to `execve` the user process, then runs
    /// the poststart hooks (their failures are returned as warnings on stderr only).
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let (dir, record) = self.open_record(id, "start")?;
        let status = state::live_status(&dir.path, &record);
        if status != Status::Created {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                status,
                op: "start",
            });
        }
        if record.no_process {
            // The spec: start MUST fail without a process. The init that waits for it is
            // ended, so the container is stopped and can be deleted.
            kill_and_wait(&record)?;
            return Err(Error::Start {
                id: id.to_owned(),
                reason: "config.json has no process: there is nothing to start".into(),
            });
        }
        let fifo_path = dir.fifo_path();
        let fifo = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo_path)
            .map_err(|e| Error::io("open", &fifo_path, e))?;
        let report = read_barrier(&fifo, record.pid, record.start_time)
            .map_err(|e| Error::io("read", &fifo_path, e))?;
        let _ = fs::remove_file(&fifo_path);
        if !report.is_empty() {
            let reason = match ChildFailure::decode(&report) {
                Some(ChildFailure::Init(e)) => fill_hook_path(
                    init::describe_init_named(e, saved_program(&dir).as_deref()),
                    record.hooks.as_ref().unwrap_or(&Hooks::default()),
                )
                .to_string(),
                _ if report == INIT_DIED => format!(
                    "the container init (pid {}) died before it reached exec",
                    record.pid
                ),
                _ => format!(
                    "the container init failed before exec (failure record {:?})",
                    String::from_utf8_lossy(&report)
                ),
            };
            return Err(Error::Start {
                id: id.to_owned(),
                reason,
            });
        }
        self.run_poststart(&record);
        Ok(())
    }

    /// The poststart hooks of a container whose program was just exec'd; their failures are
    /// warnings.
    pub(super) fn run_poststart(&self, record: &Record) {
        if let Some(h) = &record.hooks {
            let running = state_json(record, Status::Running);
            for w in hooks::run_hooks_warn("poststart", list(h.poststart()), &running) {
                (self.warn)(&w);
            }
        }
    }
}

/// What [`read_barrier`] reports when the init is gone before it ever opened the barrier.
const INIT_DIED: &[u8] = b"init died";

/// Reads the start barrier until EOF: empty means the init exec'd; anything else is its
/// failure record. Waits for the init to open the fifo (it may not have yet) and gives up if
/// the init dies first.
fn read_barrier(fifo: &fs::File, pid: i32, start_time: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut seen_writer = false;
    let mut buf = [0u8; 256];
    loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            // No writer yet (or a slow one): is the init still there?
            match state::process_start_time(pid) {
                Some((s, st)) if s == start_time && st != 'Z' => continue,
                _ => {
                    if seen_writer {
                        return Ok(out);
                    }
                    return Ok(INIT_DIED.to_vec());
                }
            }
        }
        if pfd.revents & libc::POLLIN != 0 {
            seen_writer = true;
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(fifo.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                out.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            if n == 0 {
                return Ok(out);
            }
        }
        if pfd.revents & libc::POLLHUP != 0 {
            // Writer connected and closed: drain what is left.
            let _ = (&*fifo).read_to_end(&mut out);
            return Ok(out);
        }
    }
}

/// `process.args[0]` of the saved config, to name the program in an exec failure.
fn saved_program(dir: &ContainerDir) -> Option<String> {
    let spec = dir.read_config().ok()??;
    spec.process().as_ref()?.args().as_ref()?.first().cloned()
}

pub(super) fn fill_hook_path(err: Error, hooks: &Hooks) -> Error {
    match err {
        Error::Hook {
            kind,
            index,
            path,
            reason,
        } if path.as_os_str().is_empty() => {
            let list = match kind {
                "createContainer" => hooks.create_container(),
                _ => hooks.start_container(),
            };
            let path = list
                .as_ref()
                .and_then(|l| l.get(index))
                .map(|h| h.path().clone())
                .unwrap_or_default();
            Error::Hook {
                kind,
                index,
                path,
                reason,
            }
        }
        e => e,
    }
}
