//! A kernel older than berth supports (docs/KERNELS.md): `create` and `exec` fail first
//! thing with an error naming the system call it lacks, and leave nothing behind. The old
//! kernel is a seccomp filter in the test's own thread that answers `ENOSYS` for that call
//! (filters are per thread: nothing else of the test process is affected).

mod common;
#[path = "../../rootfs/tests/common/enosys.rs"]
mod enosys;
mod support;

use berth_runtime_core::{ExecOptions, Runtime};
use common::Bundle;
use enosys::deny_in_this_thread_as_enosys;
use support::*;

#[test]
fn create_on_a_kernel_without_openat2_or_close_range_names_it_and_leaves_nothing() {
    for (nr, want) in [
        (libc::SYS_openat2, "openat2(2) (Linux 5.6)"),
        (libc::SYS_close_range, "close_range(2) (Linux 5.9)"),
    ] {
        let (err, state_left) = std::thread::spawn(move || {
            deny_in_this_thread_as_enosys(nr);
            let h = Harness::new();
            let id = h.id("oldkernel");
            let b = Bundle::new();
            let err = h.create(&id, &b).expect_err("create on an old kernel");
            (err.to_string(), h.state_dir(&id).exists())
        })
        .join()
        .expect("test thread");
        assert_eq!(
            err,
            format!(
                "{want} is missing in this kernel; berth needs Linux 5.10 or later: \
                 ENOSYS: Function not implemented"
            )
        );
        assert!(!state_left, "{want}: state dir left");
    }
}

#[test]
fn exec_on_a_kernel_without_pidfd_open_names_it() {
    // Without pidfd_open the init could not be pinned, and exec said the container was
    // stopped.
    let h = Harness::new();
    let mut b = Bundle::new();
    b.args(&["/bin/sh", "-c", "exec sleep 1000"]);
    let id = h.id("oldkernel-exec");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    let root = h.state_root().to_path_buf();
    let process = b.spec.process().clone().expect("process");
    let exec_id = id.clone();
    let err = std::thread::spawn(move || {
        deny_in_this_thread_as_enosys(libc::SYS_pidfd_open);
        Runtime::new(root)
            .exec(&exec_id, &process, &ExecOptions::default())
            .map(drop)
            .expect_err("exec on an old kernel")
            .to_string()
    })
    .join()
    .expect("test thread");
    assert_eq!(
        err,
        "pidfd_open(2) (Linux 5.3) is missing in this kernel; berth needs Linux 5.10 or later: \
         ENOSYS: Function not implemented"
    );
    h.rt.kill(&id, libc::SIGKILL, false).expect("kill");
    h.wait(&c);
}
