//! A tiny test runner for `harness = false` binaries: the tests run one after another on the
//! main thread, which blocks the supervisor's signals before anything else, so no thread of the
//! process can swallow a `SIGCHLD` or a forwarded signal.

#![allow(dead_code)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use berth_shim_core::signals::{FORWARDED, Signals};

/// One test: its name and body.
pub type Test = (&'static str, fn(&Signals));

/// Runs the tests whose name contains the first non-flag argument (all without one) and exits
/// non-zero when one failed.
pub fn run(tests: &[Test]) {
    let signals = Signals::block(&FORWARDED).expect("block the supervisor's signals");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| f(&signals))) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

/// A child that is killed and reaped on drop unless disarmed (after the supervisor reaped it:
/// its pid may then belong to another process).
pub struct ChildGuard {
    pub pid: i32,
    pub child: std::process::Child,
    armed: bool,
}

impl ChildGuard {
    pub fn new(child: std::process::Child) -> ChildGuard {
        ChildGuard {
            pid: child.id() as i32,
            child,
            armed: true,
        }
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

/// A close-on-exec duplicate.
pub fn dup(fd: &OwnedFd) -> OwnedFd {
    use std::os::fd::AsFd;
    let raw = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).expect("dup");
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nobody else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
