//! OOM events: v1 `cgroup.event_control` + eventfd on `memory.oom_control`,
//! v2 inotify on `memory.events`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CgroupError, Result};
use crate::fsutil;
use crate::layout::Location;
use crate::manager::CgroupManager;
use crate::stats::{self, MemoryEvents};

#[derive(Debug)]
enum Source {
    V1 { efd: OwnedFd, _control: File },
    V2 { inotify: OwnedFd },
}

/// Waits for OOM events of one cgroup.
///
/// Created by [`CgroupManager::oom_watcher`]; it reports only events that happen
/// after its creation. Its file descriptor ([`OomWatcher::as_fd`]) becomes readable
/// when something may have happened, for use in a runtime's own poll loop.
///
/// ```no_run
/// # let cg: berth_cgroups::CgroupManager = unimplemented!();
/// let mut w = cg.oom_watcher()?;
/// if let Some(ev) = w.wait(std::time::Duration::from_secs(1))? {
///     println!("oom: {}, oom_kill: {}", ev.oom, ev.oom_kill);
/// }
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
#[derive(Debug)]
pub struct OomWatcher {
    source: Source,
    dir: PathBuf,
    last: MemoryEvents,
}

fn sys_err(syscall: &'static str, what: &Path) -> CgroupError {
    CgroupError::Syscall {
        syscall,
        what: what.display().to_string(),
        source: io::Error::last_os_error(),
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful syscall creating a new file
    // descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl CgroupManager {
    /// Starts watching the cgroup's OOM events (needs the memory controller).
    pub fn oom_watcher(&self) -> Result<OomWatcher> {
        let unavailable = || CgroupError::ControllerUnavailable {
            field: "(oom events)".into(),
            controller: "memory".into(),
        };
        let loc = self.layout.locate("memory").ok_or_else(unavailable)?;
        let dir = self.dir(loc).ok_or_else(unavailable)?.to_path_buf();
        match loc {
            Location::V1(_) => {
                // SAFETY: eventfd(2) with constant flags; no memory is passed.
                let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if fd < 0 {
                    return Err(sys_err("eventfd", &dir));
                }
                let efd = owned(fd);
                let control_path = dir.join("memory.oom_control");
                let control = File::open(&control_path).map_err(|source| CgroupError::Read {
                    path: control_path,
                    source,
                })?;
                fsutil::write(
                    &dir,
                    "cgroup.event_control",
                    &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
                )?;
                let last = MemoryEvents {
                    oom: 0,
                    oom_kill: stats::oom_control_v1(&dir)?.oom_kill,
                };
                Ok(OomWatcher {
                    source: Source::V1 {
                        efd,
                        _control: control,
                    },
                    dir,
                    last,
                })
            }
            Location::V2 => {
                let file = dir.join("memory.events");
                if !file.exists() {
                    return Err(CgroupError::Read {
                        path: file,
                        source: io::Error::from_raw_os_error(libc::ENOENT),
                    });
                }
                // SAFETY: inotify_init1(2) with constant flags; no memory is passed.
                let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
                if fd < 0 {
                    return Err(sys_err("inotify_init1", &dir));
                }
                let inotify = owned(fd);
                let c =
                    CString::new(file.as_os_str().as_bytes()).map_err(|_| CgroupError::Read {
                        path: file.clone(),
                        source: io::Error::from_raw_os_error(libc::EINVAL),
                    })?;
                // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
                let wd = unsafe {
                    libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY)
                };
                if wd < 0 {
                    return Err(sys_err("inotify_add_watch", &file));
                }
                let last = stats::memory_events_v2(&dir)?.0;
                Ok(OomWatcher {
                    source: Source::V2 { inotify },
                    dir,
                    last,
                })
            }
        }
    }
}

impl OomWatcher {
    /// The counters as of the last event reported (or the watcher's creation).
    pub fn last(&self) -> MemoryEvents {
        self.last
    }

    /// A descriptor that becomes readable when an event may have happened.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1 { efd, .. } => efd.as_fd(),
            Source::V2 { inotify } => inotify.as_fd(),
        }
    }

    fn current(&self) -> Result<MemoryEvents> {
        match &self.source {
            Source::V1 { .. } => Ok(MemoryEvents {
                oom: self.last.oom,
                oom_kill: stats::oom_control_v1(&self.dir)?.oom_kill,
            }),
            Source::V2 { .. } => Ok(stats::memory_events_v2(&self.dir)?.0),
        }
    }

    /// Drains the descriptor; returns the eventfd count (v1) or 0.
    fn drain(&self) -> Result<u64> {
        let mut total = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            let fd = self.as_fd().as_raw_fd();
            // SAFETY: reads into a live stack buffer of the given length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(total);
                }
                return Err(CgroupError::Syscall {
                    syscall: "read",
                    what: format!("OOM notifications of {}", self.dir.display()),
                    source: e,
                });
            }
            if n == 0 {
                return Ok(total);
            }
            if let Source::V1 { .. } = self.source {
                if n >= 8 {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[..8]);
                    total += u64::from_ne_bytes(b);
                }
            }
        }
    }

    /// Drains the descriptor and returns the counters if they moved since the last report
    /// (without waiting for the descriptor: for a caller's own poll loop, once it saw the
    /// descriptor readable). Fails if the cgroup goes away.
    pub fn check(&mut self) -> Result<Option<MemoryEvents>> {
        let n = self.drain()?;
        if !self.dir.exists() {
            return Err(CgroupError::Dir {
                op: "watch",
                path: self.dir.clone(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        let before = self.last;
        if n > 0 {
            // v1: the notification comes before the kill is counted; give the kernel a
            // moment to update oom_kill (unless it already has).
            self.last.oom += n;
            let until = Instant::now() + Duration::from_millis(200);
            let mut now = self.current()?;
            while now.oom_kill == before.oom_kill && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
                now = self.current()?;
            }
            self.last = now;
            return Ok(Some(now));
        }
        let now = self.current()?;
        if now != self.last {
            self.last = now;
            return Ok(Some(now));
        }
        Ok(None)
    }

    /// Waits up to `timeout` for an OOM or OOM kill; returns the new counters, or
    /// `None` on timeout. Fails if the cgroup goes away.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<MemoryEvents>> {
        let deadline = Instant::now() + timeout;
        loop {
            // Drained before the counters are compared: one event is reported once.
            if let Some(ev) = self.check()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as i32;
            // SAFETY: one live pollfd, count 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CgroupError::Syscall {
                    syscall: "poll",
                    what: format!("OOM notifications of {}", self.dir.display()),
                    source: e,
                });
            }
        }
    }
}
