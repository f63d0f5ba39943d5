//! Which file descriptors reach the container: exactly 0, 1, 2 and `preserve_fds` more.
//!
//! These tests open descriptors without O_CLOEXEC in the test process, so each takes the
//! harness exclusively (no other test of this binary runs meanwhile) and lives in its own
//! test binary (fd numbers are process-wide).

mod common;
mod support;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use berth_runtime_core::CreateOptions;
use common::TempDir;
use support::*;

/// Opens `path` read-only *without* O_CLOEXEC.
fn open_inheritable(path: &Path) -> i32 {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(
        fd >= 0,
        "open {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    fd
}

fn close(fd: i32) {
    // SAFETY: closing an fd this test opened.
    unsafe { libc::close(fd) };
}

/// The fd numbers of a process as the kernel shows them.
fn fds_of(pid: i32) -> BTreeSet<i32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn listed(text: &str) -> BTreeSet<i32> {
    text.split_whitespace()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("not an fd number: {s:?}"))
        })
        .collect()
}

/// Waits until the container's init has exec'd `sleep` (its final image).
fn await_sleep(pid: i32) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }),
        "the container never reached sleep"
    );
}

#[test]
fn preserve_fds_passes_exactly_fd_3() {
    let h = Harness::exclusive();
    let data = TempDir::new("berth-fd");
    let file = data.path().join("passed.txt");
    fs::write(&file, "secret-through-fd-3\n").expect("write");
    let (b, out) = sh_bundle("cat <&3 > /out/fd3; ls /proc/self/fd > /out/ls; exec sleep 1000");
    b.write();

    // The file must be fd 3 exactly (the first one after stdio).
    let fd = open_inheritable(&file);
    if fd != 3 {
        // SAFETY: F_GETFD on a descriptor number only queries it.
        let flags = unsafe { libc::fcntl(3, libc::F_GETFD) };
        assert!(flags < 0, "fd 3 is taken in the test process");
        // SAFETY: fd 3 is free (checked above), fd is ours.
        assert_eq!(unsafe { libc::dup2(fd, 3) }, 3);
        close(fd);
    }
    let id = h.id("preserve");
    let created = h.create_opts(
        &id,
        &CreateOptions::new(b.path().to_path_buf()).preserve_fds(1),
    );
    close(3);
    let c = created.expect("create");
    h.rt.start(&id).expect("start");
    await_sleep(c.pid());

    let seen = fds_of(c.pid());
    assert_eq!(
        seen,
        BTreeSet::from([0, 1, 2, 3]),
        "fds of the container process"
    );
    let target = fs::read_link(format!("/proc/{}/fd/3", c.pid())).expect("readlink fd 3");
    assert_eq!(target, file);
    assert_eq!(read(out.path().join("fd3")), "secret-through-fd-3");
    // Inside, ls also shows the directory it reads: one more than the inherited ones.
    let inside = listed(&read(out.path().join("ls")));
    assert!(inside.is_superset(&seen), "inside {inside:?} vs {seen:?}");
    assert_eq!(
        inside.len(),
        seen.len() + 1,
        "inside {inside:?} vs {seen:?}"
    );

    h.rt.delete(&id, true).expect("delete");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
}

#[test]
fn no_descriptor_leaks_into_the_container() {
    let h = Harness::exclusive();
    let data = TempDir::new("berth-fd");
    let file = data.path().join("host-only.txt");
    fs::write(&file, "host only").expect("write");
    let (b, out) = sh_bundle("ls /proc/self/fd > /out/ls; exec sleep 1000");
    b.write();

    // Inheritable descriptors of every kind in the runtime process.
    let f = open_inheritable(&file);
    let mut pipe = [-1; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    assert!(sock >= 0);

    let id = h.id("noleak");
    let created = h.create_opts(&id, &CreateOptions::new(b.path().to_path_buf()));
    for fd in [f, pipe[0], pipe[1], sock] {
        close(fd);
    }
    let c = created.expect("create");
    // The waiting init must not hold descriptors of ours that the parent needs to see
    // closed (e.g. the state dir lock) either: start must not hang.
    h.rt.start(&id).expect("start");
    await_sleep(c.pid());

    let seen = fds_of(c.pid());
    assert_eq!(
        seen,
        BTreeSet::from([0, 1, 2]),
        "fds of the container process"
    );
    for fd in 0..3 {
        let theirs = fs::read_link(format!("/proc/{}/fd/{fd}", c.pid())).expect("their stdio");
        let ours = fs::read_link(format!("/proc/self/fd/{fd}")).expect("our stdio");
        assert_eq!(theirs, ours, "fd {fd} is not the runtime's stdio");
    }
    let inside = listed(&read(out.path().join("ls")));
    assert!(inside.is_superset(&seen), "inside {inside:?}");
    assert_eq!(
        inside.len(),
        4,
        "only stdio and the dir ls reads: {inside:?}"
    );

    h.rt.delete(&id, true).expect("delete");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
}
