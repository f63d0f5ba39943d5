//! One thread for the OOM events of every container of a shim (not one per container: a pod's
//! shim may hold dozens, and each thread costs a kernel stack).
//!
//! The thread owns the watchers and polls their descriptors together with an eventfd that
//! [`OomEvents::watch`] writes to hand it a new one. A watcher leaves when its cgroup is gone
//! (its descriptor reports that too) or when `alive` says its container was deleted.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime_core::berth_cgroups::OomWatcher;

use crate::{Error, Result};

/// How often the thread looks for deleted containers when nothing happens.
const RECHECK: Duration = Duration::from_secs(60);

struct Shared {
    pending: Mutex<Vec<(String, OomWatcher)>>,
    wake: OwnedFd,
    /// Set when the [`OomEvents`] is dropped (its `Tasks` gone): the thread ends.
    closed: AtomicBool,
}

/// Hands watchers to the OOM thread.
pub(crate) struct OomEvents {
    shared: Arc<Shared>,
}

impl OomEvents {
    /// Starts the thread: `on_oom(id)` for each event, `alive(id)` asked after each wake-up.
    pub(crate) fn start(
        on_oom: impl Fn(&str) + Send + 'static,
        alive: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<OomEvents> {
        // SAFETY: eventfd with constant flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::io(
                "eventfd",
                "oom events",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd was just returned by eventfd and nothing else owns it.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            wake,
            closed: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(64 * 1024)
            .spawn(move || run(&thread_shared, &on_oom, &alive))
            .map_err(|e| Error::io("spawn thread", "oom events", e))?;
        Ok(OomEvents { shared })
    }

    /// Watches `id`'s cgroup from now on.
    pub(crate) fn watch(&self, id: &str, watcher: OomWatcher) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_owned(), watcher));
        self.wake();
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        let _ = unsafe { libc::write(self.shared.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

impl Drop for OomEvents {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.wake();
    }
}

fn run(shared: &Shared, on_oom: &dyn Fn(&str), alive: &dyn Fn(&str) -> bool) {
    let mut watching: Vec<(String, OomWatcher)> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        watching.append(&mut shared.pending.lock().unwrap_or_else(|p| p.into_inner()));
        watching.retain(|(id, _)| alive(id));
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        fds.clear();
        fds.push(pollin(shared.wake.as_raw_fd()));
        fds.extend(watching.iter().map(|(_, w)| pollin(w.as_fd().as_raw_fd())));
        // SAFETY: `fds` is a live array of fds.len() pollfds; the descriptors are the
        // eventfd and the watchers', which only this thread drops (after the poll).
        let r = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                RECHECK.as_millis() as i32,
            )
        };
        if r < 0 {
            // EINTR, or no memory for the poll table: try again in a moment.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if r == 0 {
            continue;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 8];
            // SAFETY: reads 8 bytes into a live buffer from our non-blocking eventfd.
            let _ = unsafe { libc::read(shared.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        watching.retain_mut(|(id, w)| {
            let keep = if ready[i] {
                // Drains the descriptor, then compares the counters; an error is a cgroup
                // that is gone.
                match w.check() {
                    Ok(Some(_)) => {
                        on_oom(id);
                        true
                    }
                    Ok(None) => true,
                    Err(_) => false,
                }
            } else {
                true
            };
            i += 1;
            keep
        });
    }
}

fn pollin(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
