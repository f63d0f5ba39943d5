//! `kill`: a signal to the init, or to every process of the container.

use std::fs;
use std::time::{Duration, Instant};

use super::Runtime;
use crate::error::Error;
use crate::state::{self, Record, Status};

impl Runtime {
    /// Sends `signal` to the container's init, or with `all` to every process of the
    /// container's cgroup (frozen during the walk; without a cgroup, its own pid namespace).
    /// Refused for a stopped container, except with `all` (as runc: what is left in its
    /// cgroup is signalled), and while it is being created.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let (dir, record) = self.open_record(id, "kill")?;
        let status = state::live_status(&dir.path, &record);
        let refuse = Error::InvalidState {
            id: id.to_owned(),
            status,
            op: "kill",
        };
        match status {
            // While being created, `pid` may be 0 or not the init yet: never signal it.
            Status::Creating => return Err(refuse),
            Status::Stopped if !all => return Err(refuse),
            Status::Stopped => {
                if let Some(cg) = record.cgroup()? {
                    cg.signal_all(signal)?;
                }
                return Ok(());
            }
            _ => {}
        }
        if all {
            if let Some(cg) = record.cgroup()? {
                // Every process of the container, with or without its own pid namespace.
                cg.signal_all(signal)?;
                // Frozen processes can't die: a SIGKILL of a paused container thaws it (other
                // signals stay pending until `resume`, as for a single process).
                if status == Status::Paused && signal == libc::SIGKILL {
                    cg.thaw()?;
                }
                return Ok(());
            }
            if record.own_pid_ns {
                signal_pid_ns(record.pid, signal)?;
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(record.pid),
            nix::sys::signal::Signal::try_from(signal).ok(),
        )
        .or_else(|e| {
            if signal > 31 {
                raw_kill(record.pid, signal)
            } else {
                Err(e)
            }
        })
        .map_err(|e| Error::sys(format!("kill({}, {signal})", record.pid), e))
    }
}

fn raw_kill(pid: i32, sig: i32) -> Result<(), nix::Error> {
    // SAFETY: kill with integer arguments (real-time signals nix has no enum value for).
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

/// Sends `sig` to every process in the pid namespace of `init` (except init itself, which the
/// caller signals).
fn signal_pid_ns(init: i32, sig: i32) -> Result<(), Error> {
    let ns_of = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(target) = ns_of(&init.to_string()) else {
        return Ok(());
    };
    let entries = fs::read_dir("/proc").map_err(|e| Error::io("list", "/proc", e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid != init && ns_of(&pid.to_string()).as_ref() == Some(&target) {
            let _ = raw_kill(pid, sig);
        }
    }
    Ok(())
}

/// SIGKILLs the container (its cgroup, its whole pid namespace) and waits until the recorded
/// process is gone. A pid that no longer names the recorded process is left alone.
pub(super) fn kill_and_wait(record: &Record) -> Result<(), Error> {
    if let Some(cg) = record.cgroup_to_remove()? {
        cg.kill_all()?;
        // Frozen processes only die once thawed.
        let _ = cg.thaw();
    }
    if !record.pid_alive() {
        return Ok(());
    }
    if record.own_pid_ns {
        signal_pid_ns(record.pid, libc::SIGKILL)?;
    }
    let _ = raw_kill(record.pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(100);
    loop {
        if !record.pid_alive() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Protocol(format!(
                "init {} did not die within 10 s of SIGKILL",
                record.pid
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}
